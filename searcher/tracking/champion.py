"""The promoted model's file, saved and loaded as TorchScript only: nothing in the store is unpickled.

`mlflow.pytorch` writes a scripted module with `torch.jit.save`, but reads `data/model.pth` back
with `torch.load(weights_only=False)`, both in `mlflow.pytorch.load_model` and in the pyfunc that
`mlflow models serve` runs: whoever can write to the store can swap that file for a pickle that
runs code on every machine that loads the champion. `torch.jit.load` reads TorchScript code and
tensors with its own unpickler, which knows no Python globals, so it refuses such a file.
Hence `load_champion` for Python, and this module as the champion's pyfunc loader for serving
(`save_model` is the MLflow flavor hook that writes the pytorch flavor and points the pyfunc
flavor here). MLflow still trusts the store's `MLmodel` file, which names the loader.
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from searcher.errors import UserError
from searcher.tracking.tags import SPEED_TAGS

MODEL_FILE = "model.pth"  # mlflow.pytorch's name for the saved module, under the flavor's data dir


def _jit_load(file: Path, device: str, what: str) -> Any:
    import torch

    try:
        return torch.jit.load(str(file), map_location=device).eval()
    except Exception as exc:  # a pickle, a truncated file, anything but a TorchScript archive
        reason = str(exc).strip().split("\n", 1)[0].split(". ", 1)[0][:120]
        raise UserError(f"{what}: {file.name} is not a TorchScript archive ({reason}); refusing "
                        f"to load it: promote the model again with `python -m searcher.promote`"
                        ) from None


def load_champion(model_uri: str, device: str = "cpu") -> Any:
    """The registered model at `model_uri` (e.g. `models:/cifar10@champion`) as a scripted
    nn.Module in eval mode on `device`: it takes uint8 images N x C x H x W and returns logits."""
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
            flavor = Model.load(str(local / "MLmodel")).flavors["pytorch"]
        except Exception as exc:  # no such model, alias or store; not a pytorch model
            raise UserError(f"cannot load the model {model_uri} ({type(exc).__name__}); promote "
                            f"one with `python -m searcher.promote`") from None
        return _jit_load(local / flavor["model_data"] / MODEL_FILE, device, model_uri)


def measure_exported(model_uri: str, batch: int, throughput_batch: int,
                     device: str) -> tuple[Any, int]:
    """The logged model at `model_uri` loaded back as it is served (TorchScript, searcher's
    loader) and timed on this machine with torch's current threads: its Speed (the median of the
    single passes, searcher.training.latency) and its number of parameters."""
    from searcher.training.latency import measure_speed

    module = load_champion(model_uri, device)
    shape = tuple(_metadata(model_uri)["image_shape"])
    speed = measure_speed(module, shape, batch, throughput_batch, device)
    return speed, sum(p.numel() for p in module.parameters())


def _metadata(model_uri: str) -> dict[str, Any]:
    import mlflow

    return mlflow.models.get_model_info(model_uri).metadata or {}


def speed_tags(speed: Any) -> dict[str, str]:
    """A Speed as the registered version's tags."""
    return {tag: (f"{getattr(speed, field):.6g}" if isinstance(getattr(speed, field), float)
                  else str(getattr(speed, field))) for field, tag in SPEED_TAGS.items()}


def recorded_speed(client: Any, model_uri: str) -> dict[str, str]:
    """The speed tags of the registered version that `model_uri` names (`models:/NAME@ALIAS` or
    `models:/NAME/VERSION`), by Speed's field names; empty when it has none or names no version."""
    if not model_uri.startswith("models:/"):
        return {}
    name, _, version = model_uri[len("models:/"):].partition("/")
    name, _, alias = name.partition("@")
    from mlflow.exceptions import MlflowException

    try:
        found = (client.get_model_version_by_alias(name, alias) if alias
                 else client.get_model_version(name, version))
    except MlflowException:  # a logged model's id, or a version the registry does not know
        return {}
    return {field: found.tags[tag] for field, tag in SPEED_TAGS.items() if tag in found.tags}


