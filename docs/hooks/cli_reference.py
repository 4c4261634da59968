"""MkDocs hook: the command-line reference is each command's own --help, run at build time, so
the page cannot fall behind the code; a command whose --help fails fails the build."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

# The commands the reference shows, in order: the `searcher` command and its subcommands, run
# as `python -m searcher ...` (the same command, without needing the console script on PATH).
COMMANDS = (
    "",
    "run",
    "submit",
    "status",
    "logs",
    "cancel",
    "resume",
    "list",
    "promote",
    "predict",
    "ui",
    "users",
    "bench",
    "bench quality",
    "bench pareto",
    "bench scale",
    "bench journal",
)
PAGE = "cli.md"
MARKER = "<!-- cli-reference -->"
COLUMNS = "100"  # argparse wraps to $COLUMNS: fixed, so the page does not depend on a terminal
TIMEOUT_S = 120


def _help(command: str, root: Path) -> str:
    argv = [sys.executable, "-m", "searcher", *command.split(), "--help"]
    try:
        done = subprocess.run(argv, cwd=root, env={**os.environ, "COLUMNS": COLUMNS},
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PluginError(f"`searcher {command} --help` took over {TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise PluginError(f"`searcher {command} --help` exited {done.returncode}: "
                          f"{done.stderr.strip()[-500:]}")
    return done.stdout.rstrip()


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/{PAGE} has lost its {MARKER} line, where the reference goes")
    root = Path(config.config_file_path).parent
    sections = [f"## searcher {command}".rstrip() + f"\n\n```text\n{_help(command, root)}\n```\n"
                for command in COMMANDS]
    return markdown.replace(MARKER, "\n".join(sections))
