"""Export: checkpoints round-trip, the robot's loader accepts what export writes, PyTorch
and onnxruntime agree, a model in training mode is refused, a model for another contract
is refused by the runtime, `zima export` prints its parity lines, and with ``--samples``
ships episode observations in the file, on which the loader refuses a model that is NaN."""

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from zima.contract import METADATA_KEY, Contract
from zima.episodes import EpisodeInfo, EpisodeWriter
from zima.export import cli
from zima.export.onnx_export import (
    SOURCE_SHA256_KEY,
    VERSION_KEY,
    TrainingModeError,
    export_onnx,
)
from zima.export.parity import (
    MAX_ABS_DIFF,
    MIN_AGREEMENT,
    ParityError,
    ParityReport,
    check_parity,
    episode_samples,
    random_samples,
)
from zima.onboard.model_samples import SAMPLES_KEY, decode_samples
from zima.onboard.policy import ContractMismatchError, SampleOutputError, load_model
from zima.training.checkpoint import (
    CheckpointError,
    build_policy,
    load_checkpoint,
    save_checkpoint,
)
from zima.training.models import Policy, PolicyConfig

TINY = Contract(image_height=24, image_width=32, image_history=2, action_history=3, chunk_len=4)
SMALL = PolicyConfig(backbone="small", hidden_dim=32, action_embed_dim=4)


def policy(contract: Contract = TINY, seed: int = 0) -> Policy:
    torch.manual_seed(seed)
    return Policy(contract, SMALL).eval()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "ckpt.pt", policy(), config={"epochs": 1},
                           data_fingerprint="abc123")


def test_checkpoint_round_trip(checkpoint: Path) -> None:
    loaded = load_checkpoint(checkpoint)
    assert loaded.contract == TINY
    assert loaded.policy_config == SMALL
    assert loaded.config == {"epochs": 1}
    assert loaded.data_fingerprint == "abc123"
    model = build_policy(loaded)
    assert not any(m.training for m in model.modules())
    samples = random_samples(TINY, 4)
    with torch.no_grad():
        args = (torch.from_numpy(samples.images), torch.from_numpy(samples.action_history))
        assert torch.equal(model(*args), policy()(*args))
    assert [p.name for p in checkpoint.parent.iterdir()] == ["ckpt.pt"]  # no temp left


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"model_state": {}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_checkpoint_of_the_removed_continuous_head_is_refused_saying_so(
        checkpoint: Path, tmp_path: Path) -> None:
    """Checkpoints written while PolicyConfig had a ``head`` field: a discrete one loads
    as before, a continuous one is refused with the reason, not a TypeError."""
    stored = torch.load(checkpoint, weights_only=True)
    stored["policy_config"]["head"] = "discrete"
    torch.save(stored, tmp_path / "discrete.pt")
    assert load_checkpoint(tmp_path / "discrete.pt").policy_config == SMALL
    stored["policy_config"]["head"] = "continuous"
    torch.save(stored, tmp_path / "continuous.pt")
    with pytest.raises(CheckpointError, match=r"continuous.pt: its policy head is "
                                              r"'continuous' .* was removed"):
        load_checkpoint(tmp_path / "continuous.pt")


def test_the_runtime_accepts_the_export_and_its_contract(tmp_path: Path) -> None:
    out = export_onnx(policy(), TINY, tmp_path / "model.onnx", source_sha256="f00")
    model = load_model(out, TINY)
    assert model.contract == TINY
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert Contract.from_json(props[METADATA_KEY]) == TINY
    assert props[SOURCE_SHA256_KEY] == "f00"
    assert props[VERSION_KEY]
    # The batch axis is symbolic: a batch of 5 runs too.
    report = check_parity(policy(), out, random_samples(TINY, 5))
    assert report.n_samples == 5


def test_parity_is_within_the_thresholds(tmp_path: Path) -> None:
    out = export_onnx(policy(), TINY, tmp_path / "model.onnx")
    report = check_parity(policy(), out, random_samples(TINY, 32))
    assert report.max_abs_diff <= MAX_ABS_DIFF
    assert report.agreement >= MIN_AGREEMENT
    report.check()


def test_a_parity_report_beyond_the_threshold_fails() -> None:
    with pytest.raises(ParityError, match="disagree"):
        ParityReport(8, 0.5, 1.0).check()
    with pytest.raises(ParityError, match="agreement"):
        ParityReport(8, 0.0, 0.9).check()


