"""searcher: CNN architecture and hyperparameter search with Optuna, Ray Tune and MLflow."""

__version__ = "0.1.0"
