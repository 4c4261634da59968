"""The durable outbox: MLflow writes not yet accepted, in a journal (a file or the study's
database), and the checkpoint files they need. See `_outbox` for how it keeps its promise."""
from searcher.tracking.outbox._base import Journal
from searcher.tracking.outbox._database import DatabaseJournal
from searcher.tracking.outbox._file import FileJournal, cut_torn_tail
from searcher.tracking.outbox._outbox import (
                                              CHUNK,
                                              OUTBOX_FILE,
                                              STAGE_FOLDER,
                                              Outbox,
                                              checkpoint_uri,
                                              open_outbox,
                                              replayable,
)

__all__ = ["CHUNK", "OUTBOX_FILE", "STAGE_FOLDER", "DatabaseJournal", "FileJournal", "Journal",
           "Outbox", "checkpoint_uri", "cut_torn_tail", "open_outbox", "replayable"]
