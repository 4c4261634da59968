"""The commands a user runs: `searcher` (cli) and its subcommands run, list, promote, predict, ui.

The top layer: it may import every package; nothing in searcher imports it.
"""
