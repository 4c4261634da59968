"""`searcher COMMAND ...`: the one command a user types; each subcommand is a module's main.

The subcommand's module is imported only once it is chosen, so `searcher --help` and a mistyped
command answer at once, without Ray, torch or MLflow. Each module keeps its own parser: `searcher
run --help` and `python -m searcher.run --help` are the same parser under two names.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata
from typing import NoReturn

from searcher.errors import EXIT_USAGE

PROG = "searcher"

# name -> (the module whose main(argv, prog) runs it, what it does in a line). Reached by name,
# like searcher.bench's own subcommands: that is what keeps them out of `--help`'s imports.
COMMANDS = {
    "run": ("searcher.commands.run",
            "search a space file: Optuna proposes, Ray Tune runs the trials, MLflow records"),
    "submit": ("searcher.commands.submit",
               "start a search on a shared Ray cluster as a job; prints its id"),
    "status": ("searcher.commands.status",
               "the searches on a shared cluster: state, submitter, slots, trials, best"),
    "logs": ("searcher.commands.logs", "a search's output on a shared cluster (--follow: tail it)"),
    "cancel": ("searcher.commands.cancel",
               "stop a search on a shared cluster, saved to be resumed"),
    "resume": ("searcher.commands.resume", "go on with a stopped search on a shared cluster"),
    "list": ("searcher.commands.listing",
             "past searches in the tracking store: status, best score, trials, where they ran"),
    "promote": ("searcher.commands.promote",
                "test a search's best checkpoint and make it the champion model"),
    "predict": ("searcher.commands.predict",
                "label every image in a folder with a registered model"),
    "export": ("searcher.commands.export",
               "write a registered model as ONNX, checked against PyTorch and timed"),
    "ui": ("searcher.commands.ui", "the MLflow UI on the search's tracking store"),
    "users": ("searcher.commands.users",
              "one MLflow account per person: add, list, remove (an admin's)"),
    "bench": ("searcher.bench.__main__", "run a benchmark (engine, quality, scale, journal)"),
}


def version() -> str:
    """The installed package's version: the one every search logs with its provenance."""
    try:
        return metadata.version("searcher")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not the usage block above it
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {PROG} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="CNN architecture and hyperparameter search: Optuna proposes, "
        "Ray Tune runs the trials, MLflow records them.",
        epilog="`searcher COMMAND --help` describes a command's options. Example: searcher run "
               "spaces/cifar10.py --num-samples 12 --epochs 4")
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (_, text) in COMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if first is not None and argv[first].endswith(".py") and not argv[:first]:
        # `searcher SPACE.py ...`, the form before subcommands: no command ends in .py
        return _dispatch("run", argv)
    if first is None or argv[first] not in COMMANDS or argv[:first]:
        parser = _parser()
        parser.parse_args(argv[:first])  # --help and --version end here; other options fail
        if first is None:
            parser.error("a command is required")
        parser.error(f"unknown command {argv[first]!r}; choose from {', '.join(COMMANDS)}")
    return _dispatch(argv[first], argv[first + 1:])


def _dispatch(name: str, argv: list[str]) -> int:
    module = importlib.import_module(COMMANDS[name][0])
    if name == "bench":  # its own subcommands parse the rest, each under its own name
        return module.main(argv)
    return module.main(argv, prog=f"{PROG} {name}")


if __name__ == "__main__":
    sys.exit(main())
