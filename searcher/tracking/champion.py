"""The promoted model in MLflow as data: logged, registered and loaded with nothing unpickled.

A champion's files are `data/model.json` and `data/weights.safetensors`
(searcher.training.portable): the architecture and preprocessing as JSON, rebuilt by searcher's
own model builder, and the weights as tensors. When it is registered, the version records each
file's SHA-256 (tags `searcher.sha256.<file>`) in the tracking database, apart from the
artifact store that holds the files; `load_champion` and `searcher predict` check them before
a byte of a file is parsed. The model's pyfunc flavor names this module as its loader, for
`mlflow models serve`, which knows no registered version: it checks the digests the model's
`MLmodel` file records, in the same store as the files (whoever can write one can write the
other, so there it finds mistakes, not an attacker; what it loads still cannot run code).
Champions of searcher 0.2 and before were TorchScript, which is a program: they are refused in
one line that says how to promote again, never loaded.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from searcher.errors import UserError
from searcher.tracking.tags import DIGEST_TAG_PREFIX, SOURCE_TRIAL_TAG, SPEED_TAGS
from searcher.training import portable

DATA = "data"  # the model's files, under the logged model's folder (the pyfunc flavor's data)
FLAVOR = "searcher"  # the MLmodel flavor that records the files' format and digests
OLD_FILE = "model.pth"  # a TorchScript champion's file (searcher 0.2 and before), never read


def digest_tags(digests: dict[str, str]) -> dict[str, str]:
    """The registered version's tags for its files' SHA-256."""
    return {f"{DIGEST_TAG_PREFIX}{name}": digest for name, digest in digests.items()}


def log_champion(model: Any, arch: dict[str, Any], example: Any) -> tuple[Any, dict[str, str]]:
    """Log `model` (a searcher Classifier built from `arch`) in the active MLflow run as data;
    returns the ModelInfo and its files' SHA-256 by name (what `register` records)."""
    import torch
    from mlflow.models import Model, ModelSignature, infer_signature

    with torch.no_grad():
        # Outputs only: a uint8 input schema would make `mlflow models serve` cast a request's
        # float pixels (ToTensor's [0, 1]) to uint8 unseen, 0.7 to 0; the served module takes
        # either by dtype (_Served), and refuses anything else.
        outputs = infer_signature(example, model(torch.from_numpy(example)).numpy()).outputs
    with tempfile.TemporaryDirectory() as tmp:
        digests = portable.write_model(tmp, model, arch, list(example.shape[1:]))
        info = Model.log(artifact_path=None, name="model", flavor=sys.modules[__name__],
                         files=tmp, digests=digests, input_example=example,
                         signature=ModelSignature(inputs=None, outputs=outputs),
                         metadata={"classes": list(model.classes),
                                   "image_shape": list(example.shape[1:])})
    return info, digests


def save_model(path: str, mlflow_model: Any, files: str, digests: dict[str, str],
               signature: Any = None, input_example: Any = None, **_: Any) -> None:
    """The flavor hook `mlflow.models.Model.log(flavor=searcher.tracking.champion, ...)` calls:
    the model's files under data/, a pyfunc flavor served by `_load_pyfunc` below, and a
    `searcher` flavor with the files' digests."""
    import shutil

    import mlflow.pyfunc
    from mlflow.models.utils import _save_example

    os.makedirs(path, exist_ok=True)
    mlflow_model.signature = signature
    _save_example(mlflow_model, input_example, path)
    shutil.copytree(files, os.path.join(path, DATA))
    mlflow.pyfunc.add_to_model(mlflow_model, loader_module=__name__, data=DATA)
    mlflow_model.add_flavor(FLAVOR, format=portable.FORMAT, version=portable.VERSION,
                            sha256=dict(digests))
    mlflow_model.save(os.path.join(path, "MLmodel"))


def _registered(model_uri: str) -> tuple[str, str, str] | None:
    """(name, alias, version) of a registry URI, models:/NAME@ALIAS or models:/NAME/VERSION."""
    if not model_uri.startswith("models:/"):
        return None
    name, _, version = model_uri[len("models:/"):].partition("/")
    name, _, alias = name.partition("@")
    return (name, alias, version) if name and (alias or version.isdigit()) else None