def test_a_model_in_training_mode_is_refused(tmp_path: Path) -> None:
    model = policy().train()
    with pytest.raises(TrainingModeError, match=r"model\.eval\(\)"):
        export_onnx(model, TINY, tmp_path / "model.onnx")
    model.eval()
    model.head[2].train()  # one Dropout left in training mode is enough
    with pytest.raises(TrainingModeError, match=r"head\.2"):
        export_onnx(model, TINY, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_a_model_for_another_contract_is_refused_by_the_runtime(tmp_path: Path) -> None:
    other = replace(TINY, chunk_len=6)
    ckpt = save_checkpoint(tmp_path / "other.pt", policy(other))
    out = export_onnx(build_policy(load_checkpoint(ckpt)), other, tmp_path / "model.onnx")
    with pytest.raises(ContractMismatchError) as info:
        load_model(out, TINY)
    assert any(m.startswith("chunk_len") for m in info.value.mismatches)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_exports_and_prints_parity(checkpoint: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    assert cli.run(_args(str(checkpoint), "--out", str(out))) == 0
    text = capsys.readouterr().out
    assert "parity: max |logit difference|" in text
    assert "parity: argmax agreement" in text
    load_model(out, TINY)


def test_cli_fails_clearly_on_a_broken_checkpoint(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert cli.run(_args(str(tmp_path / "junk.pt"), "--out", str(tmp_path / "m.onnx"))) == 1
    assert "zima export: checkpoint" in capsys.readouterr().err


def write_episodes(directory: Path, brightness: int | None = None) -> Path:
    """Three episodes of 5 steps for TINY: random frames, or all ``brightness``."""
    directory.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        with EpisodeWriter(directory / f"ep{i}.h5", EpisodeInfo("sim", "test"), TINY) as w:
            for t in range(5):
                frames = {cam: rng.integers(0, 256, (24, 32, 3), np.uint8)
                          if brightness is None else np.full((24, 32, 3), brightness, np.uint8)
                          for cam in TINY.cameras}
                w.append(frames, t % 4, t / TINY.control_hz, expert_action=t % 4)
    return directory


def test_parity_samples_from_episodes(tmp_path: Path) -> None:
    episodes = write_episodes(tmp_path / "episodes")
    samples = episode_samples(episodes, TINY, n=8)
    # The validation split of 3 episodes is one episode of 5 steps.
    assert samples.images.shape == (5, *TINY.image_shape)
    assert samples.action_history.shape == (5, TINY.action_history)
    out = export_onnx(policy(), TINY, tmp_path / "model.onnx")
    check_parity(policy(), out, samples).check()


def test_the_spatial_backbone_exports_with_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Policy(TINY, PolicyConfig(backbone="spatial", hidden_dim=32,
                                      action_embed_dim=4)).eval()
    out = export_onnx(model, TINY, tmp_path / "spatial.onnx")
    assert load_model(out, TINY).contract == TINY
    report = check_parity(model, out, random_samples(TINY, 16))
    report.check()
    assert report.max_abs_diff <= MAX_ABS_DIFF


def test_cli_ships_episode_observations_in_the_model(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    episodes = write_episodes(tmp_path / "episodes")
    out = tmp_path / "model.onnx"
    assert cli.run(_args(str(checkpoint), "--out", str(out), "--samples", str(episodes),
                         "--ship-samples", "3", "--int8")) == 0
    text = capsys.readouterr().out
    assert "shipped 3 observations of 3 episodes (5 samples) in it" in text
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    shipped = decode_samples(props[SAMPLES_KEY], TINY)
    assert len(shipped) == 3
    assert load_model(out, TINY).samples_checked == 3
    assert load_model(cli.int8_path(out), TINY).samples_checked == 3  # the copy has them
    # Without --samples (random parity inputs) nothing is shipped; nor with 0.
    for extra in ([], ["--samples", str(episodes), "--ship-samples", "0"]):
        assert cli.run(_args(str(checkpoint), "--out", str(out), *extra)) == 0
        assert load_model(out, TINY).samples_checked == 0
    capsys.readouterr()
    assert cli.run(_args(str(checkpoint), "--out", str(out), "--samples", str(episodes),
                         "--ship-samples", "17")) == 1
    assert "--ship-samples 17 must be 0..16" in capsys.readouterr().err


class NanOnBright(nn.Module):
    """A Policy's I/O for TINY: zero logits, all NaN where an observation's mean
    brightness is above 140 (finite on the random warm-up input, mean ~127.5)."""

    table: torch.Tensor  # [1, chunk_len, n_actions] zeros, a buffer

    def __init__(self) -> None:
        super().__init__()
        self.contract = TINY
        self.register_buffer("table", torch.zeros(1, TINY.chunk_len, TINY.n_actions))

    def forward(self, images: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        mean = images.float().mean(dim=(1, 2, 3, 4))  # [B]
        zero = history.float().sum(dim=1) * 0  # [B]: keeps the input in the graph
        poison = torch.where(mean > 140, torch.full_like(mean, float("nan")), zero)  # [B]
        out: torch.Tensor = self.table + poison[:, None, None]  # [B, chunk_len, n_actions]
        return out


def test_export_ships_observations_on_which_the_loader_refuses_a_nan_model(
        tmp_path: Path) -> None:
    model = NanOnBright().eval()
    bright = np.full((2, *TINY.image_shape), 250, np.uint8)
    history = np.zeros((2, TINY.action_history), np.int64)
    out = export_onnx(model, TINY, tmp_path / "nan.onnx", shipped=(bright, history))
    with pytest.raises(SampleOutputError, match=r"shipped sample 1 of 2 .*logits are not "
                                                r"finite"):
        load_model(out, TINY)
    plain = export_onnx(model, TINY, tmp_path / "plain.onnx")
    assert load_model(plain, TINY).samples_checked == 0  # the random warm-up alone passes it
    dark = np.full((2, *TINY.image_shape), 100, np.uint8)
    fine = export_onnx(model, TINY, tmp_path / "dark.onnx", shipped=(dark, history))
    assert load_model(fine, TINY).samples_checked == 2
