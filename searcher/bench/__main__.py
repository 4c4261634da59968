"""`python -m searcher.bench [SUBCOMMAND] [OPTIONS]`: run one benchmark.

Subcommands: engine (the default: training speed and search overhead), quality (TPE against
random sampling), pareto (TPE against random in a Pareto search of accuracy and latency under a
latency bound: hypervolume and best net within the bound), scale (results/s the driver sustains
with MLflow logging, Optuna's ask) and journal (what recording a trial in the study's journal
costs Tune's loop).
`python -m searcher.bench SUBCOMMAND --help` lists each one's options.
"""
from __future__ import annotations

import importlib
import sys

# Subcommand -> the module whose main(argv) runs it; a new benchmark is one line here.
SUBCOMMANDS = {
    "engine": "searcher.bench.engine",
    "quality": "searcher.bench.quality",
    "pareto": "searcher.bench.pareto",
    "scale": "searcher.bench.scale",
    "journal": "searcher.bench.journal",
}
# Options with no subcommand go to the engine benchmark: that is how README and BENCHMARKS.md
# (and scripts written before the subcommands) call it.
DEFAULT = "engine"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    name = DEFAULT
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
        if name not in SUBCOMMANDS:
            print(f"python -m searcher.bench: error: unknown subcommand {name!r}; choose from "
                  f"{', '.join(SUBCOMMANDS)}", file=sys.stderr)
            return 2
    return importlib.import_module(SUBCOMMANDS[name]).main(argv)


if __name__ == "__main__":
    sys.exit(main())
