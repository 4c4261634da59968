import pytest

from searcher.spec.params import ConfigError, split_params

SHAPE = {"num_classes": 10, "in_channels": 3, "image_size": 32, "epochs": 5}


def test_plain_keys_apply_to_every_stage_and_stage_keys_override():
    arch, train = split_params({"stages": 3, "filters": 16, "stage2.filters": 64,
                                "activation": "gelu", "dense_layers": 2, "dense_units": 64,
                                "dense2.units": 32, "lr": 0.1, "batch_size": 64}, **SHAPE)
    assert [s["filters"] for s in arch["stages"]] == [16, 64, 16]
    assert {s["activation"] for s in arch["stages"]} == {"gelu"}
    assert arch["dense"] == [64, 32]
    assert train == {"lr": 0.1, "batch_size": 64, "epochs": 5}


def test_residual_is_a_stage_key_like_the_others():
    arch, _ = split_params({"stages": 3, "residual": True, "stage2.residual": False}, **SHAPE)
    assert [s["residual"] for s in arch["stages"]] == [True, False, True]
    with pytest.raises(ConfigError, match="odd kernel"):
        split_params({"stages": 1, "residual": True, "kernel": 4}, **SHAPE)


def test_keys_of_stages_beyond_the_count_are_ignored():
    arch, _ = split_params({"stages": 1, "stage1.filters": 8, "stage3.filters": 99,
                            "dense_layers": 0, "dense_units": 128}, **SHAPE)
    assert len(arch["stages"]) == 1 and arch["dense"] == []


@pytest.mark.parametrize("params, words", [
    ({"filters": 8}, "must set `stages`"),
    ({"stages": 1, "filter": 8}, "unknown parameter 'filter'"),
    ({"stages": 1, "stage1.pooling": "max"}, "unknown parameter 'stage1.pooling'"),
    ({"stages": 1, "optimizer": "lamb"}, "optimizer='lamb'"),
    ({"stages": 1, "pool": "min"}, "pool='min'"),
    ({"stages": 1, "dense_layers": 1}, "needs `dense_units`"),
])
def test_mistakes_are_errors(params, words):
    with pytest.raises(ConfigError, match=words):
        split_params(params, **SHAPE)
