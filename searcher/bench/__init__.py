"""Benchmarks, one module per claim; run them with `python -m searcher.bench SUBCOMMAND`.

- engine.py   how fast trials train (against a plain loop and the tutorials' pipeline), and,
              through search.py, what the search machinery costs: slot use, overhead, memory
- quality.py  whether the default sampler (TPE) finds better networks than random, and sooner
- quality_pool.py  several runs of the quality benchmark (other seeds) pooled into one
- scale.py    how many results/s the driver sustains with MLflow logging on, and Optuna's ask
              latency against the number of finished trials
- scale_report.py  the scale benchmark's summary, what it implies for a cluster's head, its table
- journal.py  what recording a trial in the study's journal file costs Tune's loop
- cpu.py      CPU seconds by part (driver, MLflow server, the rest of the machine) over a window
- anytime.py  best-so-far curves against time, their summaries and their plot
- common.py   generated CIFAR-shaped data, the machine and versions, JSON output
"""
