import pytest
import torch

from searcher.model import (ACTIVATIONS, POOLS, Classifier, InfeasibleArchitecture, build_model,
                            feasible_cost, measure)

TUTORIAL_SMALL = {"stages": [{"filters": 6, "pool": "none"}, {"filters": 16, "padding": "valid"}]}
TUTORIAL_CNN = {"stages": [{"filters": 32, "padding": "valid"}, {"filters": 32, "padding": "valid"}],
                "dense": [128]}


def test_tutorial_nets_have_the_keras_parameter_counts():
    # Keras reports 37,058 and 159,018 trainable parameters for these two networks.
    assert measure(TUTORIAL_SMALL).params == 37_058
    assert measure(TUTORIAL_CNN).params == 159_018
    out = build_model(TUTORIAL_CNN)(torch.randn(5, 3, 32, 32))
    assert out.shape == (5, 10)


def test_measure_counts_multiply_adds():
    # conv 3->32 on 30x30 out (k3) + conv 32->32 on 13x13 out + 1152x128 + 128x10
    expected = 32 * 30 * 30 * 27 + 32 * 13 * 13 * 288 + 1152 * 128 + 128 * 10
    assert measure(TUTORIAL_CNN).macs == expected


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("pool", POOLS)
def test_every_activation_and_pool_builds_and_runs(activation, pool):
    arch = {"stages": [{"filters": 8, "activation": activation, "pool": pool, "batch_norm": True,
                        "dropout": 0.1, "convs": 2}] * 2, "head": "gap", "dense": [16],
            "head_dropout": 0.2, "num_classes": 7}
    out = build_model(arch)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_a_map_that_shrinks_below_one_pixel_is_infeasible():
    too_deep = {"stages": [{"filters": 4, "padding": "valid", "kernel": 5}] * 4}
    with pytest.raises(InfeasibleArchitecture, match="below 1x1|cannot be pooled"):
        build_model(too_deep)
    with pytest.raises(InfeasibleArchitecture, match="max_params"):
        feasible_cost(TUTORIAL_CNN, max_params=1000, max_mmacs=100)
    with pytest.raises(InfeasibleArchitecture, match="max_mmacs"):
        feasible_cost(TUTORIAL_CNN, max_params=10**9, max_mmacs=1)


def test_unknown_keys_and_choices_are_rejected():
    with pytest.raises(ValueError, match="unknown stage key"):
        build_model({"stages": [{"filter": 8}]})
    with pytest.raises(ValueError, match="activation='swish'"):
        build_model({"stages": [{"activation": "swish"}]})


def test_classifier_takes_uint8_images_and_normalises():
    net = build_model(TUTORIAL_SMALL)
    model = Classifier(net, [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [str(i) for i in range(10)])
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    expected = net((images.float() / 255 - 0.5) / 0.25)
    torch.testing.assert_close(model(images), expected)
    assert model.predict(images).tolist() == expected.argmax(1).tolist()
