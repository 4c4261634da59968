"""`python -m searcher.bench [engine]`: how fast trials train, and what the search machinery costs.

Claims, each measured side by side in one process so a noisy machine moves both sides alike:
- engine_vs_plain     images/s of searcher's loop / a minimal hand-written loop (goal >= 0.95)
- engine_vs_tutorial  searcher's loop / the tutorials' pipeline: torchvision Dataset, DataLoader,
                      per-image crop/flip/to-tensor/normalize, the model written by hand (goal >= 2)
- slot_utilisation    summed trial training time / (search wall time x trial slots), a real
                      search on the local Ray (goal >= 0.85)
- trial_overhead_s    median over trials of (trial wall time - its training time) (goal < 1 s)
- memory              peak RSS of the driver; RSS and unique memory (USS) of a trial process
The last three come from bench/search.py. Figures go to a table and, with --json, to a file.
Results are kept in BENCHMARKS.md. This is the default subcommand: `python -m searcher.bench
--data-dir X` runs it, as it did before the benchmarks became a package.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from searcher.bench.common import machine_info, synthetic_cifar, write_json
from searcher.bench.search import bench_search
from searcher.training.engine import TrainConfig, Trainer, fast_bf16
from searcher.training.model import build_model, measure

# ----------------------------------------------------------------------------- setup

TUTORIAL_CNN = {"stages": [{"filters": 32, "padding": "valid"}, {"filters": 32, "padding": "valid"}],
                "dense": [128]}
TUTORIAL_SMALL = {"stages": [{"filters": 6, "pool": "none"}, {"filters": 16, "padding": "valid"}]}
MID_NET = {"stages": [{"filters": 32, "batch_norm": True, "convs": 2},
                      {"filters": 64, "batch_norm": True, "convs": 2},
                      {"filters": 128, "batch_norm": True}], "head": "gap"}
GOALS = {"engine_vs_plain": (">=", 0.95), "engine_vs_tutorial": (">=", 2.0),
         "slot_utilisation": (">=", 0.85), "trial_overhead_s": ("<", 1.0)}


class HandTutorialCNN(nn.Module):
    """The tutorial's Conv(32)-MaxPool-Conv(32)-MaxPool-Dense(128)-Dense(10), as a user writes it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 32, 3), nn.Conv2d(32, 32, 3)
        self.fc1, self.fc2 = nn.Linear(32 * 6 * 6, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class HandTutorialSmall(nn.Module):
    """Conv(6,same)-Conv(16)-MaxPool-Dense(10), as a user writes it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 16, 3)
        self.fc = nn.Linear(16 * 15 * 15, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv2(torch.relu(self.conv1(x)))), 2)
        return self.fc(x.flatten(1))


# ----------------------------------------------------------------------------- the three loops

def _time_epoch(fn: Callable[[], int], device: torch.device) -> float:
    """Images per second of one call of `fn` (which returns how many images it trained on)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    n = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def engine_epoch(arch: dict, x: torch.Tensor, y: torch.Tensor, batch: int, device: torch.device,
                 augment: bool) -> Callable[[], int]:
    cfg = TrainConfig(batch_size=batch, crop=4 if augment else 0, flip=augment, epochs=100,
                      lr=0.01, weight_decay=0.0)
    torch.manual_seed(0)
    trainer = Trainer(build_model(arch), cfg, (x, y), (x[:8], y[:8]), [0.5] * 3, [0.25] * 3,
                      device=device)
    return lambda: (trainer.train_epoch(), trainer.steps_per_epoch * trainer.batch_size)[1]


def plain_epoch(arch: dict, x: torch.Tensor, y: torch.Tensor, batch: int,
                device: torch.device) -> Callable[[], int]:
    """The shortest honest loop doing the same arithmetic as the engine (bf16 autocast and
    channels_last where the engine uses them): index, normalise, forward, backward, step."""
    torch.manual_seed(0)
    model = build_model(arch).to(device, memory_format=torch.channels_last)
    bf16 = fast_bf16(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x, y = x.to(device), y.to(device)
    mean, std = 0.5 * 255, 0.25 * 255

    def epoch() -> int:
        model.train()
        order = torch.randperm(len(x), device=device)
        steps = len(x) // batch
        for i in range(steps):
            idx = order[i * batch:(i + 1) * batch]
            xb = ((x[idx].float() - mean) / std).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps * batch
    return epoch


def tutorial_epoch(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch: int,
                   device: torch.device) -> Callable[[], int]:
    """The tutorials' pipeline: a Dataset with per-image transforms and a DataLoader. The images
    are the ones searcher's loader read (its restricted unpickler: torchvision's CIFAR10 would
    `pickle.load` the files, which runs whatever a planted one holds); each is turned into a
    PIL image per item, as torchvision's CIFAR10 does."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class Cifar10Arrays(Dataset):
        def __init__(self, transform: Callable[[Any], torch.Tensor]) -> None:
            self.transform = transform

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return self.transform(Image.fromarray(images[i].transpose(1, 2, 0))), int(labels[i])

    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)])
    loader = DataLoader(Cifar10Arrays(tf), batch_size=batch, shuffle=True, drop_last=True, num_workers=0)
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def epoch() -> int:
        model.train()
        seen = 0
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(yb)
        return seen
    return epoch


def side_by_side(loops: dict[str, Callable[[], int]], repeats: int,
                 device: torch.device) -> dict[str, float]:
    """Median images/s of each loop, run in turns (after one warm-up turn)."""
    for fn in loops.values():
        fn()
    rates: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(repeats):
        for name, fn in loops.items():
            rates[name].append(_time_epoch(fn, device))
    return {k: statistics.median(v) for k, v in rates.items()}


# ----------------------------------------------------------------------------- engine figures

def bench_engine(data_dir: Path, n: int, batch: int, threads: int, repeats: int,
                 device: torch.device) -> dict[str, Any]:
    from searcher.training.data import load_cifar10
    torch.set_num_threads(threads)
    split, _ = load_cifar10(data_dir, download=False)
    x, y = torch.from_numpy(split.x[:n]), torch.from_numpy(split.y[:n])
    out: dict[str, Any] = {"images": n, "batch_size": batch, "threads": threads}
    nets = {"tutorial_cnn": (TUTORIAL_CNN, HandTutorialCNN), "tutorial_small": (TUTORIAL_SMALL, HandTutorialSmall),
            "mid_net": (MID_NET, lambda: build_model(MID_NET))}
    for name, (arch, hand) in nets.items():
        rates = side_by_side({
            "engine": engine_epoch(arch, x, y, batch, device, augment=False),
            "plain": plain_epoch(arch, x, y, batch, device),
            "engine_aug": engine_epoch(arch, x, y, batch, device, augment=True),
            "tutorial": tutorial_epoch(hand(), split.x[:n], split.y[:n], batch, device),
        }, repeats, device)
        macs = measure(arch).macs
        out[name] = {**{f"{k}_images_per_s": round(v, 1) for k, v in rates.items()},
                     "engine_vs_plain": round(rates["engine"] / rates["plain"], 3),
                     "engine_vs_tutorial": round(rates["engine_aug"] / rates["tutorial"], 3),
                     "mmacs_per_image": round(macs / 1e6, 2),
                     # training ~ 3x the forward pass (forward, input grads, weight grads)
                     "train_gflops_per_s": round(rates["engine_aug"] * 6 * macs / 1e9, 2)}
    return out


# ----------------------------------------------------------------------------- report

def _verdict(name: str, value: float) -> str:
    op, goal = GOALS[name]
    ok = value >= goal if op == ">=" else value < goal
    return f"{op} {goal:g}  {'ok' if ok else 'MISSED'}"


def table(result: dict[str, Any]) -> str:
    lines = [f"{'figure':<42} {'value':>10}  goal", "-" * 68]
    engine = result.get("engine", {})
    for net in ("tutorial_cnn", "tutorial_small", "mid_net"):
        if net in engine:
            r = engine[net]
            lines.append(f"{'engine_vs_plain (' + net + ')':<42} {r['engine_vs_plain']:>10.3f}  "
                         f"{_verdict('engine_vs_plain', r['engine_vs_plain'])}")
            lines.append(f"{'engine_vs_tutorial (' + net + ')':<42} {r['engine_vs_tutorial']:>10.3f}  "
                         + (_verdict('engine_vs_tutorial', r['engine_vs_tutorial'])
                            if net != "mid_net" else "(figure only)"))
            lines.append(f"{'  images/s engine+aug | tutorial (' + net + ')':<42} "
                         f"{r['engine_aug_images_per_s']:>10.0f}  | {r['tutorial_images_per_s']:.0f}")
    search = result.get("search")
    if search:
        for name in ("slot_utilisation", "trial_overhead_s"):
            lines.append(f"{name:<42} {search[name]:>10.3f}  {_verdict(name, search[name])}")
        for name in ("driver_peak_rss_mb", "trial_peak_rss_mb", "trial_peak_private_mb",
                     "import_private_mb", "trial_extra_private_mb", "dataset_mb"):
            lines.append(f"{name:<42} {search[name]:>10.1f}")
        lines.append(f"{'dataset in shared memory (not copied)':<42} {str(search['dataset_shared']):>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    claim = __doc__.split("\n")[0].split(": ", 1)[1]
    p = argparse.ArgumentParser(prog="python -m searcher.bench [engine]",
                                description=claim[0].upper() + claim[1:],
                                epilog="Other benchmarks: python -m searcher.bench quality --help")
    p.add_argument("--data-dir", help="a CIFAR-10 folder; default: generated CIFAR-shaped data")
    p.add_argument("--images", type=int, default=10_000, help="training images per engine epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads (a trial's CPU share)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--trials", type=int, default=12, help="trials in the search benchmark")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial in the search benchmark")
    p.add_argument("--search-images", type=int, default=10_000,
                   help="images per CIFAR batch file for the search benchmark's generated data")
    p.add_argument("--no-search", action="store_true", help="engine figures only (no Ray)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result: dict[str, Any] = machine_info(str(device))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(args.data_dir) if args.data_dir else synthetic_cifar(
            Path(tmp) / "engine", max(args.images // 5 + 1, 2000))
        result["engine"] = bench_engine(data_dir, args.images, args.batch_size, args.threads,
                                        args.repeats, device)
        if not args.no_search:
            search_dir = synthetic_cifar(Path(tmp) / "search", args.search_images)
            result["search"] = bench_search(search_dir, args.trials, args.epochs)
    print(table(result))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
