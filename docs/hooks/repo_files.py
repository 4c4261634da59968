"""MkDocs hook: the benchmark results, their log and their pictures, published from the
repository root, where GitHub shows them too, so the site has no copy to drift."""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

# Files outside docs/ that the site shows, relative to the repository root. Their links to
# each other and to benchmarks/*.png resolve in the site as they do in the repository.
PAGES = ("BENCHMARKS.md", "BENCHMARKS-LOG.md")
PICTURES = "benchmarks/*.png"


def on_files(files: Files, config) -> Files:
    root = Path(config.config_file_path).parent
    paths = [*PAGES, *sorted(p.relative_to(root).as_posix() for p in root.glob(PICTURES))]
    for path in paths:
        files.append(File(path, str(root), config.site_dir, config.use_directory_urls))
    return files
