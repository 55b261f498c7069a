"""The training loop on tiny generated episodes whose action is written in the frames'
brightness: it learns, checkpoints, resumes bit-exactly, stops early, plots, and its
configuration errors name the bad key."""

import argparse
import dataclasses
import io
import json
import re
from pathlib import Path

import pytest
import torch

from tests.training.toy_episodes import TINY, write_toy_episodes
from zima.training import cli
from zima.training.augment import AugmentConfig
from zima.training.checkpoint import build_policy, load_checkpoint
from zima.training.config import ConfigError, DataConfig, TrainConfig
from zima.training.models import PolicyConfig
from zima.training.train import BEST, LAST, TrainError, select_episodes, train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("deterministic_torch")


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight noisy toy episodes, every fourth from a "real" source."""
    return write_toy_episodes(tmp_path_factory.mktemp("episodes"), TINY, 8, real_every=4)


def _config(episodes: Path, out: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        output_dir=str(out),
        data=DataConfig(dirs=(str(episodes),), source_weights={"sim": 0.5, "real": 0.5},
                        val_fraction=0.25, cache_dir=str(out.parent / "cache")),
        policy=PolicyConfig(backbone="small", hidden_dim=32, dropout=0.1),
        augment=AugmentConfig(enabled=False), batch_size=16, epochs=6, backbone_lr=1e-3,
        head_lr=3e-3, patience=10)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_loss_decreases_on_a_learnable_signal(episodes: Path, tmp_path: Path) -> None:
    result = train(_config(episodes, tmp_path / "run"), TINY, progress=None)
    losses = [h["val_loss"] for h in result.history]
    assert result.epochs_done == 6
    assert losses[-1] < 0.7 * losses[0]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["val_acc_per_step"][0] > 0.5  # the visible action


def test_checkpoint_contents(episodes: Path, tmp_path: Path) -> None:
    config = _config(episodes, tmp_path / "run", epochs=2)
    train(config, TINY, progress=None)
    ckpt = load_checkpoint(tmp_path / "run" / LAST)
    assert ckpt.trainer is not None
    assert ckpt.config is not None
    assert ckpt.data_fingerprint is not None
    assert ckpt.trainer["epoch"] == 2
    assert ckpt.contract == TINY
    assert ckpt.config["policy"]["backbone"] == "small"
    assert ckpt.config["data"]["source_weights"] == {"sim": 0.5, "real": 0.5}
    assert len(ckpt.data_fingerprint) == 24
    assert {"state", "param_groups"} <= set(ckpt.trainer["optimizer"])
    assert [g["lr"] for g in ckpt.trainer["optimizer"]["param_groups"]] == [1e-3, 3e-3]
    assert len(ckpt.trainer["history"]) == 2
    assert (tmp_path / "run" / BEST).exists()
    model = build_policy(ckpt)
    assert not model.training
    images = torch.zeros((1, *TINY.image_shape), dtype=torch.uint8)
    logits = model(images, torch.zeros(1, TINY.action_history, dtype=torch.int64))
    assert logits.shape == (1, TINY.chunk_len, TINY.n_actions)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(episodes: Path,
                                                                tmp_path: Path) -> None:
    augment = AugmentConfig(barrel_prob=0.5)  # every random stream in play
    whole = _config(episodes, tmp_path / "whole", epochs=2, augment=augment)
    train(whole, TINY, progress=None)
    half = _config(episodes, tmp_path / "half", epochs=1, augment=augment)
    train(half, TINY, progress=None)
    resumed = train(dataclasses.replace(half, epochs=2, resume=True), TINY, progress=None)
    assert resumed.epochs_done == 2
    a = load_checkpoint(tmp_path / "whole" / LAST)
    b = load_checkpoint(tmp_path / "half" / LAST)
    assert a.trainer is not None
    assert b.trainer is not None
    assert b.trainer["epoch"] == 2
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert a.trainer["history"][1]["val_loss"] == b.trainer["history"][1]["val_loss"]


def test_a_cosine_schedule_lowers_the_rates_by_epoch_and_resumes_alike(
        episodes: Path, tmp_path: Path) -> None:
    from zima.training.train import lr_factor  # noqa: PLC0415

    whole = _config(episodes, tmp_path / "whole", epochs=2, lr_schedule="cosine")
    assert [lr_factor(whole, e) for e in range(2)] == pytest.approx([1.0, 0.5])
    assert lr_factor(_config(episodes, tmp_path, epochs=2), 1) == 1.0  # constant
    train(whole, TINY, progress=None)
    half = dataclasses.replace(whole, output_dir=str(tmp_path / "half"), epochs=1)
    train(half, TINY, progress=None)
    # Resumed as a run of 2 epochs: the second epoch's rates are the whole run's.
    train(dataclasses.replace(half, epochs=2, resume=True), TINY, progress=None)
    a, b = load_checkpoint(tmp_path / "whole" / LAST), load_checkpoint(tmp_path / "half" / LAST)
    assert a.trainer is not None
    assert b.trainer is not None
    assert [g["lr"] for g in a.trainer["optimizer"]["param_groups"]] == pytest.approx(
        [0.5e-3, 1.5e-3])
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)


def test_init_from_loads_weights_only(episodes: Path, tmp_path: Path) -> None:
    train(_config(episodes, tmp_path / "sim", epochs=1), TINY, progress=None)
    tuned = train(_config(episodes, tmp_path / "real", epochs=1,
                          init_from=str(tmp_path / "sim" / BEST)), TINY, progress=None)
    assert tuned.epochs_done == 1  # a fresh epoch count, not the source's
    ckpt = load_checkpoint(tmp_path / "real" / LAST)
    assert ckpt.trainer is not None
    assert ckpt.trainer["epoch"] == 1


def test_init_from_another_network_is_a_clear_error(episodes: Path, tmp_path: Path) -> None:
    train(_config(episodes, tmp_path / "sim", epochs=1), TINY, progress=None)
    other = dataclasses.replace(_config(episodes, tmp_path / "x").policy, hidden_dim=64)
    with pytest.raises(TrainError, match="hidden_dim: checkpoint 32, \\[policy\\] 64"):
        train(_config(episodes, tmp_path / "real", epochs=1, policy=other,
                      init_from=str(tmp_path / "sim" / BEST)), TINY, progress=None)


def test_early_stopping_stops(episodes: Path, tmp_path: Path) -> None:
    # Learning rates too small to change anything: validation loss cannot keep improving.
    result = train(_config(episodes, tmp_path / "run", epochs=30, patience=2,
                           backbone_lr=1e-12, head_lr=1e-12), TINY, progress=None)
    assert result.stopped_early
    assert result.epochs_done < 30


def test_plots_are_pngs(episodes: Path, tmp_path: Path) -> None:
    train(_config(episodes, tmp_path / "run", epochs=1), TINY, progress=None)
    for name in ("loss.png", "accuracy.png", "actions.png"):
        data = (tmp_path / "run" / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 1000


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_config_from_toml_resolves_paths_and_defaults(tmp_path: Path) -> None:
    config = TrainConfig.from_toml(_write(tmp_path / "run.toml", """
        output_dir = "out"
        epochs = 3
        [data]
        dirs = ["eps"]
        source_weights = { sim = 0.7, real = 0.3 }
        [policy]
        backbone = "small"
        [augment]
        barrel_prob = 0.3
    """))
    assert config.output_dir == str(tmp_path / "out")
    assert config.data.dirs == (str(tmp_path / "eps"),)
    assert config.data.source_weights == {"sim": 0.7, "real": 0.3}
    assert (config.backbone_lr, config.head_lr) == (1e-5, 3e-4)
    assert config.policy.backbone == "small"
    assert config.augment.barrel_prob == 0.3
    assert config.init_from == ""


def test_overrides_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "run.toml", 'output_dir = "out"\nepochs = 3\n[data]\ndirs = ["eps"]')
    monkeypatch.chdir(tmp_path.parent)
    config = TrainConfig.from_toml(path, ["epochs=5", f"init_from={tmp_path.name}/a.pt",
                                          f'data.dirs = ["{tmp_path.name}/x", "/abs/y"]',
                                          "policy.backbone=spatial", "head_lr = 2e-4"])
    assert config.epochs == 5
    assert config.init_from == str(tmp_path / "a.pt")  # relative to the current directory
    assert config.data.dirs == (str(tmp_path / "x"), "/abs/y")
    assert config.policy.backbone == "spatial"
    assert config.head_lr == 2e-4
    assert config.output_dir == str(tmp_path / "out")  # untouched: relative to the file
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        TrainConfig.from_toml(path, ["epochs"])
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        TrainConfig.from_toml(path, ["epochz=4"])
    with pytest.raises(ConfigError, match="epochs is not a table"):
        TrainConfig.from_toml(path, ["epochs.x=4"])


@pytest.mark.parametrize(("text", "message"), [
    ('output_dir = "o"\nepochz = 3\n[data]\ndirs = ["d"]', "unknown key 'epochz'"),
    ('output_dir = "o"\n[data]\ndirs = ["d"]\nsorce_weights = {}', "unknown key 'data.sorce"),
    ('output_dir = "o"\nepochs = "3"\n[data]\ndirs = ["d"]', "epochs must be of type int"),
    ('output_dir = "o"\nepochs = 0\n[data]\ndirs = ["d"]', "epochs must be positive"),
    ('output_dir = "o"\n[data]\ndirs = "d"', "data.dirs must be a list"),
    ('[data]\ndirs = ["d"]', "missing key 'output_dir'"),
    ('output_dir = "o"\n[data]\ndirs = ["d"]\nsource_weights = { robot = 1.0 }',
     "unknown sources"),
    ('output_dir = "o"\n[data]\ndirs = ["d"]\n[policy]\nbackbone = "vgg"',
     "unknown backbone 'vgg'"),
    # The continuous head was removed (issue 14 item 6): its option is no longer a key.
    ('output_dir = "o"\n[data]\ndirs = ["d"]\n[policy]\nhead = "continuous"',
     "unknown key 'policy.head'"),
    ('output_dir = "o"\n[data]\ndirs = ["d"]\n[augment]\nblur_prob = 3', "augment.*blur_prob"),
    ('output_dir = "o"\n[data]\ndirs = ["d"]\n[augment]\nenabled = 1', "augment.enabled must"),
    ('output_dir = "o"\nlr_schedule = "step"\n[data]\ndirs = ["d"]', "lr_schedule must be"),
    ("output_dir = ", "not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_toml(_write(tmp_path / "bad.toml", text))


def test_cli_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    bad = _write(tmp_path / "bad.toml", 'output_dir = "o"\n[data]\ndirs = ["missing"]')
    assert cli.run(parser.parse_args([str(bad), "--quiet"])) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_refuses_a_cache_the_disk_cannot_hold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zima.contract import DEFAULT  # noqa: PLC0415 -- the CLI's find contract

    data = write_toy_episodes(tmp_path / "eps", DEFAULT, 2)
    monkeypatch.setattr("zima.training.dataset._free_bytes", lambda _folder: 10**6)  # 1 MB
    run = _write(tmp_path / "run.toml",
                 f'output_dir = "out"\n[data]\ndirs = ["{data}"]\ncache_dir = "cache"')
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args([str(run), "--quiet"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("zima train: the training cache of 2 episode files needs 3.5 MB")
    assert "and 536.9 MB left free beside it; 1.0 MB is free;" in err
    assert not (tmp_path / "out" / "last.pt").exists()


def test_tempered_class_weights_keep_their_order_and_mean() -> None:
    from zima.training.train import _tempered  # noqa: PLC0415 -- a private helper

    weights = torch.tensor([8.0, 1.0, 2.0, 0.0])  # [n_actions], the last action absent
    assert torch.equal(_tempered(weights, 1.0), weights)
    half = _tempered(weights, 0.5)
    assert half[3] == 0.0
    assert float(half[:3].mean()) == pytest.approx(1.0)
    assert half[0] > half[2] > half[1]  # the same order, closer together
    assert float(half[0] / half[1]) == pytest.approx(8.0 ** 0.5)
    flat = _tempered(weights, 0.0)
    assert torch.allclose(flat[:3], torch.ones(3))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four successful sim episodes; robot episodes that were aborted (2) or failed (1); a
    DAgger-style sim episode that collided but carries the expert's labels."""
    folder = tmp_path_factory.mktemp("mixed")
    write_toy_episodes(folder, TINY, 4, seed=1)
    write_toy_episodes(folder, TINY, 2, seed=2, real_every=1, outcome="aborted",
                       prefix="aborted")
    write_toy_episodes(folder, TINY, 1, seed=3, real_every=1, outcome="failure",
                       prefix="failure")
    write_toy_episodes(folder, TINY, 1, seed=4, outcome="collision", expert_labelled=True,
                       prefix="dagger")
    return folder


