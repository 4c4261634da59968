"""Cats vs dogs from an image folder (root/train/<class>/*.jpg, root/test/<class>/...), at 64x64.

Run it with the folder's root: python -m searcher.run spaces/cats_vs_dogs.py --data-dir PATH
"""

SETTINGS = {
    "dataset": "folder",
    "image_size": 64,
    "metric": "val_acc",
    "num_samples": 16,
    "epochs": 10,
    "grace_period": 2,
    "reduction_factor": 3,
    "max_mmacs": 150,
    "seed": 0,
}


# Filter ranges for a stage on a 64x64, 32x32, 16x16, 8x8 and 4x4 map: more filters on fewer
# pixels, so no one stage takes the whole max_mmacs budget (1% of random proposals exceed a
# limit, against 21% with one 16-128 range for every stage).
FILTERS = {1: (16, 40), 2: (24, 80), 3: (32, 160), 4: (64, 256), 5: (64, 256)}


def space(trial):
    stages = trial.suggest_int("stages", 2, 5)
    trial.suggest_categorical("batch_norm", [True, False])
    trial.suggest_categorical("activation", ["relu", "leaky_relu", "gelu", "silu", "elu"])
    for i in range(1, stages + 1):
        low, high = FILTERS[i]
        trial.suggest_int(f"stage{i}.filters", low, high, log=True)
        if trial.suggest_int(f"stage{i}.convs", 1, 2) == 2:  # a skip around one conv adds little
            trial.suggest_categorical(f"stage{i}.residual", [True, False])
        trial.suggest_categorical(f"stage{i}.pool", ["max", "avg", "strided"])
        trial.suggest_float(f"stage{i}.dropout", 0.0, 0.4)
    trial.suggest_categorical("head", ["flatten", "gap"])
    if trial.suggest_int("dense_layers", 0, 1) > 0:
        trial.suggest_int("dense_units", 32, 512, log=True)
    trial.suggest_float("head_dropout", 0.0, 0.5)
    trial.suggest_categorical("optimizer", ["sgd", "adamw"])
    trial.suggest_float("lr", 1e-4, 0.2, log=True)
    trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    return {"kernel": 3, "padding": "same", "flip": True, "crop": 8}


BASELINES = {
    # The cats-vs-dogs tutorial's network: three Conv(3x3)-relu-MaxPool stages, Dense(512).
    "tutorial": {"stages": 3, "batch_norm": False, "activation": "relu",
                 "stage1.filters": 32, "stage2.filters": 64, "stage3.filters": 128,
                 **{f"stage{i}.{k}": v for i in (1, 2, 3)
                    for k, v in (("convs", 1), ("pool", "max"), ("dropout", 0.0))},
                 "head": "flatten", "dense_layers": 1, "dense_units": 512, "head_dropout": 0.5,
                 "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 32,
                 "label_smoothing": 0.0},
}
