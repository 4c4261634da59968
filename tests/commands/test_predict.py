"""Batch prediction over an image folder with the registered champion, as a user runs it."""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image
from test_promote import promoted_store

from searcher.commands.predict import main as predict_main
from searcher.training.checkpoint import classifier_from_checkpoint, load_checkpoint
from searcher.training.data import load_cifar10

pytestmark = pytest.mark.slow  # promotes a model into a real store first


def test_predict_labels_a_folder_into_a_csv_and_skips_unreadable_images(tmp_path, tiny_cifar,
                                                                       capsys):
    uri, ckpt_dir = promoted_store(tmp_path, tiny_cifar)

    images = load_cifar10(tiny_cifar, train=False, download=False)[0].x[:5]
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    names = [f"img{i}.png" if i < 3 else f"sub/img{i}.png" for i in range(len(images))]
    for name, image in zip(names, images):  # PNG is lossless: the pixels come back unchanged
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / name)
    (folder / "empty.jpg").write_bytes(b"")  # as public downloads ship them

    out = tmp_path / "predictions.csv"
    # no --model: the latest search's champion, whatever its space (here `tiny`, not cifar10)
    assert predict_main([str(folder), "--tracking-uri", uri,
                         "--output", str(out), "--batch-size", "2"]) == 0
    said = capsys.readouterr().out
    assert f"5 images labelled into {out}; 1 unreadable skipped" in said and "empty.jpg" in said
    # then how fast: through the model alone and overall, beside what promotion measured
    (speed,) = [line for line in said.splitlines() if line.startswith("Throughput: ")]
    through_model, overall = re.findall(r"([\d,]+) images/s", speed)[:2]
    assert float(through_model.replace(",", "")) >= float(overall.replace(",", "")) > 0, speed
    assert "in the model's forward passes (batches of up to 2)" in speed, speed
    assert "promotion measured a median latency of" in speed and "at batch 1" in speed, speed
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["file"] for r in rows) == sorted(names)
    model = classifier_from_checkpoint(load_checkpoint(ckpt_dir))
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(images)), 1)
    by_file = {r["file"]: r for r in rows}
    for name, p in zip(names, probs):
        assert by_file[name]["label"] == f"class{int(p.argmax())}"
        assert float(by_file[name]["confidence"]) == pytest.approx(float(p.max()), abs=1e-4)


def test_predict_with_a_model_that_is_not_there_is_one_line(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    with pytest.raises(SystemExit) as exit_:
        predict_main([str(folder), "--model", "models:/nothing@champion",
                      "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load the model models:/nothing@champion" in err[0]


@pytest.fixture(scope="module")
def champion(tmp_path_factory, tiny_cifar):
    """A registered champion and a folder of two images for it."""
    root = tmp_path_factory.mktemp("champion")
    uri, _ = promoted_store(root, tiny_cifar)
    folder = root / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return uri, folder


def _refused(capsys, argv, words):
    with pytest.raises(SystemExit) as exit_:
        predict_main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("python -m searcher.predict: error:") and words in lines[0], lines[0]


@pytest.mark.parametrize("size", ["0", "-1"])
def test_a_batch_size_below_1_is_one_line_and_writes_nothing(champion, tmp_path, capsys, size):
    uri, folder = champion
    out = tmp_path / "predictions.csv"
    _refused(capsys, [str(folder), "--model", "models:/tiny@champion", "--tracking-uri", uri,
                      "--output", str(out), "--batch-size", size], f"--batch-size {size}")
    assert not out.exists()


def _missing_folder(tmp_path):
    return tmp_path / "no" / "such" / "predictions.csv", "no folder"


def _a_folder(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path / "out", "is a folder"


def _unwritable(tmp_path):
    import os
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    (tmp_path / "ro").mkdir(mode=0o555)
    return tmp_path / "ro" / "predictions.csv", "cannot write"


@pytest.mark.parametrize("where", [_missing_folder, _a_folder, _unwritable],
                         ids=lambda f: f.__name__.strip("_"))
def test_an_output_that_cannot_be_written_is_one_line_before_any_inference(champion, tmp_path,
                                                                           capsys, where):
    uri, folder = champion
    out, words = where(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    _refused(capsys, [str(folder), "--model", "models:/tiny@champion", "--tracking-uri", uri,
                      "--output", str(out)], words)
    assert sorted(tmp_path.rglob("*")) == before


def test_a_folder_where_nothing_decodes_is_one_line_and_keeps_an_earlier_csv(champion, tmp_path,
                                                                               capsys):
    uri, _ = champion
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "predictions.csv"
    out.write_text("file,label,confidence\nold.png,cat,0.9\n")
    _refused(capsys, [str(folder), "--model", "models:/tiny@champion", "--tracking-uri", uri,
                      "--output", str(out)], "none of the 2 images")
    assert out.read_text() == "file,label,confidence\nold.png,cat,0.9\n"


def test_a_malformed_speed_tag_on_the_version_is_said_and_the_labels_are_written(champion,
                                                                                 tmp_path,
                                                                                 capsys):
    uri, folder = champion
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("tiny", "champion").version
    good = client.get_model_version("tiny", version).tags["searcher.latency_ms"]
    client.set_model_version_tag("tiny", version, "searcher.latency_ms", "{[]: 1}")
    try:
        out = tmp_path / "p.csv"
        assert predict_main([str(folder), "--model", "models:/tiny@champion", "--tracking-uri",
                             uri, "--output", str(out)]) == 0
    finally:
        client.set_model_version_tag("tiny", version, "searcher.latency_ms", good)
    said = capsys.readouterr()
    (speed,) = [line for line in said.out.splitlines() if line.startswith("Throughput: ")]
    assert "the version's speed tag searcher.latency_ms = '{[]: 1}' is not a number" in speed
    assert "Traceback" not in said.err and len(out.read_text().splitlines()) == 3
