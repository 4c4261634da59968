"""CIFAR-10: a conditional CNN space (stages, then per-stage choices), head and training recipe.

The tutorials' hand-made networks are points of this space (BASELINES) and run first, so every
search shows how far it beats them; a third hand-made point, a small batch-normalised CNN with a
modern recipe, gives the sampler a good region to start from.
"""

SETTINGS = {
    "dataset": "cifar10",
    "metric": "val_acc",
    "num_samples": -1,  # as many trials as fit in the time budget
    "time_budget_s": 1200,  # 20 minutes; a GPU fits far more trials in the same budget
    "epochs": 10,  # the one-cycle schedule spans this; ASHA stops most trials well before
    "grace_period": 1,  # rungs at 1, 3 and 9 epochs with reduction_factor 3
    "reduction_factor": 3,
    "cpus_per_trial": 1,
    "max_mmacs": 40,  # keeps an epoch near a minute on one CPU core; raise it on a GPU
    "seed": 0,
}

ACTIVATIONS = ["relu", "leaky_relu", "gelu", "silu", "elu", "tanh", "sigmoid"]


def space(trial):
    stages = trial.suggest_int("stages", 1, 4)
    for i in range(1, stages + 1):
        trial.suggest_int(f"stage{i}.filters", 4, 128, log=True)
        trial.suggest_categorical(f"stage{i}.kernel", [3, 5])
        trial.suggest_int(f"stage{i}.convs", 1, 3)
        trial.suggest_categorical(f"stage{i}.padding", ["same", "valid"])
        trial.suggest_categorical(f"stage{i}.activation", ACTIVATIONS)
        trial.suggest_categorical(f"stage{i}.pool", ["max", "avg", "strided", "none"])
        trial.suggest_float(f"stage{i}.dropout", 0.0, 0.3)
        trial.suggest_categorical(f"stage{i}.batch_norm", [True, False])
    trial.suggest_categorical("head", ["flatten", "gap"])
    if trial.suggest_int("dense_layers", 0, 2) > 0:
        trial.suggest_int("dense_units", 32, 512, log=True)
    trial.suggest_float("head_dropout", 0.0, 0.5)
    # Adaptive optimizers and SGD want learning rates an order of magnitude apart.
    if trial.suggest_categorical("optimizer", ["sgd", "adamw", "adam"]) == "sgd":
        trial.suggest_float("lr", 0.01, 0.3, log=True)
    else:
        trial.suggest_float("lr", 2e-4, 5e-3, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("flip", [True, False])
    trial.suggest_categorical("crop", [0, 2, 4])


def _stage(i, filters, padding="same", pool="max", convs=1, batch_norm=False):
    return {f"stage{i}.filters": filters, f"stage{i}.kernel": 3, f"stage{i}.convs": convs,
            f"stage{i}.padding": padding, f"stage{i}.activation": "relu", f"stage{i}.pool": pool,
            f"stage{i}.dropout": 0.0, f"stage{i}.batch_norm": batch_norm}


# The tutorials' recipe: Adam at 1e-3, Keras' "valid" padding unless said otherwise, flips and shifts.
_TUTORIAL_TRAINING = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 64,
                      "label_smoothing": 0.0, "flip": True, "crop": 4, "head_dropout": 0.0}

BASELINES = {
    # Conv(6,3x3,same)-relu-Conv(16,3x3)-relu-MaxPool(2)-Flatten-Dense(10)
    "tutorial_small": {"stages": 2, **_stage(1, 6, pool="none"), **_stage(2, 16, padding="valid"),
                       "head": "flatten", "dense_layers": 0, **_TUTORIAL_TRAINING},
    # Conv(32,3x3)-relu-MaxPool(2)-Conv(32,3x3)-relu-MaxPool(2)-Flatten-Dense(128)-relu-Dense(10)
    "tutorial_cnn": {"stages": 2, **_stage(1, 32, padding="valid"), **_stage(2, 32, padding="valid"),
                     "head": "flatten", "dense_layers": 1, "dense_units": 128, **_TUTORIAL_TRAINING},
    # A VGG-style 32-64-128 net with batch norm, SGD with Nesterov momentum and label smoothing.
    "bn_cnn": {"stages": 3, **_stage(1, 32, convs=2, batch_norm=True),
               **_stage(2, 64, convs=2, batch_norm=True), **_stage(3, 128, batch_norm=True),
               "head": "flatten", "dense_layers": 0, "head_dropout": 0.0, "optimizer": "sgd",
               "lr": 0.08, "weight_decay": 5e-4, "batch_size": 128, "label_smoothing": 0.1,
               "flip": True, "crop": 4},
}
