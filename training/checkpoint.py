"""Policy checkpoints: the one file format training writes and export reads.

A checkpoint is a ``torch.save``'d dict of plain values only (no pickled classes), so
``torch.load(weights_only=True)`` opens it and an old file never needs old code::

    "format"            int             CHECKPOINT_FORMAT (bumped when the keys change)
    "model_state"       dict[str, Tensor]  Policy.state_dict()
    "policy_config"     dict            dataclasses.asdict(PolicyConfig)
    "contract"          str             Contract.to_json() of the contract trained on
    "config"            dict | None     the training run's settings (free-form, JSON-like)
    "data_fingerprint"  str | None      the episode cache's fingerprint (training.dataset)
    "trainer"           dict | None     what resuming needs: optimizer state, epoch, history

``save_checkpoint`` writes through a temporary file and a rename, so a crash mid-write
never leaves a truncated checkpoint under the final name; ``load_checkpoint`` checks the
keys and rebuilds the typed values; ``build_policy`` turns one back into a Policy in
eval mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import torch

from zima.atomic import write_atomic
from zima.contract import Contract
from zima.training.models import Policy, PolicyConfig

CHECKPOINT_FORMAT: Final = 1
REMOVED_HEAD: Final = (
    "its policy head is 'continuous' (track speeds), which was removed from Zima: its "
    "demonstrations only held the four discrete actions, and it drove them worse than the "
    "discrete head (78 % against 93 % on the held-out seeds); retrain it")
_REQUIRED: Final = ("format", "model_state", "policy_config", "contract")


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this format."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A loaded checkpoint (see the module table for the stored keys)."""

    model_state: dict[str, torch.Tensor]
    policy_config: PolicyConfig
    contract: Contract
    config: dict[str, Any] | None = None
    data_fingerprint: str | None = None
    trainer: dict[str, Any] | None = None  # the trainer's own state, for resuming


def save_checkpoint(path: str | os.PathLike[str], model: Policy, *,
                    config: Mapping[str, Any] | None = None,
                    data_fingerprint: str | None = None,
                    trainer: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` (its weights, architecture and contract) to ``path`` atomically."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "policy_config": asdict(model.config),
        "contract": model.contract.to_json(),
        "config": dict(config) if config is not None else None,
        "data_fingerprint": data_fingerprint,
        "trainer": dict(trainer) if trainer is not None else None,
    }
    return write_atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """The checkpoint at ``path``; a ``CheckpointError`` naming what is wrong otherwise."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike
        raise CheckpointError(f"checkpoint {path}: not readable: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, got {type(data).__name__}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"checkpoint {path}: missing keys {missing}")
    if data["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path}: format {data['format']!r}, "
                              f"this build reads {CHECKPOINT_FORMAT}")
    stored = data["policy_config"]
    if isinstance(stored, dict) and "head" in stored:  # written before the head was removed
        if stored["head"] != "discrete":
            raise CheckpointError(f"checkpoint {path}: {REMOVED_HEAD}")
        stored = {k: v for k, v in stored.items() if k != "head"}
    try:
        policy_config = PolicyConfig(**stored)
        contract = Contract.from_json(data["contract"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from exc
    return Checkpoint(model_state=dict(data["model_state"]), policy_config=policy_config,
                      contract=contract, config=data.get("config"),
                      data_fingerprint=data.get("data_fingerprint"),
                      trainer=data.get("trainer"))


def build_policy(checkpoint: Checkpoint) -> Policy:
    """The checkpoint's Policy with its weights loaded (strict), in eval mode."""
    model = Policy(checkpoint.contract, checkpoint.policy_config)
    model.load_state_dict(checkpoint.model_state)
    return model.eval()
