"""The path to real data, end to end, with every real part: an operator drives the
simulated robot (`zima sim run`'s HilSession: the firmware on the emulated board, MuJoCo,
the onboard runtime) and the runtime's recorder writes the episodes; a sim checkpoint
from the bundled recipe (tiny: one epoch on toy episodes) is fine-tuned on them with
configs/finetune_real.toml, exported, and `zima score` judges the result on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.onboard.helpers import run
from tests.onboard.test_runtime import constant_policy
from tests.training.toy_episodes import write_toy_episodes
from zima.cli import main
from zima.contract import DEFAULT, Action
from zima.episodes import EpisodeReader
from zima.onboard.commands import RecordCommand, TeleopCommand
from zima.onboard.safety import DriveMode
from zima.sim.hil import HilSession
from zima.sim.hil_config import HilConfig
from zima.training.checkpoint import load_checkpoint
from zima.training.config import TrainConfig
from zima.training.train import BEST

ROOT = Path(__file__).resolve().parents[2]
FINETUNE = ROOT / "configs" / "finetune_real.toml"
SIM_RECIPE = ROOT / "configs" / "demo_policy.toml"  # the bundled policy's (make policy)
# Per episode, the operator's legs: (m/s, rad/s, emulated seconds). 1.5 rad/s turns in
# place at +-158 mm/s on the 0.21 m gauge.
DRIVES = (((0.3, 0.0, 1.0), (0.0, 1.5, 0.6), (0.0, 0.0, 0.3)),
          ((0.0, -1.5, 0.6), (0.3, 0.0, 1.0), (0.0, 0.0, 0.3)))


def record_demonstrations(cfg: HilConfig) -> Path:
    """Drive DRIVES by teleop in the sim, each recorded by the runtime; the folder."""

    async def main_() -> None:
        async with HilSession(cfg) as hil:
            runtime = hil.runtime
            for legs in DRIVES:
                await hil.mode(DriveMode.TELEOP)
                assert await runtime.handle(RecordCommand("start"), "test") is None
                for v, w, duration_s in legs:
                    end_s = hil.world.snapshot().time_s + duration_s
                    while hil.world.snapshot().time_s < end_s:
                        assert await runtime.handle(TeleopCommand(v, w), "test") is None
                        await hil.sleep(0.05)
                assert await runtime.handle(RecordCommand("stop", "success"), "test") is None
                await hil.mode(DriveMode.IDLE)

    run(main_, guard_s=90)
    return cfg.out_dir / "episodes"


def test_finetune_real_recipe_on_episodes_recorded_by_the_runtime(
    firmware_elf: Path, emulator_binary: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = HilConfig(firmware=firmware_elf, emulator=emulator_binary, mqtt="off", videos=0,
                    model_path=constant_policy(tmp_path / "idle.onnx", Action.STOP),
                    out_dir=tmp_path / "hil", time_limit_s=120.0)
    recorded = record_demonstrations(cfg)
    files = sorted(recorded.glob("*.h5"))
    assert len(files) == len(DRIVES)
    labels = []
    for path in files:
        with EpisodeReader(path) as reader:  # the robot's format, marked as simulated
            assert (reader.info.source, reader.info.outcome) == ("sim", "success")
            assert reader.extras()["mode"] == "teleop"
            labels.append(reader.load().expert_action)
    counts = np.bincount(np.concatenate(labels), minlength=DEFAULT.n_actions)  # [n_actions]
    assert counts[Action.FORWARD] > 5
    assert counts[Action.LEFT] > 2
    assert counts[Action.RIGHT] > 2

    # Pre-training "in the simulator": the bundled recipe, one epoch on toy episodes.
    sim_data = write_toy_episodes(tmp_path / "sim_data", DEFAULT, 3)
    cache = tmp_path / "cache"
    sim_run, real_run = tmp_path / "sim_run", tmp_path / "real_run"
    assert main(["train", str(SIM_RECIPE), "--quiet", "--set", f"output_dir={sim_run}",
                 "--set", f'data.dirs=["{sim_data}"]', "--set", f"data.cache_dir={cache}",
                 "--set", "epochs=1", "--set", "device=cpu"]) == 0
    # Fine-tuning: the recipe as shipped, only its paths and length overridden.
    assert main(["train", str(FINETUNE), "--quiet", "--set", f"output_dir={real_run}",
                 "--set", f"init_from={sim_run / BEST}", "--set", f'data.dirs=["{recorded}"]',
                 "--set", f"data.cache_dir={cache}", "--set", "epochs=1",
                 "--set", "device=cpu"]) == 0
    recipe = TrainConfig.from_toml(FINETUNE)
    assert (recipe.backbone_lr, recipe.head_lr) == (1e-5, 3e-4)  # the prototype's
    assert recipe.augment.enabled
    tuned, pretrained = load_checkpoint(real_run / BEST), load_checkpoint(sim_run / BEST)
    assert tuned.trainer is not None
    assert [g["lr"] for g in tuned.trainer["optimizer"]["param_groups"]] == [1e-5, 3e-4]
    # Started from the sim weights: one optimiser step at 1e-5 hardly moves the backbone
    # (a fresh initialisation would be far off); the head moves more.
    moved = {name: float((tuned.model_state[name] - value).abs().max())
             for name, value in pretrained.model_state.items() if value.is_floating_point()}
    backbone = [v for k, v in moved.items() if k.startswith("backbone.") and "running" not in k]
    head = [v for k, v in moved.items() if k.startswith("head.")]
    assert 0 < max(backbone) < 1e-4
    assert max(head) > 10 * max(backbone)  # 3e-4 against 1e-5

    onnx_path = real_run / "policy.onnx"
    assert main(["export", str(real_run / BEST), "--out", str(onnx_path), "--samples",
                 str(recorded)]) == 0
    capsys.readouterr()
    score_json, score_png = tmp_path / "score.json", tmp_path / "score.png"
    assert main(["score", str(onnx_path), str(recorded), "--json", str(score_json),
                 "--plot", str(score_png), "--quiet"]) == 0
    out = capsys.readouterr().out
    report = json.loads(score_json.read_text())
    assert 0.0 <= report["agreement"] <= 1.0
    assert report["steps"] == sum(map(len, labels))
    confusion = np.array(report["confusion"])  # [label, predicted]
    assert confusion.sum() == report["steps"]
    assert confusion.sum(axis=1).tolist() == counts.tolist()
    assert np.trace(confusion) == report["agree"]
    assert [(e["file"], e["steps"], e["mode"], e["source"]) for e in report["episodes"]] == [
        (p.name, len(steps), "teleop", "sim") for p, steps in zip(files, labels, strict=True)]
    assert report["skipped"] == []
    assert f"agreement {report['agreement']:.1%}" in out
    assert score_png.stat().st_size > 1000
