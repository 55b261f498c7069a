"""The training run's configuration, read from TOML and validated on load.

A run file looks like this (every key but ``output_dir`` and ``data.dirs`` has a default;
relative paths are relative to the TOML file)::

    output_dir = "runs/sim-v1"
    epochs = 30
    init_from = ""                  # a checkpoint to fine-tune from (weights only)

    [data]
    dirs = ["data/sim", "data/real"]
    source_weights = { sim = 0.7, real = 0.3 }

    [policy]                        # zima.training.models.PolicyConfig
    backbone = "resnet18"

    [augment]                       # zima.training.augment.AugmentConfig
    barrel_prob = 0.3

Unknown keys and wrongly typed values are errors that name the key (``ConfigError``).
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from zima.episodes import SOURCES
from zima.training.augment import AugmentConfig
from zima.training.models import PolicyConfig

_C = TypeVar("_C")


class ConfigError(ValueError):
    """A run configuration that cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Where the episodes are and how sources are mixed."""

    # Folders of episode files (*.h5, not recursive).
    dirs: tuple[str, ...]
    # Share of each episode source ("sim", "real") in the drawn training batches.
    source_weights: dict[str, float] = field(default_factory=lambda: {"sim": 1.0, "real": 1.0})
    # Share of episodes held out for validation (split by episode, never by step).
    val_fraction: float = 0.1
    # Where decoded episodes are memory-mapped (zima.training.dataset.EpisodeCache).
    cache_dir: str = "build/cache"

    def __post_init__(self) -> None:
        if not self.dirs:
            raise ConfigError("data.dirs must name at least one folder")
        unknown = set(self.source_weights) - set(SOURCES)
        if unknown:
            raise ConfigError(f"data.source_weights: unknown sources {sorted(unknown)}; "
                              f"known: {list(SOURCES)}")
        if any(w < 0 for w in self.source_weights.values()) or not any(
                w > 0 for w in self.source_weights.values()):
            raise ConfigError(f"data.source_weights must be >= 0 with one positive: "
                              f"{self.source_weights}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One training run: data, model, optimisation, augmentation, checkpoints."""

    # Where checkpoints (last.pt, best.pt), plots and the metrics land.
    output_dir: str
    # Episodes and their mix.
    data: DataConfig
    # Architecture; the backbone is a key of zima.training.models.BACKBONES.
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    # Training-time image augmentation.
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Samples per optimiser step.
    batch_size: int = 32
    # Most epochs to run (early stopping may end sooner).
    epochs: int = 20
    # Backbone learning rate: small, the prototype's pretrained features drifted at 1e-4.
    backbone_lr: float = 1e-5
    # Head (everything but the backbone) learning rate.
    head_lr: float = 3e-4
    # AdamW decoupled weight decay.
    weight_decay: float = 1e-4
    # Epochs without a better validation loss before stopping.
    patience: int = 5
    # Seeds the split, the sampler, augmentation, dropout and initialisation.
    seed: int = 0
    # DataLoader worker processes (0: load in the training process; needed for tests).
    num_workers: int = 0
    # "auto" (cuda when present), "cpu" or "cuda".
    device: str = "auto"
    # Checkpoint whose model weights start this run (fine-tuning on real after sim); "" none.
    init_from: str = ""
    # Continue from output_dir/last.pt when it exists (epoch count, optimiser, history).
    resume: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "patience"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("backbone_lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.num_workers < 0:
            raise ConfigError("weight_decay and num_workers must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """The configuration in ``path``; relative paths are taken from its folder."""
        path = Path(path)
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        try:
            config = from_table(cls, table, "")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        base = path.parent

        def rel(p: str) -> str:
            return str(base / p) if p and not Path(p).is_absolute() else p

        data = config.data
        return TrainConfig(**{
            **{f.name: getattr(config, f.name) for f in fields(config)},
            "output_dir": rel(config.output_dir), "init_from": rel(config.init_from),
            "data": DataConfig(tuple(rel(d) for d in data.dirs), data.source_weights,
                               data.val_fraction, rel(data.cache_dir))})


def from_table(cls: type[_C], table: dict[str, Any], where: str) -> _C:
    """``cls`` (a dataclass) built from a TOML table, every value type-checked."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"unknown key '{where}{unknown[0]}'; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        key = f"{where}{name}"
        if name not in table:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"missing key {key!r}")
            continue
        values[name] = _convert(table[name], hints[name], key)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as exc:  # a component's own validation
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {exc}") from exc


def _convert(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint`` (TOML lists become tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return from_table(hint, value, f"{key}.")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return {k: _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin is types.UnionType:
        raise TypeError(f"{key}: union types are not supported in configs")
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{key} must be of type {hint.__name__}, got {value!r}")
    return value
