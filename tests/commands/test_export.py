"""`searcher export`: the champion as ONNX, checked against PyTorch on real images, timed with
ONNX Runtime beside PyTorch, its digest and figures recorded on the registered version; a
swapped champion or a bad output path is one line and writes nothing."""
from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import onnxruntime
import pytest
import torch
from mlflow.tracking import MlflowClient
from test_promote import promoted_store

from searcher.commands.export import main as export_main
from searcher.tracking.champion import load_champion
from searcher.training.data import load_cifar10

pytestmark = pytest.mark.slow  # promotes into a real store, exports and times a model


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_cifar):
    return promoted_store(tmp_path_factory.mktemp("export"), tiny_cifar)[0]


def test_export_writes_a_checked_onnx_and_records_it_on_the_version(champion, tiny_cifar,
                                                                    tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    # no --model: the latest search's champion
    assert export_main(["--tracking-uri", champion, "--output", str(out)]) == 0
    said = capsys.readouterr().out.splitlines()
    data = out.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert said[0].startswith(f"Wrote {out} ({len(data):,} bytes, SHA-256 {digest}): "
                              f"models:/tiny@champion as ONNX"), said
    assert said[1].startswith("Checked: logits within ") and said[1].endswith(
        "(allowed 0.0001) and the same labels, on 4 images logged with it (real test images at "
        "promotion)"), said
    assert said[2].startswith("ONNX Runtime: median latency ") and "PyTorch" in said[2], said
    tags = MlflowClient(champion).get_model_version_by_alias("tiny", "champion").tags
    assert tags["searcher.onnx.sha256"] == digest
    assert 0 <= float(tags["searcher.onnx.max_abs_diff"]) <= 1e-4
    for key in ("latency_ms", "throughput_ips", "torch_latency_ms", "torch_throughput_ips"):
        assert float(tags[f"searcher.onnx.{key}"]) > 0, key

    # The file on its own, in ONNX Runtime, labels other real images as the champion does.
    images = load_cifar10(tiny_cifar, train=False, download=False)[0].x[4:20]
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images})
    import mlflow
    mlflow.set_tracking_uri(champion)
    with torch.no_grad():
        expected = load_champion("models:/tiny@champion")(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_export_refuses_a_swapped_champion_and_writes_nothing(champion, tmp_path, capsys):
    client = MlflowClient(champion)
    version = client.get_model_version_by_alias("tiny", "champion").version
    weights = Path(urlparse(client.get_model_version_download_uri("tiny", version)).path
                   ) / "data" / "weights.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-4] + b"\0\0\0\0")
    try:
        with pytest.raises(SystemExit) as exit_:
            export_main(["--tracking-uri", champion, "--output", str(tmp_path / "x.onnx")])
    finally:
        weights.write_bytes(original)
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "weights.safetensors is not the file that was registered" in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output", ["missing/x.onnx", "."])
def test_export_to_an_output_that_cannot_be_a_file_is_one_line(champion, tmp_path, capsys,
                                                               output):
    with pytest.raises(SystemExit) as exit_:
        export_main(["--tracking-uri", champion, "--output", str(tmp_path / output)])
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("searcher export: error: --output ") and "existing folder" in line
