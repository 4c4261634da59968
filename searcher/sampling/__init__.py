"""Sampling: the Optuna samplers a search can use, and the layers the default one is made of.

Optuna only (and `searcher.spec` for the sampler names): no Ray, no MLflow, no training.
"""
