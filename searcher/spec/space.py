"""Load and check a search-space file before anything expensive starts.

A space file is plain Python with three names:

    SETTINGS = {"epochs": 8, "num_samples": 24}      # optional; see searcher.spec.settings.Settings
    BASELINES = {"tutorial": {"stages": 1, ...}}      # optional; points run as the first trials
    def space(trial):                                 # required; define-by-run, Optuna style
        n = trial.suggest_int("stages", 1, 3)
        ...
        return {"batch_norm": True}                   # optional constants

Everything wrong with it ends as one SpaceError line naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna

from searcher.errors import UserError
from searcher.spec.params import ConfigError, split_params
from searcher.spec.settings import Settings, make_settings
from searcher.training.model import InfeasibleArchitecture, feasible_cost

CHECK_SAMPLES = 32  # random points drawn at load time to catch vocabulary mistakes early
_CONSTANT_TYPES = (bool, int, float, str, type(None))


class SpaceError(UserError):
    """A space file that cannot be used."""


@dataclass(frozen=True)
class Space:
    name: str
    path: Path
    text: str
    fn: Callable[[Any], dict[str, Any] | None]
    settings: Settings
    baselines: dict[str, dict[str, Any]]

    @property
    def sha256(self) -> str:
        """The space file's text's digest: what a resumed search checks it was given again."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def sample(self, trial: Any) -> dict[str, Any]:
        """Run the space on an Optuna trial; return all its parameters plus the constants."""
        constants = self.fn(trial) or {}
        return {**trial.params, **constants}

    def baseline_of(self, params: dict[str, Any]) -> str | None:
        """The name of the baseline that `params` reproduces, if any."""
        return next((name for name, point in self.baselines.items()
                     if reproduces(params, point)), None)


def reproduces(params: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether `params` (a trial's configuration) is the hand-made `point`."""
    return all(params.get(k) == v for k, v in point.items())


def _execute(path: Path, text: str) -> dict[str, Any]:
    names: dict[str, Any] = {"__name__": f"searcher_space_{path.stem}", "__file__": str(path)}
    try:
        exec(compile(text, str(path), "exec"), names)
    except SyntaxError as exc:
        raise SpaceError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        raise SpaceError(f"{path}: fails to load: {type(exc).__name__}: {exc}") from None
    return names


class SpaceFunction:
    """The space's `space(trial)`, picklable by its source text.

    Tune checkpoints the searcher (and with it this function) by pickling; a function from a file
    that is not an importable module would not pickle, and the text makes the checkpoint whole.
    """

    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text
        self._fn: Callable[[Any], dict[str, Any] | None] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "text": self.text, "_fn": None}

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        if self._fn is None:
            self._fn = _execute(self.path, self.text)["space"]
        return self._fn(trial)


def _call(space: Space, trial: Any, what: str) -> dict[str, Any]:
    try:
        constants = space.fn(trial)
    except Exception as exc:
        raise SpaceError(f"{space.path}: {what}: {type(exc).__name__}: {exc}") from None
    if constants is not None and not isinstance(constants, dict):
        raise SpaceError(f"{space.path}: space() must return a dict of constants or None, "
                         f"not {type(constants).__name__}")
    for key, value in (constants or {}).items():
        if not isinstance(key, str) or not isinstance(value, _CONSTANT_TYPES):
            raise SpaceError(f"{space.path}: space() returned {key!r}: {value!r}; "
                             f"constants must be numbers, strings, booleans or None")
    return {**trial.params, **(constants or {})}


def _check_point(space: Space, params: dict[str, Any], what: str) -> dict[str, Any]:
    s = space.settings
    try:
        arch, _ = split_params(params, num_classes=10, in_channels=3, image_size=s.image_size,
                               epochs=s.epochs)
    except ConfigError as exc:
        raise SpaceError(f"{space.path}: {what}: {exc}") from None
    return arch


def _check(space: Space) -> None:
    for name, point in space.baselines.items():
        what = f"baseline {name!r}"
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # FixedTrial only warns on a value outside a range
            params = _call(space, optuna.trial.FixedTrial(point), what)
        unused = sorted(set(point) - set(params))
        if unused:
            raise SpaceError(f"{space.path}: {what}: {unused[0]!r} is not a parameter of the space")
        try:
            feasible_cost(_check_point(space, params, what), space.settings.max_params,
                          space.settings.max_mmacs)
        except InfeasibleArchitecture as exc:
            raise SpaceError(f"{space.path}: {what} is infeasible: {exc}") from None

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.settings.seed))
    for i in range(CHECK_SAMPLES):
        trial = study.ask()
        params = _call(space, trial, f"sample {i}")
        _check_point(space, params, f"sampled point {params}")
        study.tell(trial, 0.0)


def load_space(path: str | Path, overrides: dict[str, Any] | None = None) -> Space:
    """Load, validate and return the space in `path`, with `overrides` applied to its settings."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".py":
        raise SpaceError(f"{path}: no such space file (expected a .py file)")
    try:
        text = path.read_text(encoding="utf-8")  # what Python itself assumes of a source file
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise SpaceError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
                         f"save the file as UTF-8") from None
    except OSError as exc:
        raise SpaceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    names = _execute(path, text)
    fn = names.get("space")
    if not callable(fn) or len(inspect.signature(fn).parameters) != 1:
        raise SpaceError(f"{path}: no `space(trial)` function; define one that calls "
                         f"trial.suggest_* (see spaces/cifar10.py)")
    settings_in, baselines = names.get("SETTINGS", {}), names.get("BASELINES", {})
    if not isinstance(settings_in, dict):
        raise SpaceError(f"{path}: SETTINGS must be a dict")
    if not isinstance(baselines, dict) or not all(isinstance(b, dict) for b in baselines.values()):
        raise SpaceError(f"{path}: BASELINES must be a dict of name -> parameter dict")
    try:
        settings = make_settings({**settings_in, **(overrides or {})})
    except UserError as exc:
        raise SpaceError(f"{path}: {exc}") from None
    space = Space(name=settings.experiment or path.stem, path=path.resolve(),
                  text=text, fn=SpaceFunction(path.resolve(), text), settings=settings,
                  baselines=baselines)
    with quiet_optuna():
        _check(space)
    return space


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's warnings only, for the scratch studies a space is tried on (one line each)."""
    level = logging.getLogger("optuna").level
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        logging.getLogger("optuna").setLevel(level)
