"""int8 and the runtime's onnxruntime settings: `zima export --int8` calibrates a static
QDQ copy on recorded episodes, keeps the metadata, and the runtime loads it; the speed
report says when int8 does not pay; the session options. No timing is asserted (the
machine may be busy)."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
import pytest

from tests.export.test_export import TINY, _args, policy, write_episodes
from zima.export import cli
from zima.export.onnx_export import export_onnx
from zima.export.parity import Samples, random_samples
from zima.export.quantize import (
    GOAL_SPEEDUP,
    MIN_INT8_SUM,
    SpeedReport,
    int8_dot_flags,
    quantize_int8,
    speed,
)
from zima.onboard.ort_options import SPINNING_KEY, session_options
from zima.onboard.policy import load_model
from zima.training.checkpoint import save_checkpoint


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "ckpt.pt", policy(), config={"epochs": 1})


def test_int8_export_calibrates_on_the_training_episodes_and_keeps_the_metadata(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    episodes = write_episodes(tmp_path / "episodes")
    out = tmp_path / "model.onnx"
    assert cli.run(_args(str(checkpoint), "--out", str(out), "--samples", str(episodes),
                         "--int8")) == 0
    text = capsys.readouterr().out
    # 3 episodes: 2 train (10 samples), 1 held out for the parity check.
    assert "calibrated on 3 episodes (10 samples) (training split)" in text
    assert "int8 vs float: argmax agreement" in text
    assert "int8 speed on this CPU (1 thread, batch 1" in text
    q_path = cli.int8_path(out)
    assert load_model(q_path, TINY).samples_checked == 4  # the float file's shipped ones
    float_props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    proto = onnx.load(str(q_path))
    assert float_props.items() <= {p.key: p.value for p in proto.metadata_props}.items()
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops
    assert "DequantizeLinear" in ops
    weights = {w.name: tuple(w.dims) for w in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    float_convs = [n for n in convs if n.input[1] in weights]  # a float weight, no QDQ
    assert [weights[n.input[1]][1:] for n in float_convs] == [(3, 3, 3)]  # the stem: 27
    assert MIN_INT8_SUM > 3 * 3 * 3
    # Per-channel weights: one scale per output channel of each quantised Conv's kernel.
    kernels = [(weights[n.input[0]], weights[n.input[1]]) for n in proto.graph.node
               if n.op_type == "DequantizeLinear" and len(weights.get(n.input[0], ())) == 4]
    assert sorted(kernels) == [((32, 16, 3, 3), (32,)), ((64, 32, 3, 3), (64,)),
                               ((64, 64, 3, 3), (64,))]


def test_int8_calibrates_on_another_folder_and_needs_one(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    assert cli.run(_args(str(checkpoint), "--out", str(out), "--int8")) == 1
    assert "--int8 calibrates on recorded frames: give --calibrate" in capsys.readouterr().err
    assert not cli.int8_path(out).exists()
    episodes = write_episodes(tmp_path / "episodes")
    assert cli.run(_args(str(checkpoint), "--out", str(out), "--int8", "--calibrate",
                         str(episodes), "--n-calibrate", "4")) == 0
    text = capsys.readouterr().out
    assert "parity samples: random (seed 0)" in text
    assert "calibrated on 3 episodes (4 samples) (training split)" in text
    assert load_model(cli.int8_path(out), TINY).samples_checked == 0


def test_quantize_refuses_an_empty_calibration(tmp_path: Path) -> None:
    fp32 = export_onnx(policy(), TINY, tmp_path / "model.onnx")
    empty = Samples(np.zeros((0, *TINY.image_shape), np.uint8),
                    np.zeros((0, TINY.action_history), np.int64), "none")
    with pytest.raises(ValueError, match="at least one observation"):
        quantize_int8(fp32, tmp_path / "int8.onnx", empty)


def test_speed_times_both_files(tmp_path: Path) -> None:
    samples = random_samples(TINY, 4)
    fp32 = export_onnx(policy(), TINY, tmp_path / "model.onnx")
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", samples)
    report = speed(fp32, int8, samples, seconds=0.0)
    assert report.runs >= 5
    assert report.threads == 1
    assert report.float_ms > 0
    assert report.int8_ms > 0


def test_the_speed_report_says_when_int8_does_not_pay() -> None:
    fast = SpeedReport(30.0, 10.0, 1, 50, ("avx512_vnni",))
    assert fast.speedup == 3.0
    assert len(fast.lines()) == 1
    assert "= 3.00x" in fast.lines()[0]
    slow = SpeedReport(1.0, 0.8, 1, 50, ("avx512_vnni",)).lines()
    assert f"not worth it on this CPU (1.25x < {GOAL_SPEEDUP}x)" in slow[1]
    assert "save too little" in slow[1]
    none = SpeedReport(1.0, 1.1, 1, 50, ()).lines()
    assert "int8 dot-product instructions: none" in none[0]
    assert "it has no int8 dot-product instructions" in none[1]


def test_int8_dot_flags_read_x86_and_arm_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n\n"
                   "processor\t: 1\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert int8_dot_flags(x86) == ("avx512_vnni",)
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\n")
    assert int8_dot_flags(arm) == ("asimddp", "i8mm")
    old = tmp_path / "old"
    old.write_text("flags\t\t: fpu sse4_2 avx2\n")
    assert int8_dot_flags(old) == ()
    assert int8_dot_flags(tmp_path / "missing") == ()


def test_session_options_are_the_runtimes() -> None:
    for threads in (0, 1, 2):  # 0: onnxruntime's choice (zima serve's default)
        options = session_options(threads)
        assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
        assert options.intra_op_num_threads == threads
        assert options.inter_op_num_threads == 1
        assert options.get_session_config_entry(SPINNING_KEY) == "0"
    with pytest.raises(ValueError, match="threads must be >= 0"):
        session_options(-1)



def test_int8_of_an_exported_model_without_its_checkpoint(
        checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`zima export MODEL.onnx --int8 --calibrate DIR` (the bundled model ships without its
    checkpoint): the copy beside it, verified, compared on the held-out episodes, timed."""
    episodes = write_episodes(tmp_path / "episodes")
    out = tmp_path / "model.onnx"
    assert cli.run(_args(str(checkpoint), "--out", str(out), "--samples", str(episodes))) == 0
    capsys.readouterr()
    assert cli.run(_args(str(out))) == 1
    assert "is an exported model: give --int8 --calibrate" in capsys.readouterr().err
    assert cli.run(_args(str(out), "--int8", "--calibrate", str(episodes))) == 0
    text = capsys.readouterr().out
    assert "the runtime accepts it" in text
    assert "calibrated on 3 episodes (10 samples) (training split)" in text
    assert "int8 vs float: argmax agreement" in text
    assert load_model(cli.int8_path(out), TINY).samples_checked == 4
    other = tmp_path / "elsewhere.onnx"
    assert cli.run(_args(str(out), "--int8", "--calibrate", str(episodes), "--out",
                         str(other))) == 0
    assert load_model(other, TINY).samples_checked == 4
    assert cli.run(_args(str(tmp_path / "missing.onnx"), "--int8", "--calibrate",
                         str(episodes))) == 1
    assert "missing.onnx" in capsys.readouterr().err
