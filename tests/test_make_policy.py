"""`make policy`'s recipe arithmetic and its ``--resume`` rule, without running a step.

The recipe itself (collections, training, evaluation) takes two hours; what a test can pin
cheaply is what decides which episodes it uses: how the episodes are shared out over the
scenes, that no training seed reaches the held-out ones, and that an interrupted
collection is redone while a finished one is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools import make_policy as mp

ROOT = Path(__file__).resolve().parent.parent




@pytest.mark.parametrize("total", [6, 7, 100, 300, 900, 9_999])
def test_split_shares_every_episode_out_and_gives_every_scene_some(total: int) -> None:
    for mix in (mp.MIX, mp.DAGGER_MIX):
        counts = mp.split(total, mix)
        assert list(counts) == [scene for scene, _ in mix]
        assert sum(counts.values()) == total
        assert min(counts.values()) >= 1


def test_the_default_recipe_is_mostly_procedural_worlds() -> None:
    args = mp._arguments([])
    assert mp.split(args.episodes, mp.MIX) == {"procedural": 800, "room": 200, "arena": 200}
    assert mp.split(args.dagger_episodes, mp.DAGGER_MIX) == {"procedural": 150, "room": 75,
                                                             "arena": 75}
    assert set(mp.SCENES) == {"procedural", "room", "arena"}


def test_training_seeds_stay_below_the_held_out_ones() -> None:
    args = mp._arguments(["--dagger-rounds", "9", "--episodes", "9999",
                          "--dagger-episodes", "9999"])
    last_training_seed = args.dagger_rounds * mp.DAGGER_SEED + args.dagger_episodes - 1
    assert last_training_seed < mp.EVAL_SEED
    for bad in (["--dagger-rounds", "10"], ["--episodes", "10001"], ["--episodes", "5"],
                ["--dagger-episodes", "2"], ["--epochs", "0"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            mp._arguments(bad)


def test_resume_keeps_a_finished_collection_and_redoes_an_unfinished_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mp, "ROOT", tmp_path)
    ran: list[list[str]] = []

    def step(name: str, argv: list[str], capture: bool = False,
             reused: str | None = None) -> str:
        if reused is not None:
            return reused
        ran.append(argv)
        out = Path(tmp_path / argv[argv.index("--out") + 1])
        out.mkdir(parents=True)
        (out / "episode.h5").write_bytes(b"")
        return "policy success 50.0%" if capture else ""

    def collect(resume: bool, workers: int = 2, policy: str | None = None) -> Any:
        args = mp._arguments(["--workers", str(workers), *(["--resume"] if resume else [])])
        return mp._collect(args, step, "c", "data/x", "room", seed=10, episodes=5,
                           policy=policy)

    assert collect(resume=False, policy="a.onnx") == "policy success 50.0%"
    assert len(ran) == 1
    # Finished: kept under --resume whatever the worker count, with its recorded output.
    assert collect(resume=True, workers=1, policy="a.onnx") == "policy success 50.0%"
    assert len(ran) == 1
    assert mp._on_policy_success(collect(resume=True, policy="a.onnx")) == 0.5
    # Another driver, or no --resume: collected again.
    collect(resume=True)
    assert len(ran) == 2
    collect(resume=False)
    assert len(ran) == 3
    # Interrupted (no completion record): the folder is emptied and collected again.
    record = tmp_path / "data/x" / mp.DONE
    assert json.loads(record.read_text())["collected"]["seed"] == 10
    record.unlink()
    (tmp_path / "data/x" / "partial.h5").write_bytes(b"")
    collect(resume=True)
    assert len(ran) == 4
    assert not (tmp_path / "data/x" / "partial.h5").exists()


def test_the_recipe_runs_its_steps_in_order_and_fine_tunes_each_round_on_all_so_far(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole recipe with every `zima` command stood in for: which commands, in which
    order, with which seeds, folders and rates, and the provenance it writes of them."""
    monkeypatch.setattr(mp, "ROOT", tmp_path)
    ran: list[list[str]] = []

    def run(argv: list[str], capture: bool = False) -> tuple[float, str]:
        ran.append(argv)

        def value(flag: str) -> str:
            return argv[argv.index(flag) + 1]

        if argv[:2] == ["sim", "collect"]:
            (tmp_path / value("--out")).mkdir(parents=True)
            return 1.0, "policy success 40.0%\n" if "--policy" in argv else ""
        if argv[0] == "train":
            out = tmp_path / next(a.split("=", 1)[1] for a in argv if a.startswith("output_dir="))
            out.mkdir(parents=True)
            (out / "metrics.json").write_text(json.dumps(
                [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.5, "val_acc": 0.9, "seconds": 2}]))
        elif argv[0] == "export":
            (tmp_path / value("--out")).write_bytes(b"onnx")
        elif argv[:2] == ["sim", "eval"]:
            return 1.0, "success     97 (97.0%, 95% CI 91.5-99.0%)\ncollision   1 (1.0%)\n"
        return 1.0, ""

    monkeypatch.setattr(mp, "_run", run)
    assert mp.main(["--episodes", "12", "--dagger-rounds", "2", "--dagger-episodes", "4",
                    "--eval-episodes", "100"]) == 0

    kinds = [" ".join(argv[:2]) if argv[0] == "sim" else argv[0] for argv in ran]
    round_ = ["sim collect"] * 3 + ["train", "export"]
    assert kinds == ["sim collect"] * 3 + ["train", "export"] + round_ * 2 + ["sim eval"] * 3
    trains = [argv for argv in ran if argv[0] == "train"]
    sets = [dict(a.split("=", 1) for a in argv if "=" in a) for argv in trains]
    assert "init_from" not in sets[0]
    assert sets[0]["epochs"] == "4"
    for r, fine_tune in enumerate(sets[1:], start=1):
        previous = "runs/policy/bc" if r == 1 else f"runs/policy/dagger{r - 1}"
        assert fine_tune["init_from"] == f"{previous}/best.pt"
        assert float(fine_tune["backbone_lr"]) == float(fine_tune["head_lr"]) == mp.DAGGER_LR
        folders = json.loads(fine_tune["data.dirs"])
        assert len(folders) == 3 + 3 * r  # the demonstrations and every round so far
        assert folders[-1] == f"data/policy/dagger{r}-arena"
    drivers = [argv[argv.index("--policy") + 1] for argv in ran if "--policy" in argv]
    assert drivers == ["runs/policy/bc/policy.onnx"] * 3 + ["runs/policy/dagger1/policy.onnx"] * 3
    evals = [argv for argv in ran if argv[:2] == ["sim", "eval"]]
    assert [argv[argv.index("--scene") + 1] for argv in evals] == list(mp.SCENES)
    assert all(argv[argv.index("--seed") + 1] == str(mp.EVAL_SEED) for argv in evals)

    provenance = json.loads((tmp_path / mp.PROVENANCE).read_text())
    assert (tmp_path / mp.MODEL).read_bytes() == b"onnx"  # the last round's export
    room = provenance["evaluation"]["scenes"]["room"]
    assert (room["successes"], room["collisions"]) == (97, 1)
    assert room["ci95_wilson"][0] < 0.97 < room["ci95_wilson"][1]
    assert provenance["dagger_rounds"][1]["scenes"]["procedural"]["driver_success"] == 0.4
    assert list(provenance["training_history"]) == ["bc", "dagger1", "dagger2"]


def test_steps_list_a_step_kept_from_an_earlier_run_without_a_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mp, "_run", lambda argv, capture=False: (2.5, "ran\n"))
    step = mp.Steps()
    assert step("collect", ["sim", "collect", "--seed", "0"], reused="kept\n") == "kept\n"
    assert step("train", ["train", "x.toml"], capture=True) == "ran\n"
    assert step.commands == ["zima sim collect --seed 0", "zima train x.toml"]
    assert step.seconds == {"collect": None, "train": 2.5}
