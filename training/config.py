"""The training run's configuration, read from TOML and validated on load.

A run file looks like this (every key but ``output_dir`` and ``data.dirs`` has a default;
relative paths are relative to the TOML file)::

    output_dir = "runs/sim-v1"
    epochs = 30
    init_from = ""                  # a checkpoint to fine-tune from (weights only)

    [data]
    dirs = ["data/sim", "data/real"]
    source_weights = { sim = 0.7, real = 0.3 }
    outcomes = ["success"]          # episodes cloned by outcome ("*": any) ...
    expert_labelled = true          # ... and those an expert labelled (DAgger), any outcome

    [policy]                        # zima.training.models.PolicyConfig
    backbone = "resnet18"

    [augment]                       # zima.training.augment.AugmentConfig
    barrel_prob = 0.3

Unknown keys and wrongly typed values are errors that name the key (``ConfigError``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from zima.contract import CONTRACTS
from zima.episodes import SOURCES
from zima.tomlconfig import ConfigError, from_table
from zima.training.augment import AugmentConfig
from zima.training.models import PolicyConfig

__all__ = ["LR_SCHEDULES", "ConfigError", "DataConfig", "TrainConfig", "from_table"]

LR_SCHEDULES: Final = ("constant", "cosine")



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
    # Episodes cloned, by their ``outcome`` attribute: behaviour cloning copies what it is
    # shown, so an aborted or failed run is no demonstration. "*" takes every outcome
    # (sim failure modes are "collision", "timeout", ...; the robot's "failure",
    # "aborted"; "unknown" where nobody judged the episode).
    outcomes: tuple[str, ...] = ("success",)
    # Also clone episodes whose steps carry an expert's label (``expert_action``: DAgger,
    # noise-injected demonstrations) whatever their outcome: the label says what to do
    # even where the executed actions failed.
    expert_labelled: bool = True

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
        if not self.outcomes or not all(self.outcomes):
            raise ConfigError(f"data.outcomes must name at least one outcome (\"*\": any), "
                              f"got {list(self.outcomes)}")

    def takes(self, outcome: str, expert_labelled: bool) -> bool:
        """Whether an episode of ``outcome`` (with an expert's labels or not) is cloned."""
        return ((self.expert_labelled and expert_labelled) or "*" in self.outcomes
                or outcome in self.outcomes)


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
    # Learning-rate schedule over the run's epochs: "constant", or "cosine" (each epoch's
    # rates are backbone_lr and head_lr times 0.5 * (1 + cos(pi * epoch / epochs)), epoch
    # counted from 0: the full rates first, about a tenth of them in a sixth epoch of six).
    lr_schedule: str = "constant"
    # Epochs without a better validation loss before stopping.
    patience: int = 5
    # Class weights of the loss are (inverse action frequency) ** this: 1 balances the
    # actions fully, 0 not at all. Full balance makes a rare action (STOP: one label per
    # episode) fire early; a power in between trades that against never firing.
    class_weight_power: float = 1.0
    # The same for each arm dimension's bins (a contract with an arm head): hold is most of
    # every dimension's labels, and its argmax then stalls the arm; 0 (the default) leaves
    # the arm's loss unweighted.
    arm_class_weight_power: float = 0.0
    # Sampling weight of a transition sample (label differs from the previous action)
    # relative to the others: runs of one action are long, and a policy trained on them
    # as they come learns to repeat its last action and misses the moments that matter.
    transition_weight: float = 1.0
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
    # The task, a key of zima.contract.CONTRACTS: "find" (driving only) or "pick" (the arm
    # head too); `zima train` trains under that task's contract.
    task: str = "find"

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "patience"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("backbone_lr", "head_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.transition_weight > 0:
            raise ConfigError(f"transition_weight must be positive, got "
                              f"{self.transition_weight}")
        for name in ("class_weight_power", "arm_class_weight_power"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.weight_decay < 0 or self.num_workers < 0:
            raise ConfigError("weight_decay and num_workers must be >= 0")
        if self.task not in CONTRACTS:
            raise ConfigError(f"task must be one of {sorted(CONTRACTS)}, got {self.task!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got "
                              f"{self.lr_schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
        """The configuration in ``path``; relative paths are taken from its folder.

        ``overrides`` are ``KEY=VALUE`` strings (`zima train --set`) applied on top: KEY a
        dotted key (``epochs``, ``data.dirs``), VALUE a TOML value (``4``, ``"runs/a"``,
        ``["data/a", "data/b"]``; a bare word is taken as a string). Relative paths in
        overrides are taken from the current directory, as on any command line.
        """
        path = Path(path)
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        for item in overrides:
            _override(table, item)
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
            "data": replace(data, dirs=tuple(rel(d) for d in data.dirs),
                            cache_dir=rel(data.cache_dir))})


_PATH_KEYS: Final = ("output_dir", "init_from", "data.dirs", "data.cache_dir")


def _override(table: dict[str, Any], item: str) -> None:
    """Apply one ``KEY=VALUE`` override to the parsed TOML ``table``."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. epochs=4")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()  # a bare word: a string
    if key in _PATH_KEYS:  # from the command line: relative to the current directory
        value = ([str(Path(v).absolute()) for v in value] if isinstance(value, list)
                 else str(Path(value).absolute()) if value else value)
    *parents, last = key.split(".")
    node = table
    for name in parents:
        child = node.setdefault(name, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {name} is not a table")
        node = child
    node[last] = value
