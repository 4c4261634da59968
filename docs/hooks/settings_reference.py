"""MkDocs hook: the settings reference is the Settings dataclass itself, read at build time: each
field, its command-line option, its default as the source writes it and the reason comment above
or beside it, so a new setting appears on the page with no edit to the docs, and a setting
without a reason fails the build."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

from mkdocs.exceptions import PluginError

from searcher.commands.run import OVERRIDES, overrides_from
from searcher.spec import settings as settings_module

PAGE = "spaces.md"
MARKER = "<!-- settings-reference -->"
SECTION = re.compile(r"#\s*---.*---\s*$")  # "# --- data ---": a heading, not a field's reason


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on it, without its `#`."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0]: t.string for t in tokens if t.type == tokenize.COMMENT}


def _reason(line: int, lines: list[str], comments: dict[int, str]) -> str:
    """The comment beside the field, after the block of comment lines right above it."""
    above, i = [], line - 1
    while i >= 1 and lines[i - 1].lstrip().startswith("#"):
        text = lines[i - 1].strip()
        if SECTION.match(text):
            break
        above.insert(0, text.lstrip("#").strip())
        i -= 1
    beside = comments.get(line, "").lstrip("#").strip()
    return " ".join(part for part in (" ".join(above), beside) if part)


def _markdown(text: str) -> str:
    """A reason as a table cell: `<class>` shown, not taken for HTML; the module's own tuples and
    dicts it names (`one of METRICS`) as their values."""
    text = text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    for name, value in vars(settings_module).items():
        if name.isupper() and isinstance(value, (tuple, dict)):
            text = re.sub(rf"\b{name}\b", ", ".join(f"`{v}`" for v in value), text)
    return text


def rows(path: Path) -> list[tuple[str, str, str, str]]:
    """(setting, option, default, what it does) for every field of Settings, in its order."""
    source = path.read_text(encoding="utf-8")
    lines, comments = source.splitlines(), _comments(source)
    (cls,) = [n for n in ast.parse(source).body
              if isinstance(n, ast.ClassDef) and n.name == "Settings"]
    written = {n.target.id: n for n in cls.body
               if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    # the options `searcher run` has, by the setting each sets
    flags = {k: "--" + k.replace("_", "-") for k in OVERRIDES}
    options = overrides_from(argparse.Namespace(**flags))
    out = []
    for field in dataclasses.fields(settings_module.Settings):
        node = written.get(field.name)
        if node is None or node.value is None:
            raise PluginError(f"{path}: setting {field.name} has no default written in Settings")
        reason = _reason(node.lineno, lines, comments)
        if not reason:
            raise PluginError(f"{path}: setting {field.name} has no reason: give it a comment "
                              "above or beside it, which the settings reference shows")
        option = options.get(field.name)
        out.append((field.name, f"`{option}`" if option else "",
                    f"`{ast.get_source_segment(source, node.value)}`", _markdown(reason)))
    return out


def table(path: Path) -> str:
    head = ["| setting | option | default | what it does |", "| --- | --- | --- | --- |"]
    return "\n".join(head + [f"| `{name}` | {option} | {default} | {what} |"
                             for name, option, default, what in rows(path)])


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/{PAGE} has lost its {MARKER} line, where the settings go")
    return markdown.replace(MARKER, table(Path(settings_module.__file__)))
