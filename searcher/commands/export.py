"""`searcher export`: write a registered model as ONNX, for runtimes other than PyTorch.

The model (by default the latest search's champion) is loaded as every searcher load path loads
it, its files checked against the SHA-256 its registered version recorded; then exported, checked
against PyTorch's logits on the images logged with it (the first test images at promotion), and
timed with ONNX Runtime beside PyTorch on this machine. The file's SHA-256, the largest logit
difference and both speeds are recorded on the registered version (tags `searcher.onnx.*`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from searcher.errors import UserError, one_line_errors

PROG = "searcher export"
TAG = "searcher.onnx."  # the prefix of what an export records on the version


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("--model", help="a registered model, models:/NAME@ALIAS or models:/NAME/VERSION "
                                   "(default: the latest search's champion)")
    p.add_argument("--output", default="champion.onnx", help="the ONNX file to write")
    p.add_argument("--tracking-uri", help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///mlflow.db in this folder")
    p.add_argument("--batch", type=int, help="images per pass for the latency (default: the "
                                             "batch promotion timed at)")
    return p.parse_args(argv)


def export_model(model_uri: str | None, output: str | Path, tracking_uri: str | None = None,
                 batch: int | None = None) -> dict[str, Any]:
    """Export `model_uri` to `output`; returns what was written, checked and measured."""
    import numpy as np

    from searcher.tracking import store as tracking
    from searcher.tracking.champion import (
        latest_champion,
        read_champion,
        recorded_speed,
        registered_version,
    )
    from searcher.training import onnx_export
    from searcher.training.latency import measure_speed
    from searcher.training.portable import sha256

    output = Path(output)
    if output.is_dir() or not output.parent.is_dir():
        raise UserError(f"--output {output}: give a file in an existing folder")
    if batch is not None and batch < 1:
        raise UserError(f"--batch {batch}: must be at least 1")
    client = tracking.connect(tracking_uri)
    model_uri = model_uri or latest_champion(client)
    module, card, images = read_champion(model_uri)  # checked against the registry first
    shape = card["image_shape"]
    checked_on = "images logged with it (real test images at promotion)"
    if images is None:
        images = np.random.default_rng(0).integers(0, 256, (8, *shape), dtype=np.uint8)
        checked_on = "random images (the model has no input example)"
    data = onnx_export.export(module, shape)
    diff = onnx_export.check(data, module, images)
    recorded = recorded_speed(client, model_uri)
    batch = batch or recorded.get("batch") or 1
    throughput_batch = recorded.get("throughput_batch") or 64
    onnx_speed = onnx_export.measure(data, shape, batch, throughput_batch)
    torch_speed = measure_speed(module, tuple(shape), batch, throughput_batch, "cpu")
    # Written whole or not at all: a reader never finds half a model under the name.
    with tempfile.NamedTemporaryFile(dir=output.parent, prefix=f".{output.name}.",
                                     delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, output)
    digest = sha256(data)
    version = registered_version(client, model_uri)
    tags = {"sha256": digest, "max_abs_diff": f"{diff:.3g}",
            "tolerance": f"{onnx_export.TOLERANCE:g}", "checked_images": str(len(images)),
            "latency_ms": f"{onnx_speed.latency_ms:.6g}",
            "throughput_ips": f"{onnx_speed.throughput_ips:.6g}",
            "torch_latency_ms": f"{torch_speed.latency_ms:.6g}",
            "torch_throughput_ips": f"{torch_speed.throughput_ips:.6g}",
            "batch": str(batch), "throughput_batch": str(throughput_batch),
            "device": "cpu", "threads": str(onnx_speed.threads)}
    if version is not None:
        for key, value in tags.items():
            client.set_model_version_tag(version.name, version.version, TAG + key, value)
    return {"model": model_uri, "version": version and f"models:/{version.name}/{version.version}",
            "output": str(output), "sha256": digest, "bytes": len(data), "diff": diff,
            "images": len(images), "checked_on": checked_on, "onnx": onnx_speed,
            "tolerance": onnx_export.TOLERANCE,
            "torch": torch_speed}


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        r = export_model(args.model, args.output, args.tracking_uri, args.batch)
    onnx, torch_ = r["onnx"], r["torch"]
    print(f"Wrote {r['output']} ({r['bytes']:,} bytes, SHA-256 {r['sha256']}): {r['model']} as ONNX")
    print(f"Checked: logits within {r['diff']:.2g} of PyTorch's (allowed {r['tolerance']:g}) "
          f"and the same labels, on {r['images']} {r['checked_on']}")
    print(f"ONNX Runtime: median latency {onnx.latency_ms:.3g} ms at batch {onnx.batch}, "
          f"{onnx.throughput_ips:,.0f} images/s at batch {onnx.throughput_batch}; PyTorch "
          f"{torch_.latency_ms:.3g} ms and {torch_.throughput_ips:,.0f} images/s; on cpu with "
          f"{onnx.threads} thread(s)")
    if r["version"]:
        print(f"Recorded on {r['version']} (tags searcher.onnx.*)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
