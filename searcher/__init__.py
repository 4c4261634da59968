"""searcher: CNN architecture and hyperparameter search with Optuna, Ray Tune and MLflow."""
from importlib import metadata

try:
    __version__ = metadata.version("searcher")  # pyproject.toml's, the one place it is written
except metadata.PackageNotFoundError:  # a source tree not installed
    __version__ = "unknown"
