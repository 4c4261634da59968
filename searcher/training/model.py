"""Build a CNN from a plain architecture dict. Plain PyTorch: no Ray, Optuna or MLflow here."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),  # 0.1 as in the tutorials' Keras examples
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
POOLS = ("max", "avg", "strided", "none")
PADDINGS = ("same", "valid")
HEADS = ("flatten", "gap")


class InfeasibleArchitecture(ValueError):
    """The architecture cannot be built (e.g. its feature map shrinks below 1x1)."""


@dataclass(frozen=True)
class Stage:
    filters: int = 32  # output channels of every conv in the stage
    kernel: int = 3  # square kernel size
    convs: int = 1  # conv layers before the pooling
    padding: str = "same"  # "valid" (Keras' default) shrinks the map by kernel-1 per conv
    activation: str = "relu"
    pool: str = "max"  # "strided" makes the stage's last conv stride 2 instead of pooling
    dropout: float = 0.0  # after the pooling
    batch_norm: bool = False  # conv -> BN -> activation; the conv then has no bias
    residual: bool = False  # adds the input to the convs' output (ResNet): deep stages still train


@dataclass(frozen=True)
class Arch:
    stages: tuple[Stage, ...]
    num_classes: int = 10
    in_channels: int = 3
    image_size: int = 32
    head: str = "flatten"  # "flatten" + dense layers, or "gap": global average pooling
    dense: tuple[int, ...] = ()  # hidden dense units before the classifier layer
    head_activation: str = "relu"
    head_dropout: float = 0.0  # before each dense layer

    @classmethod
    def from_dict(cls, arch: dict[str, Any]) -> "Arch":
        _reject_unknown(arch, cls, "architecture")
        for s in arch.get("stages", ()):
            _reject_unknown(s, Stage, "stage")
        values = dict(arch)
        values["stages"] = tuple(Stage(**s) for s in arch.get("stages", ()))
        values["dense"] = tuple(int(u) for u in arch.get("dense", ()))
        built = cls(**values)
        _check_choices(built)
        return built

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        d["dense"] = list(self.dense)
        return d


def _reject_unknown(d: dict[str, Any], cls: type, what: str) -> None:
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} key(s): {', '.join(sorted(unknown))}")


def _check_choices(arch: Arch) -> None:
    def need(value: Any, choices: Any, what: str) -> None:
        if value not in choices:
            raise ValueError(f"{what}={value!r}; choose from {', '.join(map(str, choices))}")

    need(arch.head, HEADS, "head")
    need(arch.head_activation, ACTIVATIONS, "head_activation")
    for s in arch.stages:
        need(s.activation, ACTIVATIONS, "activation")
        need(s.pool, POOLS, "pool")
        need(s.padding, PADDINGS, "padding")
        if s.filters < 1 or s.kernel < 1 or s.convs < 1:
            raise ValueError(f"stage {s}: filters, kernel and convs must be at least 1")
        if not 0.0 <= s.dropout < 1.0:
            raise ValueError(f"dropout={s.dropout}: must be in [0, 1)")
        if s.residual and s.kernel % 2 == 0:
            # An even kernel moves the map's centre by half a pixel; no skip can line up with it.
            raise ValueError(f"kernel={s.kernel}: a residual stage needs an odd kernel")
    if not arch.stages:
        raise ValueError("an architecture needs at least one stage")


class ResidualBlock(nn.Module):
    """A stage's convs plus a skip path, added before the last activation (as in ResNet).

    The skip is the input, centre-cropped by `crop` pixels a side when "valid" padding shrank the
    convs' output, subsampled by `stride`, then passed through `project` (a 1x1 conv, or nothing
    when the channels and the stride are unchanged). Cropping before subsampling keeps the two
    paths aligned pixel for pixel. Subsampling and then a stride-1 1x1 conv is a stride-2 1x1
    conv, computed without oneDNN's strided 1x1 weight gradient, which crashes the process (a
    segfault, a bus error) on AVX2 CPUs in channels_last with few input channels
    (tests/training/test_model.py). No data-dependent branches, so torch.export traces it.
    """

    def __init__(self, convs: nn.Sequential, project: nn.Module, activation: nn.Module, crop: int,
                 stride: int = 1):
        super().__init__()
        self.convs, self.project, self.activation = convs, project, activation
        self.crop, self.stride = crop, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.crop, self.stride
        skip = self.project(x[:, :, c:x.shape[2] - c:s, c:x.shape[3] - c:s])
        return self.activation(self.convs(x) + skip)


def _stage_layers(s: Stage, in_ch: int, size: int) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    stage_in_ch = in_ch
    for i in range(s.convs):
        stride = 2 if (s.pool == "strided" and i == s.convs - 1) else 1
        pad = s.kernel // 2 if s.padding == "same" else 0
        size = (size + 2 * pad - s.kernel) // stride + 1
        if size < 1:
            raise InfeasibleArchitecture(f"feature map shrinks below 1x1 in a {s.kernel}x{s.kernel} conv")
        layers.append(nn.Conv2d(in_ch, s.filters, s.kernel, stride, pad, bias=not s.batch_norm))
        if s.batch_norm:
            layers.append(nn.BatchNorm2d(s.filters))
        layers.append(ACTIVATIONS[s.activation]())
        in_ch = s.filters
    if s.residual:
        layers = [_residual(s, layers[:-1], stage_in_ch)]  # its last activation follows the sum
    if s.pool in ("max", "avg"):
        if size < 2:
            raise InfeasibleArchitecture(f"a {size}x{size} feature map cannot be pooled")
        layers.append(nn.MaxPool2d(2) if s.pool == "max" else nn.AvgPool2d(2))
        size //= 2
    if s.dropout > 0:
        layers.append(nn.Dropout(s.dropout))
    return layers, size


def _residual(s: Stage, convs: list[nn.Module], in_ch: int) -> ResidualBlock:
    stride = 2 if s.pool == "strided" else 1
    project: nn.Module = nn.Identity()
    if in_ch != s.filters or stride != 1:
        project = nn.Conv2d(in_ch, s.filters, 1, bias=not s.batch_norm)  # stride: see the block
        if s.batch_norm:
            project = nn.Sequential(project, nn.BatchNorm2d(s.filters))
    crop = s.convs * (s.kernel - 1) // 2 if s.padding == "valid" else 0
    return ResidualBlock(nn.Sequential(*convs), project, ACTIVATIONS[s.activation](), crop, stride)


def build_model(arch_dict: dict[str, Any]) -> nn.Sequential:
    """Return the network for `arch_dict`; raises InfeasibleArchitecture if it cannot work."""
    arch = Arch.from_dict(arch_dict)
    layers: list[nn.Module] = []
    channels, size = arch.in_channels, arch.image_size
    for stage in arch.stages:
        stage_layers, size = _stage_layers(stage, channels, size)
        layers += stage_layers
        channels = stage.filters
    if arch.head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        features = channels
    else:
        layers.append(nn.Flatten())
        features = channels * size * size
    for units in arch.dense:
        if arch.head_dropout > 0:
            layers.append(nn.Dropout(arch.head_dropout))
        layers += [nn.Linear(features, units), ACTIVATIONS[arch.head_activation]()]
        features = units
    if arch.head_dropout > 0:
        layers.append(nn.Dropout(arch.head_dropout))
    layers.append(nn.Linear(features, arch.num_classes))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int  # multiply-accumulates per image in the forward pass (convs and dense layers)


def measure(arch_dict: dict[str, Any]) -> Cost:
    """Size and compute of the network, without allocating it (built on the meta device)."""
    arch = Arch.from_dict(arch_dict)
    with torch.device("meta"):
        model = build_model(arch_dict).eval()
    # Hooks see every conv and dense layer wherever it sits (inside residual blocks too) and the
    # shapes it really produced, so the count cannot drift from what build_model builds.
    macs = 0

    def count(layer: nn.Module, inputs: Any, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            macs += out[0].numel() * layer.in_channels // layer.groups * kh * kw
        else:
            macs += layer.in_features * layer.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.empty(1, arch.in_channels, arch.image_size, arch.image_size, device="meta"))
    for hook in hooks:
        hook.remove()
    return Cost(sum(p.numel() for p in model.parameters()), macs)


def feasible_cost(arch_dict: dict[str, Any], max_params: int, max_mmacs: float) -> Cost:
    """The network's cost; InfeasibleArchitecture if it cannot work or exceeds the limits."""
    cost = measure(arch_dict)
    if cost.params > max_params:
        raise InfeasibleArchitecture(f"{cost.params:,} parameters exceed max_params={max_params:,}")
    if cost.macs > max_mmacs * 1e6:
        raise InfeasibleArchitecture(f"{cost.macs / 1e6:.0f}M multiply-adds per image exceed "
                                     f"max_mmacs={max_mmacs:g}")
    return cost


