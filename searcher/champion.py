"""The loader module that champions registered before searcher 0.2 name in their MLmodel file.

MLflow loads a pyfunc through the module its MLmodel names; models promoted before the package
layout (searcher.tracking.champion) still name `searcher.champion`, so it stays importable.
"""
from searcher.tracking.champion import _load_pyfunc, load_champion, save_model

__all__ = ["_load_pyfunc", "load_champion", "save_model"]
