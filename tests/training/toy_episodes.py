"""Tiny behaviour-cloning episodes for the training tests: runs of 4 equal actions, each
frame's brightness telling its action, so a few epochs learn them on the CPU."""

from pathlib import Path

import torch

from zima.contract import Contract
from zima.episodes import EpisodeInfo, EpisodeWriter

# The contract the training tests train on: 16 x 16 frames, one of them, a chunk of 2.
TINY = Contract(image_height=16, image_width=16, image_history=1, action_history=2,
                chunk_len=2)


def write_toy_episodes(folder: Path, contract: Contract, episodes: int, *, seed: int = 0,
                       noise: bool = True, real_every: int = 0, outcome: str = "success",
                       expert_labelled: bool = False, prefix: str = "ep") -> Path:
    """``episodes`` files of 24 steps in ``folder`` (created), ``<prefix><i>.h5``: six runs
    of 4 equal actions drawn with ``seed``; frame brightness 30 + 60 * action, plus uniform
    noise 0..9 when ``noise``; every ``real_every``-th episode (from the first) has source
    "real", the others "sim" (0: all "sim"); each ends with ``outcome`` and, when
    ``expert_labelled``, has an ``expert_action`` (the action). Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    shape = (contract.image_height, contract.image_width, 3)
    for i in range(episodes):
        runs = torch.randint(0, contract.n_actions, (6,), generator=g).tolist()
        actions = [a for a in runs for _ in range(4)]
        source = "real" if real_every and i % real_every == 0 else "sim"
        info = EpisodeInfo(source, "toy", outcome=outcome)
        with EpisodeWriter(folder / f"{prefix}{i}.h5", info, contract) as w:
            for t, a in enumerate(actions):
                frame = torch.full(shape, 30 + 60 * a, dtype=torch.uint8)
                if noise:
                    frame += torch.randint(0, 10, shape, generator=g, dtype=torch.uint8)
                w.append({c: frame.numpy() for c in contract.cameras}, a,
                         t / contract.control_hz, expert_action=a if expert_labelled else None)
    return folder
