"""CIFAR-10: a conditional CNN space (stages, then per-stage choices), head and training recipe.

The tutorials' hand-made networks are points of this space (BASELINES) and run first, so every
search shows how far it beats them; a third hand-made point, a small batch-normalised CNN with a
modern recipe, gives the sampler a good region to start from.

Shaped so that random proposals almost never break max_mmacs or shrink the map away (0.5% of
2000 RandomSampler proposals, against 39% for the space this one replaced): filter ranges grow
as the map shrinks, so each stage costs about the same; only single-conv stages try 5x5 kernels
and Keras' "valid" padding (the tutorials' pattern), "valid" only in the first two stages, so
the map cannot vanish; only stage 1 may skip pooling, and then each later stage, a map size
behind, takes the filter range of the stage before it. Activation, batch norm and dropout are
one choice for the whole net, not one per stage: fewer dimensions for the sampler to learn.
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

# tanh and sigmoid saturate, which slows deep nets down; the model builder still has them.
ACTIVATIONS = ["relu", "leaky_relu", "gelu", "silu", "elu"]
# Filter ranges for a stage on a 32x32, 16x16, 8x8 and 4x4 map: twice the filters on a quarter
# of the pixels, so every stage costs about the same.
FILTERS = {1: (6, 32), 2: (16, 64), 3: (32, 128), 4: (64, 256)}


def space(trial):
    stages = trial.suggest_int("stages", 2, 4)
    trial.suggest_categorical("activation", ACTIVATIONS)
    trial.suggest_categorical("batch_norm", [True, False])
    trial.suggest_float("dropout", 0.0, 0.3)
    unpooled = False  # stage 1 kept the 32x32 map, so each later stage works on twice the size
    for i in range(1, stages + 1):
        low, high = FILTERS[i - 1] if unpooled else FILTERS[i]
        trial.suggest_int(f"stage{i}.filters", low, high, log=True)
        if trial.suggest_int(f"stage{i}.convs", 1, 3) == 1:
            trial.suggest_categorical(f"stage{i}.kernel", [3, 5])
            if i <= 2:  # "valid" loses 2-4 pixels a stage; early on that cannot empty the map
                trial.suggest_categorical(f"stage{i}.padding", ["same", "valid"])
        else:  # a skip around a single conv adds little; around two or three it eases training
            trial.suggest_categorical(f"stage{i}.residual", [True, False])
        if i == 1:
            pool = trial.suggest_categorical("stage1.pool", ["max", "avg", "strided", "none"])
            unpooled = pool == "none"
        else:
            trial.suggest_categorical(f"stage{i}.pool", ["max", "avg", "strided"])
    trial.suggest_categorical("head", ["flatten", "gap"])
    if trial.suggest_int("dense_layers", 0, 1) > 0:
        trial.suggest_int("dense_units", 32, 512, log=True)
    trial.suggest_float("head_dropout", 0.0, 0.5)
    # Adaptive optimizers and SGD want learning rates an order of magnitude apart; AdamW's
    # decoupled weight decay is multiplied by the learning rate, so it wants a larger one.
    # One `lr` (and `weight_decay`) for all three: Optuna's TPE models the name over its first
    # trial's range, so the optimizers' rates share one model, clipped to that range. Named
    # apart (`sgd.lr`, `adam.lr`) each is modelled on its own, but that did not measure better
    # in the quality benchmark (6 seeds: mean best 0.630 against 0.639; BENCHMARKS.md).
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adamw", "adam"])
    if optimizer == "sgd":
        trial.suggest_float("lr", 0.01, 0.3, log=True)
        trial.suggest_float("weight_decay", 5e-5, 5e-3, log=True)
    else:
        trial.suggest_float("lr", 2e-4, 5e-3, log=True)
        if optimizer == "adamw":
            trial.suggest_float("weight_decay", 1e-3, 0.3, log=True)
        else:
            trial.suggest_float("weight_decay", 1e-6, 1e-3, log=True)
    trial.suggest_categorical("batch_size", [64, 128, 256])
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("flip", [True, False])
    trial.suggest_categorical("crop", [0, 2, 4])


def _one_conv(i, filters, padding="same", pool="max"):
    """A single 3x3 conv stage, as the tutorials build them (padding is a choice in stages 1-2)."""
    stage = {f"stage{i}.filters": filters, f"stage{i}.convs": 1, f"stage{i}.kernel": 3,
             f"stage{i}.pool": pool}
    return {**stage, f"stage{i}.padding": padding} if i <= 2 else stage


def _two_convs(i, filters):
    """A VGG block: two 3x3 convs without a skip, then max pooling."""
    return {f"stage{i}.filters": filters, f"stage{i}.convs": 2, f"stage{i}.residual": False,
            f"stage{i}.pool": "max"}


# The tutorials' net-wide choices and recipe: relu, no batch norm or dropout, Adam at 1e-3, flips
# and shifts.
_TUTORIAL_TRAINING = {"activation": "relu", "batch_norm": False, "dropout": 0.0,
                      "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 64,
                      "label_smoothing": 0.0, "flip": True, "crop": 4, "head_dropout": 0.0}

BASELINES = {
    # Conv(6,3x3,same)-relu-Conv(16,3x3)-relu-MaxPool(2)-Flatten-Dense(10)
    "tutorial_small": {"stages": 2, **_one_conv(1, 6, pool="none"),
                       **_one_conv(2, 16, padding="valid"), "head": "flatten", "dense_layers": 0,
                       **_TUTORIAL_TRAINING},
    # Conv(32,3x3)-relu-MaxPool(2)-Conv(32,3x3)-relu-MaxPool(2)-Flatten-Dense(128)-relu-Dense(10)
    "tutorial_cnn": {"stages": 2, **_one_conv(1, 32, padding="valid"),
                     **_one_conv(2, 32, padding="valid"), "head": "flatten", "dense_layers": 1,
                     "dense_units": 128, **_TUTORIAL_TRAINING},
    # A VGG-style 32-64-128 net with batch norm, SGD with Nesterov momentum and label smoothing.
    "bn_cnn": {"stages": 3, "activation": "relu", "batch_norm": True, "dropout": 0.0,
               **_two_convs(1, 32), **_two_convs(2, 64), **_one_conv(3, 128),
               "head": "flatten", "dense_layers": 0, "head_dropout": 0.0, "optimizer": "sgd",
               "lr": 0.08, "weight_decay": 5e-4, "batch_size": 128, "label_smoothing": 0.1,
               "flip": True, "crop": 4},
}
