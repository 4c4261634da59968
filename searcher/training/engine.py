"""The training loop: plain PyTorch over in-memory uint8 tensors; runs with or without Ray.

The whole split lives in memory (on the GPU when there is one) as uint8 N x C x H x W; batches
are drawn by index, cropped and flipped as whole-batch tensor ops, then normalised. There is no
DataLoader and no per-image transform: on small CNNs those cost more than the network.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

OPTIMIZERS = ("sgd", "adamw", "adam")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "sgd"  # SGD with Nesterov momentum: the strongest simple choice for CNNs
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4  # decoupled for adamw, L2 for sgd and adam
    batch_size: int = 128
    label_smoothing: float = 0.0
    flip: bool = True  # random horizontal flip
    crop: int = 4  # random crop after zero padding by this many pixels; 0 turns it off
    schedule: str = "onecycle"  # linear warm-up over a quarter of the run, then linear decay
    epochs: int = 8  # the schedule's length; ASHA may stop the trial before the end

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown training key(s): {', '.join(sorted(unknown))}")
        cfg = cls(**d)
        if cfg.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer={cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"schedule={cfg.schedule!r}; choose from {', '.join(SCHEDULES)}")
        if not (cfg.lr > 0 and cfg.batch_size >= 1 and cfg.epochs >= 1 and cfg.crop >= 0):
            raise ValueError(f"lr, batch_size and epochs must be positive, crop >= 0: {cfg}")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- augmentation

def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` and crop back to size at a random offset per image, in one gather."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=gen.device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=gen.device).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # gather gives N x H x W x C


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen, device=gen.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


# ----------------------------------------------------------------------------- training

def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up here: on GPUs, and on CPUs with bf16 units.

    With those instructions (AVX512-BF16, AMX) bf16 trains the small CNNs several times faster
    than fp32; without them bf16 would be emulated and slower.
    """
    if device.type == "cuda":
        return True
    cpu = getattr(torch, "cpu", None)
    return bool(device.type == "cpu" and cpu is not None and (
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()))


class Trainer:
    """Trains `model` on (train_x, train_y) and evaluates on (val_x, val_y), one epoch per call.

    Mixed precision (bf16 autocast, fp32 weights) and channels_last wherever they are fast:
    on GPUs always, on CPUs with bf16 instructions (see `fast_bf16`); `bf16=False` turns it off.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, train: tuple[torch.Tensor, torch.Tensor],
                 val: tuple[torch.Tensor, torch.Tensor], mean: list[float], std: list[float],
                 device: str | torch.device = "cpu", seed: int = 0, bf16: bool | None = None):
        self.cfg, self.device = cfg, torch.device(device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True
        self.bf16 = fast_bf16(self.device) if bf16 is None else bf16
        # channels_last is faster for convs on GPUs and in oneDNN on CPUs, in fp32 too, so it
        # goes with every device.
        self.memory_format = torch.channels_last
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.train_x, self.train_y = (t.to(self.device) for t in train)
        self.val_x, self.val_y = (t.to(self.device) for t in val)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1) * 255.0
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1) * 255.0
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        self.batch_size = min(cfg.batch_size, len(self.train_x))
        # Full batches only: a last batch of one image would break batch norm.
        self.steps_per_epoch = max(1, len(self.train_x) // self.batch_size)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.epoch = 0  # epochs trained to their end
        self._step, self._order = 0, None  # the epoch in progress: steps done, its image order

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c, params = self.cfg, self.model.parameters()
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.momentum > 0,
                                   weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)

    def _make_scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        total = self.steps_per_epoch * self.cfg.epochs
        if self.cfg.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=self.cfg.lr, total_steps=total, pct_start=0.25,
                anneal_strategy="linear", cycle_momentum=False)
        if self.cfg.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=total)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() - self.mean) / self.std
        return x.contiguous(memory_format=self.memory_format)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @property
    def step(self) -> int:
        """Steps trained of the epoch in progress (0 between epochs)."""
        return self._step

    def train_epoch(self, until: float = 1.0) -> dict[str, float]:
        """Train the epoch in progress up to `until` (a fraction) of its pass over the training
        split, from where it stands: by default to its end. An epoch trained in parts sees the
        same images in the same order as one trained at once, and its learning rate schedule
        is the same; a part is a seeded random `until` share of the split. Returns train_loss
        (over the part's steps), epoch_time_s and images_per_s."""
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        self.model.train()
        bs = self.batch_size
        if self._order is None:  # a new epoch: a new pass over the split in a new order
            self._order = torch.randperm(len(self.train_x), generator=self.gen,
                                         device=self.gen.device).to(self.device)
        first = self._step
        last = max(first, min(self.steps_per_epoch, round(until * self.steps_per_epoch)))
        total = torch.zeros((), device=self.device)
        for step in range(first, last):
            idx = self._order[step * bs:(step + 1) * bs]
            x, y = self.train_x[idx], self.train_y[idx]
            if self.cfg.crop:
                x = random_crop(x, self.cfg.crop, self.gen)
            if self.cfg.flip:
                x = random_flip(x, self.gen)
            with self._autocast():
                loss = self.criterion(self.model(self._prepare(x)), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            total += loss.detach()  # summed on the device: no host sync per step
        steps, number = last - first, self.epoch + 1
        train_loss = total.item() / max(1, steps)
        elapsed = time.perf_counter() - start
        self._step = last
        if last == self.steps_per_epoch:
            self.epoch, self._step, self._order = self.epoch + 1, 0, None
        if not math.isfinite(train_loss):
            raise TrainingDiverged(f"training loss became {train_loss} in epoch {number}")
        return {"train_loss": train_loss, "epoch_time_s": elapsed,
                "images_per_s": steps * bs / elapsed if elapsed > 0 else 0.0}

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                 batch_size: int = 256) -> dict[str, float]:
        """Loss and accuracy on the validation split (or on the given tensors)."""
        x = self.val_x if x is None else x.to(self.device)
        y = self.val_y if y is None else y.to(self.device)
        return evaluate(self.model, x, y, self._prepare, self._autocast, batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch,
                **({"step": self._step, "order": self._order.cpu()} if self._step else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self._step = state.get("step", 0)  # a checkpoint taken in the middle of an epoch
        self._order = state["order"].to(self.device) if self._step else None


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, prepare, autocast,
             batch_size: int = 256) -> dict[str, float]:
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), batch_size):
        with autocast():
            logits = model(prepare(x[i:i + batch_size]))
        target = y[i:i + batch_size]
        loss_sum += F.cross_entropy(logits.float(), target, reduction="sum")
        correct += (logits.argmax(1) == target).sum()
    n = max(1, len(x))
    return {"val_loss": loss_sum.item() / n, "val_acc": correct.item() / n}
