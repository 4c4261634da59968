"""MkDocs hook: the tables of what MLflow records on a search's run and on a trial's are
searcher.tracking.recorded, rendered at build time, so the page lists what the code declares
(and tests/tracking/test_recorded.py holds the code to its declaration)."""
from __future__ import annotations

from mkdocs.exceptions import PluginError

from searcher.tracking.recorded import SEARCH_RUN, TRIAL_RUN, Kinds

PAGE = "mlflow.md"
MARKERS = {"<!-- mlflow-search-run -->": SEARCH_RUN, "<!-- mlflow-trial-run -->": TRIAL_RUN}


def table(kinds: Kinds) -> str:
    """One row per name, the kind named on its first; a kind without fixed names is one row."""
    rows = ["| kind | name | what it holds |", "| --- | --- | --- |"]
    for kind, names in kinds.items():
        if isinstance(names, str):
            rows.append(f"| {kind} | | {names} |")
            continue
        for i, (name, what) in enumerate(names.items()):
            rows.append(f"| {kind if i == 0 else ''} | `{name}` | {what} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    for marker, kinds in MARKERS.items():
        if marker not in markdown:
            raise PluginError(f"docs/{PAGE} has lost its {marker} line, where that table goes")
        markdown = markdown.replace(marker, table(kinds))
    return markdown
