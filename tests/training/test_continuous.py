"""The continuous head end to end: its shapes and option, the weighted L1 loss and the
nearest-action accuracy on hand-made batches, then a tiny run trained on the CPU,
exported, checked for parity, accepted by the runtime and driven by the policy runner."""

import argparse
import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.toy_episodes import TINY, write_toy_episodes
from zima.contract import Action, TrackCommand
from zima.export import cli as export_cli
from zima.export.onnx_export import export_onnx
from zima.export.parity import (
    MAX_TRACKS_DIFF_MM_S,
    ParityError,
    ParityReport,
    check_parity,
    random_samples,
)
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy import TRACKS_OUTPUT, load_model
from zima.onboard.policy_runner import PolicyConfig as RunnerConfig
from zima.onboard.policy_runner import PolicyRunner
from zima.training.augment import AugmentConfig
from zima.training.checkpoint import build_policy, load_checkpoint
from zima.training.config import ConfigError, DataConfig, TrainConfig
from zima.training.models import Policy, PolicyConfig
from zima.training.plots import ACCURACY_PNG, LOSS_PNG
from zima.training.train import BEST, Objective, train

CONTINUOUS = PolicyConfig(backbone="small", hidden_dim=32, dropout=0.1, head="continuous")


pytestmark = pytest.mark.usefixtures("deterministic_torch")


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six clean toy episodes (no pixel noise)."""
    return write_toy_episodes(tmp_path_factory.mktemp("episodes"), TINY, 6, seed=1,
                              noise=False)


# ---- the model ----------------------------------------------------------------------------


def test_the_continuous_head_emits_track_speeds_in_mm_s() -> None:
    torch.manual_seed(0)
    model = Policy(TINY, CONTINUOUS).eval()
    assert model.continuous
    images = torch.zeros((3, *TINY.image_shape), dtype=torch.uint8)
    history = torch.zeros((3, TINY.action_history), dtype=torch.int64)
    last = model.head[-1]
    assert isinstance(last, torch.nn.Linear)
    assert last.out_features == TINY.chunk_len * 2
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0]))  # normalised, step-major
        out = model(images, history)
    assert out.dtype == torch.float32
    assert out.shape == (3, TINY.chunk_len, 2)
    # The network's normalised values times forward_mm_s (300): mm/s.
    assert out[0].tolist() == [[150.0, -75.0], [300.0, 0.0]]
    discrete = Policy(TINY, dataclasses.replace(CONTINUOUS, head="discrete"))
    assert not discrete.continuous
    assert discrete(images, history).shape == (3, TINY.chunk_len, TINY.n_actions)


def test_an_unknown_head_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown policy head 'mixed'; known: "
                                         r"\['discrete', 'continuous'\]"):
        PolicyConfig(head="mixed")
    toml = tmp_path / "run.toml"
    toml.write_text('output_dir = "out"\n[data]\ndirs = ["d"]\n[policy]\nhead = "mixed"\n')
    with pytest.raises(ConfigError, match="unknown policy head 'mixed'"):
        TrainConfig.from_toml(toml)
    config = TrainConfig.from_toml(toml, ["policy.head=continuous"])
    assert config.policy.head == "continuous"


# ---- the loss and the metric ----------------------------------------------------------------


def test_weighted_l1_loss_and_nearest_action_accuracy_by_hand() -> None:
    model = Policy(TINY, CONTINUOUS)
    weights = torch.tensor([2.0, 1.0, 0.5, 0.0])  # STOP, FORWARD, LEFT, RIGHT (absent)
    objective = Objective.of(model, weights)
    assert objective.track_targets.tolist() == [[0, 0], [1, 1], [-0.5, 0.5], [0.5, -0.5]]
    target = torch.tensor([[0, 1], [2, 3]])  # [B=2, chunk=2]
    out = torch.tensor([[[30.0, -30.0], [300.0, 240.0]],  # mm/s
                        [[-150.0, 150.0], [0.0, 0.0]]])
    # |error| / 300 per element; mean over the pair; weighted by the label's weight:
    # STOP 0.1 (w 2), FORWARD 0.1 (w 1), LEFT 0 (w 0.5), RIGHT 0.5 (w 0).
    expected = (2 * 0.1 + 1 * 0.1 + 0.5 * 0.0 + 0.0 * 0.5) / (2 + 1 + 0.5 + 0.0)
    assert float(objective.loss(out, target)) == pytest.approx(expected)
    # STOP at 30 mm/s is outside the dead band: the nearest action is RIGHT, not STOP.
    assert objective.actions(out).tolist() == [[int(Action.RIGHT), int(Action.FORWARD)],
                                               [int(Action.LEFT), int(Action.STOP)]]
    logits = torch.zeros((2, 2, TINY.n_actions))
    discrete = Objective.of(Policy(TINY, dataclasses.replace(CONTINUOUS, head="discrete")),
                            weights)
    assert float(discrete.loss(logits, target)) == pytest.approx(float(np.log(4)))


# ---- end to end ---------------------------------------------------------------------------


def _config(episodes: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        output_dir=str(out),
        data=DataConfig(dirs=(str(episodes),), val_fraction=0.34,
                        cache_dir=str(out.parent / "cache")),
        policy=CONTINUOUS, augment=AugmentConfig(enabled=False), batch_size=16, epochs=2,
        backbone_lr=1e-3, head_lr=3e-3, class_weight_power=0.5, device="cpu")


def test_a_continuous_run_trains_exports_and_drives(episodes: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    result = train(_config(episodes, tmp_path / "run"), TINY, progress=None)
    assert result.epochs_done == 2
    for row in result.history:
        assert 0.0 < row["train_loss"] < 2.0  # normalised units: targets lie in [-1, 1]
        assert 0.0 <= row["val_acc"] <= 1.0
        assert len(row["val_acc_per_step"]) == TINY.chunk_len
    assert (tmp_path / "run" / LOSS_PNG).is_file()
    assert (tmp_path / "run" / ACCURACY_PNG).is_file()

    ckpt = load_checkpoint(tmp_path / "run" / BEST)
    assert ckpt.policy_config == CONTINUOUS
    model = build_policy(ckpt)
    assert model.continuous

    onnx_path = export_onnx(model, TINY, tmp_path / "model.onnx")
    loaded = load_model(onnx_path, TINY)
    assert loaded.output == TRACKS_OUTPUT
    assert loaded.continuous
    report = check_parity(model, onnx_path, random_samples(TINY, 16))
    assert report.output == TRACKS_OUTPUT
    assert report.max_abs_diff <= MAX_TRACKS_DIFF_MM_S
    assert report.agreement == 1.0
    report.check()

    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    out = tmp_path / "cli.onnx"
    args = parser.parse_args([str(tmp_path / "run" / BEST), "--out", str(out), "--int8"])
    assert export_cli.run(args) == 0
    text = capsys.readouterr().out
    assert "continuous head" in text
    assert "parity: max |track speed difference|" in text
    assert "mm/s" in text
    assert "parity: nearest-action agreement" in text
    assert "int8 vs float: nearest-action agreement" in text
    assert load_model(export_cli.int8_path(out), TINY).output == TRACKS_OUTPUT

    # The runner drives the exported model: each step's command is the model's output
    # for that observation, clipped and rounded, and its action the nearest one.
    fusion = FrameFusion(TINY)
    expected = loaded.infer(*_first_observation())  # [chunk_len, 2] mm/s

    async def drive() -> list[TrackCommand | None]:
        fusion_frames(fusion, 0.0)
        config = RunnerConfig(model_path=onnx_path, execute_k=TINY.chunk_len)
        async with PolicyRunner(config, TINY, fusion, clock=lambda: 0.0) as runner:
            runner.tick(0.0)
            await runner.wait_plan()
            fusion_frames(fusion, 0.1)
            return [runner.tick(0.1 * (i + 1)).tracks for i in range(TINY.chunk_len)]

    driven = asyncio.run(drive())
    assert driven == [TINY.clipped_command(float(left), float(right))
                      for left, right in expected]


def fusion_frames(fusion: FrameFusion, now_s: float) -> None:
    for cam in TINY.cameras:
        fusion.push(cam, np.full((16, 16, 3), 90, np.uint8), now_s)


def _first_observation() -> tuple[np.ndarray, np.ndarray]:
    """The first plan's observation: the frames the drive pushes, a STOP history."""
    probe = FrameFusion(TINY)
    fusion_frames(probe, 0.0)
    probe.record_action(Action.STOP)  # the runner's first tick records its STOP
    obs = probe.observe(0.0)
    return obs.images, obs.action_history


def test_a_tracks_parity_report_fails_in_mm_s() -> None:
    ParityReport(8, 0.05, 1.0, TRACKS_OUTPUT).check()
    with pytest.raises(ParityError, match=r"track speed difference\| 0\.5 mm/s "
                                          r"\(limit 0\.1 mm/s\), nearest-action"):
        ParityReport(8, 0.5, 1.0, TRACKS_OUTPUT).check()
