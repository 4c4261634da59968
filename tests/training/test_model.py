import pytest
import torch

from searcher.training.model import (
    ACTIVATIONS,
    POOLS,
    Classifier,
    InfeasibleArchitecture,
    ResidualBlock,
    build_model,
    feasible_cost,
    measure,
)

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


# --- residual stages ---

def _residual(**stage):
    return {"filters": 8, "convs": 2, "residual": True, "batch_norm": True, **stage}


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("pool", POOLS)
def test_residual_stages_build_and_give_finite_logits(pool, padding):
    arch = {"stages": [_residual(pool=pool, padding=padding), _residual(filters=16, pool=pool, padding=padding)],
            "head": "flatten", "num_classes": 7}
    model = build_model(arch)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) == measure(arch).params


@pytest.mark.parametrize("in_channels, pool, projected", [
    (8, "max", False), (8, "none", False), (3, "max", True), (8, "strided", True), (3, "strided", True)])
def test_the_skip_is_projected_exactly_when_channels_or_stride_change(in_channels, pool, projected):
    model = build_model({"stages": [_residual(pool=pool)], "in_channels": in_channels})
    [block] = [m for m in model if isinstance(m, ResidualBlock)]
    assert isinstance(block.project, torch.nn.Identity) != projected
    convs_1x1 = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert len(convs_1x1) == projected


@pytest.mark.parametrize("padding, pool", [("valid", "none"), ("valid", "strided"), ("same", "strided")])
def test_the_skip_lines_up_with_the_convs(padding, pool):
    # Convs that copy their input's centre pixel and an identity projection: the block must
    # output relu(2x) sampled where the convs sampled, so any misaligned crop or stride shows.
    model = build_model({"stages": [{"filters": 4, "convs": 2, "kernel": 3, "padding": padding,
                                     "pool": pool, "residual": True}], "in_channels": 4, "head": "gap"})
    block = model[0]
    with torch.no_grad():
        for conv in block.convs:
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.zero_()
                conv.weight[range(4), range(4), 1, 1] = 1.0
                conv.bias.zero_()
        if isinstance(block.project, torch.nn.Conv2d):
            block.project.weight.copy_(torch.eye(4).view(4, 4, 1, 1))
            block.project.bias.zero_()
        x = torch.rand(1, 4, 11, 11)
        c, step = (2 if padding == "valid" else 0), (2 if pool == "strided" else 1)
        torch.testing.assert_close(block(x), 2 * x[:, :, c:11 - c:step, c:11 - c:step])


def test_measure_counts_the_projection():
    # conv 3->4 on 8x8 out (k3) + conv 4->4 stride 2 on 4x4 out + 1x1 projection 3->4 on 4x4 out + 4x10
    arch = {"stages": [{"filters": 4, "convs": 2, "pool": "strided", "residual": True,
                        "batch_norm": True}], "image_size": 8, "head": "gap"}
    assert measure(arch).macs == 4 * 64 * 27 + 4 * 16 * 36 + 4 * 16 * 3 + 4 * 10
    # "valid": 6x6 then 4x4 out; the projection runs on the input cropped to 4x4; flatten 64x10.
    arch["stages"][0].update(padding="valid", pool="none")
    arch["head"] = "flatten"
    assert measure(arch).macs == 4 * 36 * 27 + 4 * 16 * 36 + 4 * 16 * 3 + 64 * 10


def test_a_residual_net_trains():
    torch.manual_seed(0)
    model = build_model({"stages": [_residual(pool="strided"), _residual(filters=16, pool="max")],
                         "image_size": 16, "head": "gap"})
    x, y = torch.randn(32, 3, 16, 16), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.65 * losses[0], losses


_STRIDED_SKIP_TRAINS = """
import torch
from searcher.training.model import build_model
torch.set_num_threads(1)
model = build_model({"stages": [{"filters": 12, "convs": 3, "pool": "strided", "residual": True,
                                 "batch_norm": True}], "image_size": 32}
                    ).to(memory_format=torch.channels_last)
x = torch.randn(128, 3, 32, 32).to(memory_format=torch.channels_last)
for _ in range(10):
    model(x).sum().backward()
print("trained")
"""


@pytest.mark.slow
def test_a_strided_skip_trains_in_channels_last_without_crashing_the_process():
    # oneDNN's weight gradient of a stride-2 1x1 conv over 3 channels in channels_last killed
    # trials with a segfault or a bus error (the engine trains in channels_last); in a child
    # process, so a crash fails this test instead of ending the suite.
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", _STRIDED_SKIP_TRAINS], capture_output=True,
                          text=True, timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0 and "trained" in done.stdout, (done.returncode, done.stderr[-500:])


def test_the_strided_skip_is_a_stride_two_projection():
    model = build_model({"stages": [_residual(pool="strided")], "image_size": 16}).eval()
    block = next(m for m in model.modules() if isinstance(m, ResidualBlock))
    conv, norm = block.project
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = block.activation(block.convs(x) + norm(torch.nn.functional.conv2d(
            x, conv.weight, conv.bias, stride=2)))
        assert torch.allclose(block(x), expected, atol=1e-5)


def test_the_classifier_takes_uint8_and_float_images_alike():
    # uint8 0..255 as the dataset stores images, float [0, 1] as torchvision's ToTensor gives them.
    torch.manual_seed(0)
    net = build_model({"stages": [{"filters": 8, "batch_norm": True}], "head": "gap"})
    model = Classifier(net, [0.5, 0.4, 0.3], [0.25, 0.2, 0.2], [str(i) for i in range(10)]).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = model(images)
        torch.testing.assert_close(model(images.float() / 255), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model(images.double() / 255), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match=r"\[0, 1\]"):  # 0..255 as float: refused, not guessed
        model(images.float())
