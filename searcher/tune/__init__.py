"""The Tune side: the tuner that runs a space's trials on Ray, cluster sizing, the study
searcher and the ASHA scheduler, the trainable, the search's resumable state and its lock,
Ctrl-C, warm start, the Tune callback that logs trials to MLflow, and confirmation retrains.

Ray lives here. It may import every layer below (tracking, sampling, spec, training); never the
commands.
"""
