"""Data-parallel training: two CPU processes (gloo) under torchrun on tiny episodes.

The test launches this file itself under ``torchrun --standalone --nproc_per_node=2``;
run as a program, it is one rank: it joins torchrun's process group, trains with
:func:`zima.training.train.train`, resumes the run for one more epoch, and writes what it
saw to ``rank<r>.json``: a digest of every training batch it drew, the epochs' metrics,
the checkpoints it saved, and a digest of its final weights. Evidence of synchronised
gradients: the ranks drew different batches yet end with bit-identical weights that moved
away from the initial ones.
"""

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from zima.contract import Contract
from zima.training import checkpoint
from zima.training import train as train_module
from zima.training.augment import AugmentConfig
from zima.training.config import DataConfig, TrainConfig
from zima.training.distributed import WeightedDistributedSampler, World
from zima.training.models import Policy, PolicyConfig
from zima.training.train import BEST, LAST, METRICS, train

TINY = Contract(image_height=16, image_width=16, image_history=1, action_history=2,
                chunk_len=2)
TORCHRUN = Path(sys.executable).parent / "torchrun"
HANG_GUARD_S = 120  # generous: two torch imports on a busy machine


def config(root: Path, epochs: int, resume: bool = False) -> TrainConfig:
    return TrainConfig(
        output_dir=str(root / "run"),
        data=DataConfig(dirs=(str(root / "episodes"),), source_weights={"sim": 1.0},
                        val_fraction=0.25, cache_dir=str(root / "cache")),
        policy=PolicyConfig(backbone="small", hidden_dim=32, dropout=0.1),
        augment=AugmentConfig(), batch_size=16, epochs=epochs, backbone_lr=1e-3,
        head_lr=3e-3, patience=10, device="cpu", resume=resume)


def _digest(tensors: Iterator[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def rank_main(root: Path) -> None:
    """One rank of the run (started by torchrun): train, resume, report."""
    rank = int(os.environ["RANK"])
    batches: list[str] = []
    saves: list[str] = []
    replicas: list[nn.Module] = []
    train_epoch, save = train_module._train_epoch, checkpoint.save_checkpoint

    def recording_epoch(model: nn.Module, augment: Any, optimizer: Any,
                        loader: Iterator[Any], **kw: Any) -> tuple[float, float]:
        replicas.append(model)

        def seen() -> Iterator[Any]:
            for batch in loader:
                batches.append(_digest(iter(batch)))
                yield batch
        return train_epoch(model, augment, optimizer, seen(), **kw)

    def recording_save(path: Any, *args: Any, **kw: Any) -> Path:
        saves.append(Path(path).name)
        return save(path, *args, **kw)

    vars(train_module).update(_train_epoch=recording_epoch, save_checkpoint=recording_save)
    # One process group for both calls (train() uses a group it finds; re-creating the
    # default group within one torchrun launch can hang on its rendezvous store).
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    initial = _digest(iter(Policy(TINY, config(root, 1).policy).state_dict()
                           .values()))
    first = train(config(root, 1), TINY, progress=None)
    resumed = train(config(root, 2, resume=True), TINY, progress=None)
    dist.destroy_process_group()
    replica = replicas[-1]
    policy = replica.module if isinstance(replica, DistributedDataParallel) else replica
    final = policy.state_dict()
    (root / f"rank{rank}.json").write_text(json.dumps({
        "batches": batches, "saves": saves, "initial": initial,
        "final": _digest(iter(final.values())), "wrapped": type(replicas[-1]).__name__,
        "first_epochs": first.epochs_done, "epochs": resumed.epochs_done,
        "history": resumed.history}))


def test_two_gloo_ranks_train_in_step(tmp_path: Path) -> None:
    # Imported here: the ranks run this file as a program, without the tests package.
    from tests.training.toy_episodes import write_toy_episodes  # noqa: PLC0415

    write_toy_episodes(tmp_path / "episodes", TINY, 8)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error"}
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node=2", __file__, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))

    assert r0["wrapped"] == r1["wrapped"] == "DistributedDataParallel"
    # Resumed: one epoch, then a second one from last.pt.
    assert (r0["first_epochs"], r0["epochs"]) == (r1["first_epochs"], r1["epochs"]) == (1, 2)
    # Equal shards of different data: same number of steps, no batch in common.
    assert len(r0["batches"]) == len(r1["batches"]) > 0
    assert not set(r0["batches"]) & set(r1["batches"])
    # ... yet identical weights, which training changed: the gradients were averaged.
    assert r0["final"] == r1["final"]
    assert r0["final"] != r0["initial"]
    # Metrics reduced over the ranks, so both report the same numbers.
    def metrics(r: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]]
    assert metrics(r0) == metrics(r1)
    assert [h["epoch"] for h in r0["history"]] == [1, 2]
    # Only rank 0 wrote: last.pt every epoch, best.pt on improvement; one set of files.
    assert r1["saves"] == []
    assert r0["saves"][0:2] == [LAST, BEST]
    assert r0["saves"].count(LAST) == 2
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {LAST, BEST, METRICS, "loss.png", "accuracy.png", "actions.png"}


def test_sampler_shards_are_disjoint_draws_of_one_weighted_sample() -> None:
    weights = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    single = list(WeightedDistributedSampler(weights, 10, World(), seed=5))
    reference = list(torch.utils.data.WeightedRandomSampler(
        weights.tolist(), 10, generator=torch.Generator().manual_seed(5)))
    assert single == reference  # one process draws what it always drew
    shards = [list(WeightedDistributedSampler(weights, 10, World(r, 3), seed=5))
              for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(10 / 3) each
    whole = torch.multinomial(weights.double(), 12, replacement=True,
                              generator=torch.Generator().manual_seed(5)).tolist()
    assert [whole[r::3] for r in range(3)] == shards
    assert 0 not in whole  # weight 0: never drawn
    sampler = WeightedDistributedSampler(weights, 10, World(0, 3), seed=5)
    sampler.set_epoch(6)
    assert list(sampler) != shards[0]


if __name__ == "__main__":
    rank_main(Path(sys.argv[1]))