def registered_version(client: Any, model_uri: str) -> Any:
    """The registry's ModelVersion that `model_uri` names; None where it names none."""
    registered = _registered(model_uri)
    if registered is None:
        return None
    name, alias, version = registered
    from mlflow.exceptions import MlflowException

    try:
        return (client.get_model_version_by_alias(name, alias) if alias
                else client.get_model_version(name, version))
    except MlflowException:
        return None


def expected_digests(client: Any, model_uri: str) -> dict[str, str]:
    """The SHA-256 the registry recorded for each file of the version `model_uri` names; a
    one-line UserError where it names none, or a version registered without them."""
    found = registered_version(client, model_uri)
    if found is None:
        if _registered(model_uri) is None:
            raise UserError(f"{model_uri} is not a registered version, so nothing says what its "
                            f"files must be: load models:/NAME@ALIAS or models:/NAME/VERSION")
        raise UserError(f"cannot load the model {model_uri} (no such model, alias or version); "
                        f"promote one with `searcher promote` or pass another --model")
    digests = {k[len(DIGEST_TAG_PREFIX):]: v for k, v in found.tags.items()
               if k.startswith(DIGEST_TAG_PREFIX)}
    if not digests:
        raise UserError(_old_champion(model_uri, found.tags.get("source_trial_run")
                                      or found.tags.get(SOURCE_TRIAL_TAG)))
    return digests


def _old_champion(what: str, trial_run: str | None = None) -> str:
    return (f"{what} is a TorchScript champion (searcher 0.2 and before): TorchScript is a "
            f"program, so it is not loaded; promote the search again with `searcher promote`"
            + (f" (it came from trial run {trial_run})" if trial_run else "")
            + ", which registers the model as data")


class Champion(NamedTuple):
    """A loaded champion: the module, its card (model.json: classes, image_shape, arch) and the
    images logged with it as its input example (None where it has none that are images)."""

    module: Any
    card: dict[str, Any]
    example: Any


