"""Training: data, the model builder, the training loop, checkpoints and retraining.

Plain PyTorch (and torchvision's file layouts): it imports no Ray, Optuna or MLflow, so a net can
be built, trained and checkpointed without a search (benchmarks and tests do). It imports nothing
else from searcher but `searcher.errors`.
"""