class Classifier(nn.Module):
    """A trained network that takes images N x C x H x W, as the dataset stores them (uint8,
    0..255) or as torchvision's ToTensor() gives them (float, 0..1).

    `model(x)` gives logits; `model(x).argmax(1)` (or `model.predict(x)`) the class labels.
    """

    def __init__(self, net: nn.Module, mean: list[float], std: list[float], classes: list[str]):
        super().__init__()
        self.net = net
        self.classes = list(classes)
        # Stored as buffers in the 0..255 scale so the input needs no conversion beyond float().
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.mean.device, torch.float32)
        if images.is_floating_point():
            # Float images are ToTensor's [0, 1]. Floats on the 0..255 scale would give confident
            # nonsense once scaled, so they are refused rather than guessed at.
            if bool((x < 0.0).any()) or bool((x > 1.0).any()):
                raise ValueError("float images must be in [0, 1] (as torchvision's ToTensor "
                                 "gives them); pass 0..255 pixels as uint8")
            x = x * 255.0
        return self.net((x - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images).argmax(1)


__all__ = ["Arch", "Stage", "ResidualBlock", "Classifier", "InfeasibleArchitecture", "build_model", "measure",
           "feasible_cost", "Cost", "ACTIVATIONS", "POOLS", "PADDINGS", "HEADS"]
