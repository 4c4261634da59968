"""A classifier as ONNX, for runtimes other than PyTorch: exported, checked, timed.

The ONNX model takes what the classifier takes from a dataset, uint8 images N x C x H x W (any
N), and gives the same logits; the normalisation is inside it. It is checked against PyTorch's
logits on the images given (real ones: the champion's input example) within TOLERANCE, with the
same labels, and timed with ONNX Runtime the way searcher.training.latency times PyTorch, so the
two speeds compare. Plain PyTorch and ONNX Runtime: no MLflow here.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from searcher.errors import UserError
from searcher.training.latency import Speed, measure_runner

# The largest difference allowed between a logit from ONNX Runtime and PyTorch's for the same
# images: float32 arithmetic in another order (fused kernels) differs by about 1e-6 relative.
TOLERANCE = 1e-4
INPUT, OUTPUT = "images", "logits"


def _onnx() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise UserError("ONNX export needs onnx, onnxscript and onnxruntime: pip install "
                        "'searcher[onnx]'") from None
    return onnxruntime


def export(model: torch.nn.Module, image_shape: list[int]) -> bytes:
    """`model` (in eval mode) as an ONNX model's bytes, with a batch of any size."""
    _onnx()
    example = torch.zeros(2, *image_shape, dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT],
                                    output_names=[OUTPUT], verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    return program.model_proto.SerializeToString()


def session(data: bytes, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU for the model in `data` (bytes, checked by the caller)."""
    ort = _onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def check(data: bytes, model: torch.nn.Module, images: np.ndarray) -> float:
    """The largest absolute difference between the ONNX model's logits and `model`'s on
    `images` (uint8 N x C x H x W); a UserError if it is over TOLERANCE or a label differs."""
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    got = session(data).run([OUTPUT], {INPUT: images})[0]
    diff = float(np.abs(got - expected).max())
    if not diff <= TOLERANCE or (got.argmax(1) != expected.argmax(1)).any():
        raise UserError(f"the ONNX export differs from the PyTorch model by {diff:.3g} in a "
                        f"logit (allowed {TOLERANCE:g}) on {len(images)} images; not written")
    return diff


def measure(data: bytes, image_shape: list[int], batch: int, throughput_batch: int,
            threads: int | None = None) -> Speed:
    """The ONNX model timed with ONNX Runtime on the CPU, as PyTorch's is timed."""
    run = session(data, threads)
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        return rng.integers(0, 256, (n, *image_shape), dtype=np.uint8)

    return measure_runner(lambda x: run.run([OUTPUT], {INPUT: x}), images, batch,
                          throughput_batch, "cpu", threads or torch.get_num_threads())
