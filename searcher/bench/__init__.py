"""Benchmarks, one module per claim; run them with `python -m searcher.bench SUBCOMMAND`.

- engine.py   how fast trials train (against a plain loop and the tutorials' pipeline), and,
              through search.py, what the search machinery costs: slot use, overhead, memory
- quality.py  whether the default sampler (TPE) finds better networks than random, and sooner
- scale.py    how many results/s the driver sustains with MLflow logging on, and Optuna's ask
              latency against the number of finished trials
- anytime.py  best-so-far curves against time, their summaries and their plot
- common.py   generated CIFAR-shaped data, the machine and versions, JSON output
"""
