"""CIFAR-10: a conditional CNN space (stages, then per-stage choices), head and training recipe.

The tutorials' hand-made networks are points of this space (BASELINES) and run first, so every
search shows how far it beats them.
"""

SETTINGS = {
    "dataset": "cifar10",
    "metric": "val_acc",
    "num_samples": 16,
    "epochs": 8,
    "grace_period": 1,
    "reduction_factor": 3,
    "cpus_per_trial": 1,
    "max_mmacs": 40,  # keeps a trial near a minute per epoch on one CPU core; raise it on a GPU
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
        trial.suggest_float(f"stage{i}.dropout", 0.0, 0.5)
        trial.suggest_categorical(f"stage{i}.batch_norm", [True, False])
    trial.suggest_categorical("head", ["flatten", "gap"])
    if trial.suggest_int("dense_layers", 0, 2) > 0:
        trial.suggest_int("dense_units", 32, 512, log=True)
    trial.suggest_float("head_dropout", 0.0, 0.5)
    trial.suggest_categorical("optimizer", ["sgd", "adamw", "adam"])
    trial.suggest_float("lr", 1e-4, 0.2, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128, 256])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("flip", [True, False])
    trial.suggest_categorical("crop", [0, 2, 4])


def _plain_stage(i, filters, padding, pool):
    return {f"stage{i}.filters": filters, f"stage{i}.kernel": 3, f"stage{i}.convs": 1,
            f"stage{i}.padding": padding, f"stage{i}.activation": "relu", f"stage{i}.pool": pool,
            f"stage{i}.dropout": 0.0, f"stage{i}.batch_norm": False}


# The tutorials' recipe: Adam at 1e-3, Keras' "valid" padding unless said otherwise, flips and shifts.
_TUTORIAL_TRAINING = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 64,
                      "label_smoothing": 0.0, "flip": True, "crop": 4, "head_dropout": 0.0}

BASELINES = {
    # Conv(6,3x3,same)-relu-Conv(16,3x3)-relu-MaxPool(2)-Flatten-Dense(10)
    "tutorial_small": {"stages": 2, **_plain_stage(1, 6, "same", "none"),
                       **_plain_stage(2, 16, "valid", "max"),
                       "head": "flatten", "dense_layers": 0, **_TUTORIAL_TRAINING},
    # Conv(32,3x3)-relu-MaxPool(2)-Conv(32,3x3)-relu-MaxPool(2)-Flatten-Dense(128)-relu-Dense(10)
    "tutorial_cnn": {"stages": 2, **_plain_stage(1, 32, "valid", "max"),
                     **_plain_stage(2, 32, "valid", "max"),
                     "head": "flatten", "dense_layers": 1, "dense_units": 128, **_TUTORIAL_TRAINING},
}
