"""`make pick-policy`: its stages against their configurations, and the whole recipe's
command sequence with the `zima` commands stood in for (a real run takes three hours)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tools import make_pick_policy as mpp
from tools import make_policy
from zima.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent




def test_each_stage_trains_its_configuration_on_every_folder_collected_so_far() -> None:
    folders: list[Path] = []
    previous: str | None = None
    for stage in mpp.STAGES:
        config = TrainConfig.from_toml(ROOT / stage.config)
        assert config.task == "pick"
        assert Path(config.output_dir).resolve() == ROOT / stage.run
        folders += [ROOT / c.folder for c in stage.collections]
        assert [Path(d).resolve() for d in config.data.dirs] == folders
        if previous is None:
            assert not config.init_from
        else:
            assert Path(config.init_from).resolve() == ROOT / previous / "last.pt"
        previous = stage.run


def test_training_seeds_stay_clear_of_the_evaluations() -> None:
    spans = [(c.seed, c.seed + c.episodes - 1) for s in mpp.STAGES for c in s.collections]
    evaluated = [(seed, seed + n - 1) for _, seed, n in mpp.EVALS]
    for first, last in spans:
        for low, high in evaluated:
            assert last < low or first > high
    spans.sort()
    assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))  # no seed twice


def test_the_recipe_drives_each_dagger_round_with_the_stage_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(make_policy, "ROOT", tmp_path)
    monkeypatch.setattr(mpp, "ROOT", tmp_path)
    (tmp_path / "runs/pick").mkdir(parents=True)
    ran: list[list[str]] = []

    def run(argv: list[str], capture: bool = False) -> tuple[float, str]:
        ran.append(argv)
        if argv[:2] == ["sim", "collect"]:
            (tmp_path / argv[argv.index("--out") + 1]).mkdir(parents=True)
        if argv[:2] == ["sim", "eval"]:
            n = int(argv[argv.index("--episodes") + 1])
            return 1.0, f"scene arena: pick-up success {n // 2}/{n} = 50.0% (...)\n"
        return 1.0, ""

    monkeypatch.setattr(make_policy, "_run", run)
    assert mpp.main(["--workers", "2"]) == 0

    trains = [argv[1] for argv in ran if argv[0] == "train"]
    assert trains == [stage.config for stage in mpp.STAGES]
    collects = [argv for argv in ran if argv[:2] == ["sim", "collect"]]
    assert len(collects) == sum(len(stage.collections) for stage in mpp.STAGES)
    assert all(argv[argv.index("--task") + 1] == "pick" for argv in collects)
    drivers = [argv[argv.index("--policy") + 1] for argv in collects if "--policy" in argv]
    assert drivers == ["runs/pick/grasp/policy.onnx", "runs/pick/dagger-grasp/policy.onnx"]
    near = [argv for argv in collects if "--target-distance" in argv]
    assert [argv[argv.index("--out") + 1] for argv in near] == [
        "data/pick/expert-near-arena", "data/pick/expert-near-arena-2"]
    # Every collection waits for the export of the stage whose policy drives it.
    for argv in collects:
        if "--policy" in argv:
            exported = [a for a in ran[:ran.index(argv)] if a[0] == "export"]
            assert exported[-1][exported[-1].index("--out") + 1] == argv[argv.index("--policy") + 1]
    summary = json.loads((tmp_path / mpp.SUMMARY).read_text())
    assert summary["model"] == "runs/pick/dagger-2/policy.onnx"
    assert summary["evaluation"]["held_out"]["picked"] == 50
    assert summary["evaluation"]["validation"]["seeds"] == [500_000, 500_059]


def test_stages_stops_early_and_resume_reaches_training() -> None:
    args = mpp._arguments(["--stages", "2", "--resume"])
    assert (args.stages, args.resume) == (2, True)
    for bad in (["--stages", "0"], ["--stages", "5"], ["--workers", "0"]):
        with pytest.raises(SystemExit):
            mpp._arguments(bad)
