"""A pick-up policy end to end (issue 17, item 4), small: the pick expert's episodes
collected under the pick contract, one epoch of training with the arm head, the ONNX
export, and a few steps through the runtime's own code (zima.sim.pick_eval), the arm's
bins moving the simulated arm. What it checks is the plumbing, not the policy's skill."""

import asyncio
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from zima.contract import DEFAULT, PICK, Action
from zima.episodes import EpisodeReader
from zima.export.onnx_export import export_onnx
from zima.onboard.policy import ContractMismatchError, load_model
from zima.sim.collect import CollectConfig, collect, make_env, record_episode
from zima.sim.env import EnvConfig
from zima.sim.evaluate import EvalConfig, policy_episode
from zima.sim.pick import HOLD_BIN, ArmAction, PickConfig, PickEnv
from zima.sim.pick_eval import evaluate_pick
from zima.sim.pick_expert import PickExpert
from zima.training.checkpoint import build_policy, load_checkpoint
from zima.training.config import DataConfig, TrainConfig
from zima.training.models import Policy, PolicyConfig
from zima.training.train import LAST, train


def test_collect_train_export_and_run_a_pick_policy_through_the_runtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two short episodes (3 s: the expert is still driving) kept though they time out,
    # the arm perturbed (noise) and labelled with the expert's bins.
    cfg = CollectConfig(scene="arena", episodes=2, seed=0, contract=PICK, task="pick",
                        keep_failures=True, env=EnvConfig(time_limit_s=3.0), noise=0.3)
    summary = collect(tmp_path / "data", cfg)
    assert len(summary.kept) == 2
    assert "grasp_missed" in summary.report()  # the pick task's failure classes
    path = summary.kept[0].path
    assert path is not None
    with EpisodeReader(path, PICK) as reader:
        episode = reader.load()
    assert episode.arm_action is not None
    assert episode.expert_arm_action is not None
    assert episode.arm_state is not None
    assert episode.arm_action.shape == (len(episode), 6)
    perturbed = episode.arm_action != episode.expert_arm_action  # [T, 6]
    assert perturbed.any()  # perturbed ...
    assert not perturbed[:, 3:].any()  # ... in x, y and z only (the gripper opens as labelled)
    np.testing.assert_allclose(episode.arm_state[0], [0.137, 0, 0.086, 0.7, 0, 0.014],
                               atol=1e-3)  # stowed, the opening 14 mm

    run = TrainConfig(output_dir=str(tmp_path / "run"),
                      data=DataConfig(dirs=(str(tmp_path / "data"),), val_fraction=0.5,
                                      cache_dir=str(tmp_path / "cache"),
                                      outcomes=("*",)),
                      policy=PolicyConfig(backbone="small", hidden_dim=16), epochs=1,
                      batch_size=16, device="cpu", task="pick", arm_class_weight_power=0.5)
    result = train(run, PICK, progress=None)
    assert result.epochs_done == 1
    assert 0.0 <= result.history[0]["val_arm_acc"] <= 1.0

    model = build_policy(load_checkpoint(tmp_path / "run" / LAST))
    onnx_path = export_onnx(model, PICK, tmp_path / "pick.onnx")
    loaded = load_model(onnx_path, PICK)  # the runtime's own verification
    assert loaded.contract == PICK
    with pytest.raises(ContractMismatchError, match="arm_dims"):
        load_model(onnx_path, DEFAULT)

    # DAgger: the policy drives and moves the arm, the pick expert labels both.
    cfg_dagger = CollectConfig(
        scene="arena", episodes=1, seed=7, contract=PICK, task="pick",
        env=EnvConfig(time_limit_s=1.0), policy=onnx_path, keep_failures=True)
    dagger = collect(tmp_path / "dagger", cfg_dagger)
    assert dagger.driver == "policy"
    assert dagger.kept[0].path is not None
    with EpisodeReader(dagger.kept[0].path, PICK) as reader:
        labelled = reader.load()
    assert labelled.expert_arm_action is not None
    assert labelled.expert_arm_action.shape == (len(labelled), 6)
    # The labeller tells the expert what the robot executed last (its search follows it).
    seen: list[Action | None] = []
    act = PickExpert.act

    def spy(self: PickExpert, last_refused: bool = False,
            last_action: Action | None = None) -> tuple[Action, ArmAction]:
        seen.append(last_action)
        return act(self, last_refused, last_action)

    monkeypatch.setattr(PickExpert, "act", spy)
    (tmp_path / "spied").mkdir()
    env = make_env(cfg_dagger)
    stats = record_episode(env, 7, tmp_path / "spied", cfg_dagger)
    env.close()
    assert stats.path is not None
    with EpisodeReader(stats.path, PICK) as reader:
        executed = {Action(int(a)) for a in reader.load().action}
    assert seen[0] is None  # the first step: nothing executed yet
    assert len(seen) > 5
    assert all(a is not None for a in seen[1:])
    assert set(seen[1:]) <= executed

    # A few steps through the runtime's fusion, runner, guard and chunk queue.
    ev = EvalConfig(scene="arena", episodes=2, seed=1_000_000, env=EnvConfig(time_limit_s=1.0),
                    video_dir=tmp_path / "videos", videos=1)
    report = evaluate_pick(onnx_path, ev)
    assert [r.seed for r in report.results] == [1_000_000, 1_000_001]
    assert all(r.steps == 10 for r in report.results)
    assert "pick-up success 0/2" in report.text()
    # The first episode filmed: forward and wrist cameras side by side, every step and the end.
    assert [v.name for v in (tmp_path / "videos").iterdir()] == ["episode_1000000.mp4"]
    film = cv2.VideoCapture(str(tmp_path / "videos" / "episode_1000000.mp4"))
    frames, (width, height) = int(film.get(cv2.CAP_PROP_FRAME_COUNT)), (
        int(film.get(cv2.CAP_PROP_FRAME_WIDTH)), int(film.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    film.release()
    assert frames == 11
    assert width * PICK.image_height == height * PICK.image_width * len(PICK.cameras)


def test_the_runners_arm_bins_move_the_simulated_arm(tmp_path: Path) -> None:
    """A model whose every step is 'STOP, tool up fast' raises the env's commanded tool by
    a fast jog step (15 mm) each step: the runner's bins reach PickEnv.step. The first
    step, a forced STOP while the first plan runs, holds the arm."""
    model = Policy(PICK, PolicyConfig(backbone="small", hidden_dim=8)).eval()
    assert model.arm_head is not None
    drive, arm = model.head[-1], model.arm_head[-1]
    assert isinstance(drive, torch.nn.Linear)
    assert isinstance(arm, torch.nn.Linear)
    with torch.no_grad():
        for layer in (drive, arm):
            layer.weight.zero_()
            layer.bias.zero_()
        drive.bias.view(PICK.chunk_len, PICK.n_actions)[:, int(Action.STOP)] = 50.0
        table = arm.bias.view(PICK.chunk_len, PICK.arm_dims, PICK.n_arm_levels)
        table[:, :, HOLD_BIN] = 50.0
        table[:, 2, :] = 0.0
        table[:, 2, len(PICK.arm_jog_levels) - 1] = 50.0  # z: fast up
    path = export_onnx(model, PICK, tmp_path / "up.onnx")
    env = PickEnv("arena", PickConfig(env=EnvConfig(time_limit_s=0.6)))
    try:
        env.reset(5)
        z0 = env.tool.z
        ev = EvalConfig(scene="arena", episodes=1, seed=5, temperature=0.0,
                        env=EnvConfig(time_limit_s=0.6))
        result, _ = asyncio.run(policy_episode(env, path, ev, 5))
    finally:
        env.close()
    assert result.steps == 6
    assert env.tool.z == pytest.approx(z0 + 5 * 0.015, abs=1e-9)  # steps 1..5 jogged