def read_champion(model_uri: str, device: str = "cpu",
                  digests: dict[str, str] | None = None) -> Champion:
    """The model at `model_uri`, downloaded once, once its files match `digests`, by default
    those its registered version recorded."""
    import mlflow

    if digests is None:
        digests = expected_digests(mlflow.MlflowClient(), model_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        except Exception as exc:  # the store went away, or the files with it
            raise UserError(f"cannot download the model {model_uri} ({type(exc).__name__}); "
                            f"is the tracking server up?") from None
        module, card = portable.read_model(local / DATA, digests, model_uri, device)
        return Champion(module, card, _example_images(local, card["image_shape"]))


def _example_images(local: Path, image_shape: list[int]) -> Any:
    """The model's input example (at promotion, the first test images: JSON numbers) as uint8
    N x C x H x W; None where it has none, or they are not such images."""
    import numpy as np
    from mlflow.models import Model

    try:
        x = np.asarray(Model.load(str(local / "MLmodel")).load_input_example(str(local)))
    except Exception:  # no example, or not one numpy reads: the caller makes its own
        return None
    if (x.ndim != 4 or list(x.shape[1:]) != list(image_shape) or x.dtype.kind not in "iu"
            or x.min() < 0 or x.max() > 255):
        return None
    return x.astype(np.uint8)


def load_champion(model_uri: str, device: str = "cpu",
                  digests: dict[str, str] | None = None) -> Any:
    """The registered model at `model_uri` (e.g. `models:/cifar10@champion`) as an nn.Module in
    eval mode on `device`: it takes uint8 images N x C x H x W and returns logits."""
    return read_champion(model_uri, device, digests).module


def latest_champion(client: Any) -> str:
    """`models:/NAME@champion` for the latest search in the store, NAME its experiment's (what
    `searcher promote` names the model by default), whatever its space."""
    from searcher.tracking import readback as logged

    search = logged.latest_search(client, None, None)
    return f"models:/{client.get_experiment(search.info.experiment_id).name}@champion"


def measure_exported(model_uri: str, digests: dict[str, str], batch: int,
                     throughput_batch: int, device: str) -> tuple[Any, int]:
    """The logged model at `model_uri` loaded back as it is served (its files, checked against
    `digests`) and timed on this machine with torch's current threads: its Speed (the median of
    the single passes, searcher.training.latency) and its number of parameters."""
    from searcher.training.latency import measure_speed

    module, card, _ = read_champion(model_uri, device, digests)
    speed = measure_speed(module, tuple(card["image_shape"]), batch, throughput_batch, device)
    return speed, sum(p.numel() for p in module.parameters())


def speed_tags(speed: Any) -> dict[str, str]:
    """A Speed as the registered version's tags."""
    return {tag: (f"{getattr(speed, field):.6g}" if isinstance(getattr(speed, field), float)
                  else str(getattr(speed, field))) for field, tag in SPEED_TAGS.items()}


def recorded_speed(client: Any, model_uri: str) -> dict[str, Any]:
    """The speed tags of the registered version that `model_uri` names (`models:/NAME@ALIAS` or
    `models:/NAME/VERSION`), by Speed's field names, as numbers (the device as text); empty
    when it has none or names no version. A tag that does not read as its kind leaves the
    figures out and is said under "unreadable" (tag = value), never raised."""
    found = registered_version(client, model_uri)
    tags = found.tags if found is not None else {}
    speed: dict[str, Any] = {}
    for field, tag in SPEED_TAGS.items():
        if tag not in tags:
            continue
        kind = str if field == "device" else (
            int if field in ("batch", "throughput_batch", "threads") else float)
        try:
            value = kind(tags[tag])
        except ValueError:
            value = math.nan
        if isinstance(value, float) and not math.isfinite(value):
            return {"unreadable": f"{tag} = {tags[tag][:40]!r}"}
        speed[field] = value
    return speed


class _Served:
    """What pyfunc calls: numpy uint8 images in, logits out, on the serving device."""

    def __init__(self, module: Any, device: str, shape: list[int] | None = None) -> None:
        self.module, self.device, self.shape = module, device, shape

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """Images N x C x H x W as a request gives them: integers 0..255 (JSON numbers, uint8),
        or floats in [0, 1] (ToTensor's); anything else is refused with one line (HTTP 400)."""
        import numpy as np
        import torch
        from mlflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

        x = np.asarray(model_input)
        if self.shape and (x.ndim != 4 or list(x.shape[1:]) != self.shape):
            want = " x ".join(map(str, ["N", *self.shape]))
            raise MlflowException(f"images must be {want} (got {' x '.join(map(str, x.shape))})",
                                  INVALID_PARAMETER_VALUE)
        if x.dtype.kind in "iu":
            if x.size and (x.min() < 0 or x.max() > 255):
                bad = x.max() if x.max() > 255 else x.min()
                raise MlflowException(f"pixel value {bad} is outside 0..255: send images as "
                                      f"uint8 pixels or as floats in [0, 1]", INVALID_PARAMETER_VALUE)
            x = x.astype(np.uint8)
        elif x.dtype.kind == "f":
            x = x.astype(np.float32)
        else:
            raise MlflowException(f"images of {x.dtype} are not pixels: send uint8 pixels or "
                                  f"floats in [0, 1]", INVALID_PARAMETER_VALUE)
        with torch.no_grad():
            try:
                return self.module(torch.as_tensor(x, device=self.device)).cpu().numpy()
            except Exception as exc:  # the module's own refusal of floats outside [0, 1]
                first = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                raise MlflowException(first, INVALID_PARAMETER_VALUE) from None


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> _Served:
    """MLflow's loader-module contract; the device is chosen as `mlflow.pytorch`'s pyfunc does.
    The digests are those the MLmodel file beside the files records."""
    import torch
    from mlflow.models import Model

    device = ((model_config or {}).get("device")
              or os.environ.get("MLFLOW_DEFAULT_PREDICTION_DEVICE")
              or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = Path(data_path)
    if not (folder / portable.CARD).exists() and (folder / OLD_FILE).exists():
        raise UserError(_old_champion("the served model"))
    mlmodel = folder.parent / "MLmodel"
    flavor = Model.load(str(mlmodel)).flavors.get(FLAVOR, {}) if mlmodel.is_file() else {}
    module, card = portable.read_model(folder, dict(flavor.get("sha256") or {}),
                                       "the served model", device)
    return _Served(module, device, card["image_shape"])