def log_champion(model: Any, example: Any, classes: list[str]) -> Any:
    """Log `model` (a searcher Classifier) in the active MLflow run as TorchScript; returns the
    ModelInfo.

    Why TorchScript and not torch.export (pt2): MLflow loads a pt2 model as the program's
    `.module()`, whose `.eval()` and `.train()` raise NotImplementedError and whose device is
    baked into the graph, so the first thing every PyTorch user does with it fails. A scripted
    module keeps nn.Module's `.eval()` and `.to(device)` (the input follows the weights'
    device), and `torch.jit.load` rebuilds it from TorchScript code and tensors: no Python
    object is unpickled. Scripting rather than tracing keeps that device step dynamic.
    TorchScript is deprecated in favour of torch.export; MLflow's pt2 loader is where that change
    has to come from. The model keeps mlflow.pytorch's flavor, but its pyfunc flavor (what
    `mlflow models serve` loads) is searcher.tracking.champion's, which reads the file with
    `torch.jit.load` where mlflow.pytorch would `torch.load` it.
    """
    import torch
    from mlflow.models import Model, ModelSignature, infer_signature


    with torch.no_grad():
        # Outputs only: a uint8 input schema would make `mlflow models serve` cast a request's
        # float pixels (ToTensor's [0, 1]) to uint8 unseen, 0.7 to 0; the served module takes
        # either by dtype (searcher.tracking.champion._Served), and refuses anything else.
        outputs = infer_signature(example, model(torch.from_numpy(example)).numpy()).outputs
        signature = ModelSignature(inputs=None, outputs=outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the deprecation, once per submodule
        scripted = torch.jit.script(model)
    # MLflow files a ScriptModule under its "pickle" format and warns about pickles, but it
    # writes it with torch.jit.save: a TorchScript archive, not a pickle of Python objects.
    quiet = logging.getLogger("mlflow.pytorch")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return Model.log(
            artifact_path=None, name="model", flavor=sys.modules[__name__], flavor_name="pytorch",
            pytorch_model=scripted, signature=signature, input_example=example,
            serialization_format="pickle",
            metadata={"classes": classes, "image_shape": list(example.shape[1:])})
    finally:
        quiet.setLevel(level)


def save_model(path: str, mlflow_model: Any, **kwargs: Any) -> None:
    """The flavor hook `mlflow.models.Model.log(flavor=searcher.tracking.champion, ...)` calls: the
    pytorch flavor as `mlflow.pytorch.save_model` writes it, served by `_load_pyfunc` below."""
    import mlflow.pyfunc
    import mlflow.pytorch

    mlflow.pytorch.save_model(path=path, mlflow_model=mlflow_model, **kwargs)
    pyfunc = mlflow_model.flavors[mlflow.pyfunc.FLAVOR_NAME]
    pyfunc[mlflow.pyfunc.MAIN] = __name__
    pyfunc.pop("pickle_module_name", None)
    mlflow_model.save(os.path.join(path, "MLmodel"))


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
    """MLflow's loader-module contract; the device is chosen as `mlflow.pytorch`'s pyfunc does."""
    import torch

    device = ((model_config or {}).get("device")
              or os.environ.get("MLFLOW_DEFAULT_PREDICTION_DEVICE")
              or ("cuda" if torch.cuda.is_available() else "cpu"))
    from mlflow.models import Model

    # No input schema (MLflow would cast floats to it): the shape is in the model's metadata.
    mlmodel = Path(data_path).parent / "MLmodel"
    shape = (Model.load(str(mlmodel)).metadata or {}).get("image_shape") if mlmodel.is_file() else None
    return _Served(_jit_load(Path(data_path) / MODEL_FILE, device, "the served model"), device,
                   shape)
