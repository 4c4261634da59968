"""MkDocs hook: the code layout page is the package tree with the first paragraph of each module's
and package's docstring, read from the source at build time (nothing is imported)."""
from __future__ import annotations

import ast
from pathlib import Path

from mkdocs.exceptions import PluginError

PACKAGE = "searcher"
PAGE = "layout.md"
MARKER = "<!-- code-layout -->"


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return " ".join(doc.strip().split("\n\n")[0].split()) if doc else "(no docstring)"


def _tree(folder: Path, depth: int = 0) -> list[str]:
    lines = []
    for path in sorted(folder.iterdir(), key=lambda p: (p.is_dir(), p.name)):
        indent = "    " * depth
        if path.is_dir() and (path / "__init__.py").is_file():
            lines.append(f"{indent}- **`{path.name}/`**: {_summary(path / '__init__.py')}")
            lines += _tree(path, depth + 1)
        elif path.suffix == ".py" and path.name != "__init__.py":
            lines.append(f"{indent}- `{path.name}`: {_summary(path)}")
    return lines


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"docs/{PAGE} has lost its {MARKER} line, where the tree goes")
    root = Path(config.config_file_path).parent / PACKAGE
    tree = [f"- **`{PACKAGE}/`**: {_summary(root / '__init__.py')}", *_tree(root, 1)]
    return markdown.replace(MARKER, "\n".join(tree))