@pytest.mark.parametrize(("changes", "kept", "skipped"), [
    ({}, ["dagger0", "ep0", "ep1", "ep2", "ep3"], {"aborted": 2, "failure": 1}),
    ({"outcomes": ("success", "failure")}, ["dagger0", "ep0", "ep1", "ep2", "ep3", "failure0"],
     {"aborted": 2}),
    ({"expert_labelled": False}, ["ep0", "ep1", "ep2", "ep3"],
     {"aborted": 2, "collision": 1, "failure": 1}),
    ({"outcomes": ("*",), "expert_labelled": False},
     ["aborted0", "aborted1", "dagger0", "ep0", "ep1", "ep2", "ep3", "failure0"], {}),
])
def test_episodes_are_cloned_by_outcome_and_expert_labels(
        mixed: Path, changes: dict[str, object], kept: list[str],
        skipped: dict[str, int]) -> None:
    data = dataclasses.replace(DataConfig(dirs=(str(mixed),)), **changes)  # type: ignore[arg-type]
    files = sorted(mixed.glob("*.h5"))
    selection = select_episodes(files, data, TINY)
    assert [p.stem for p in selection.files] == kept
    assert selection.skipped == skipped


def test_training_skips_unsuccessful_episodes_and_says_how_many(mixed: Path,
                                                                tmp_path: Path) -> None:
    config = TrainConfig.from_toml(_write(tmp_path / "run.toml", f"""
        output_dir = "out"
        epochs = 1
        batch_size = 16
        device = "cpu"
        [data]
        dirs = ["{mixed}"]
        cache_dir = "cache"
        val_fraction = 0.25
        outcomes = ["success"]
        expert_labelled = true
        [policy]
        backbone = "small"
        hidden_dim = 16
    """))
    progress = io.StringIO()
    result = train(config, TINY, progress=progress)
    assert (result.episodes, result.skipped) == (5, {"aborted": 2, "failure": 1})
    assert ("episodes: 5 of 8 episodes; skipped by outcome (2 aborted, 1 failure): "
            "data.outcomes = ['success'] or expert-labelled\n") in progress.getvalue()
    assert "cache: decoding episodes [5/5]" in progress.getvalue()  # what the build did
    batches = re.findall(r"\rtrain epoch 1/1 \[(\d+)/(\d+)\] [\d.]+ batch/s", progress.getvalue())
    assert batches
    assert batches[-1][0] == batches[-1][1]  # the last batch is always shown
    (cache,) = (tmp_path / "cache").iterdir()  # only the cloned episodes were decoded
    manifest = json.loads((cache / "manifest.json").read_text())
    assert sorted(Path(e["path"]).stem for e in manifest["episodes"]) == [
        "dagger0", "ep0", "ep1", "ep2", "ep3"]


def test_a_recipe_with_nothing_to_clone_is_an_error(mixed: Path, tmp_path: Path) -> None:
    config = _config(mixed, tmp_path / "run")
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, outcomes=("timeout",), expert_labelled=False))
    with pytest.raises(TrainError, match="no episode to clone: all 8 skipped"):
        train(config, TINY, progress=None)
    with pytest.raises(ConfigError, match=r"data\.outcomes must name"):
        DataConfig(dirs=("d",), outcomes=())
