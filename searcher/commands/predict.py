"""`python -m searcher.predict FOLDER`: label every image in a folder with a registered model.

Writes a CSV of file (relative to FOLDER), label and confidence (the softmax probability of that
label). Images are decoded and resized the way the search read its image folders; unreadable ones
(empty, truncated) are skipped and counted. The model is any searcher model in the MLflow
registry, by default the latest search's champion: `models:/NAME@champion`, NAME being the latest
search's experiment (what `searcher promote` names the model), whatever its space. Its files are
checked against the SHA-256 the registry recorded before any of them is read as a model.

Afterwards it says how fast that went: images per second through the model's forward passes
alone and overall (decoding included), beside the speed promotion measured for the version.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from typing import Any

from searcher.errors import UserError, one_line_errors

PROG = "python -m searcher.predict"


def parse_args(argv: list[str] | None, prog: str = PROG) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0].split(": ", 1)[1])
    p.add_argument("folder", help="a folder of images (.png, .jpg, ...), searched recursively")
    p.add_argument("--model", help="a registered model, models:/NAME@ALIAS or models:/NAME/VERSION "
                                   "(default: the latest search's champion)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI; default $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///mlflow.db in this folder")
    p.add_argument("--output", default="predictions.csv", help="the CSV to write")
    p.add_argument("--batch-size", type=int, default=256)
    return p.parse_args(argv)


def _writable(output: Path) -> Path:
    """`output` if the CSV can be written there; found before any inference, so a typo costs
    nothing. Nothing is created to find out."""
    if output.is_dir():
        raise UserError(f"--output {output} is a folder; give a file name, e.g. "
                        f"{output / 'predictions.csv'}")
    parent = output.parent
    if not parent.is_dir():
        raise UserError(f"--output {output}: there is no folder {parent}; create it or give "
                        f"another path")
    if not os.access(output if output.exists() else parent, os.W_OK):
        raise UserError(f"--output {output}: cannot write "
                        f"{'the file' if output.exists() else f'in the folder {parent}'} "
                        f"(permission denied); give another path")
    return output


def predict_folder(folder: str | Path, model_uri: str | None, output: str | Path,
                   tracking_uri: str | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Label the images under `folder` with `model_uri`; returns the counts, the CSV's path,
    the seconds spent in forward passes and overall, and the version's recorded speed."""
    import numpy as np
    import torch

    from searcher.tracking import store as tracking
    from searcher.tracking.champion import latest_champion, read_champion, recorded_speed
    from searcher.training.data import IMAGE_SUFFIXES, decode_image

    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be at least 1")
    output = _writable(Path(output))
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    client = tracking.connect(tracking_uri)
    model_uri = model_uri or latest_champion(client)
    # data only, checked against the registry's SHA-256 before a byte is parsed
    model, card, _ = read_champion(model_uri)
    size, classes = card["image_shape"][-1], card["classes"]

    rows, skipped, forward_s, began = [], [], 0.0, time.perf_counter()
    for start in range(0, len(files), batch_size):
        batch = [(f, decode_image(f, size)) for f in files[start:start + batch_size]]
        skipped += [str(f) for f, image in batch if isinstance(image, str)]
        good = [(f, image) for f, image in batch if not isinstance(image, str)]
        if not good:
            continue
        images = torch.from_numpy(np.stack([i for _, i in good]))
        with torch.no_grad():
            start_s = time.perf_counter()
            logits = model(images)
            forward_s += time.perf_counter() - start_s
            probs = torch.softmax(logits, 1)
        confidence, label = probs.max(1)
        for (f, _), k, c in zip(good, label.tolist(), confidence.tolist()):
            rows.append((str(f.relative_to(folder)), classes[k], f"{c:.4f}"))
    if not rows:  # nothing to write: an earlier CSV there stays as it was
        raise UserError(f"none of the {len(files)} images under {folder} could be read (e.g. "
                        f"{skipped[0]}); {output} not written")
    try:
        with open(output, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(("file", "label", "confidence"))
            writer.writerows(rows)
    except OSError as exc:  # the disk filled, or the folder went away during inference
        output.unlink(missing_ok=True)
        raise UserError(f"--output {output}: cannot write it ({exc.strerror or exc})") from None
    return {"images": len(rows), "skipped": skipped, "output": str(output),
            "forward_s": forward_s, "wall_s": time.perf_counter() - began,
            "batch_size": batch_size, "recorded": recorded_speed(client, model_uri)}


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """The command; `prog` is how its messages name it (`searcher predict` from searcher.commands.cli)."""
    args = parse_args(argv, prog)
    with one_line_errors(prog):
        result = predict_folder(args.folder, args.model, args.output, args.tracking_uri,
                                args.batch_size)
    skipped = result["skipped"]
    print(f"{result['images']} images labelled into {result['output']}"
          + (f"; {len(skipped)} unreadable skipped, e.g. {skipped[0]}" if skipped else ""))
    print(_speed_line(result))
    return 0


def _speed_line(result: dict[str, Any]) -> str:
    """Images per second over the folder, and the speed promotion recorded for the version."""
    n, rec = result["images"], result["recorded"]
    line = (f"Throughput: {n / max(result['forward_s'], 1e-9):,.0f} images/s in the model's forward "
            f"passes (batches of up to {result['batch_size']}), {n / max(result['wall_s'], 1e-9):,.0f} "
            f"images/s overall with decoding")
    if "unreadable" in rec:
        line += (f"; the version's speed tag {rec['unreadable']} is not a number, so what "
                 f"promotion measured is left out")
    elif "latency_ms" in rec:
        line += (f"; promotion measured a median latency of {rec['latency_ms']:.3g} ms at "
                 f"batch {rec.get('batch', '?')} and "
                 f"{rec.get('throughput_ips', float('nan')):,.0f} "
                 f"images/s at batch {rec.get('throughput_batch', '?')} on "
                 f"{rec.get('device', '?')} ({rec.get('threads', '?')} thread(s))")
    return line


if __name__ == "__main__":
    sys.exit(main())
