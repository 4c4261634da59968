"""The commands a user runs: `run`, `promote`, `predict` (and `searcher`, which names them).

The top layer: it may import every package; nothing in searcher imports it.
"""
