"""A search's specification: its settings, its space file, the parameter vocabulary a space
speaks, and whether a proposal fits the search's limits.

It may import `searcher.training` (the vocabulary maps onto the model's architecture and the
loop's config) and Optuna (a space is an Optuna define-by-run function); no Ray, no MLflow.
"""
