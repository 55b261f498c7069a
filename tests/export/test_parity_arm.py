"""Export parity of a policy with an arm head (issue 17, item 4): arm_state fed to both
PyTorch and onnxruntime, the arm logits compared too, each jog dimension's argmax apart."""

from pathlib import Path

import numpy as np
import pytest

from zima.contract import PICK
from zima.export.onnx_export import export_onnx
from zima.export.parity import ParityError, check_parity, compare, random_samples
from zima.training.models import Policy, PolicyConfig


def test_an_arm_policy_exports_with_parity(tmp_path: Path) -> None:
    model = Policy(PICK, PolicyConfig(backbone="small", hidden_dim=16)).eval()
    path = export_onnx(model, PICK, tmp_path / "arm.onnx")
    samples = random_samples(PICK, 4)
    assert samples.arm_state is not None
    assert samples.arm_state.shape == (4, 6)
    report = check_parity(model, path, samples)
    assert report.max_abs_diff < 1e-3
    assert report.agreement == 1.0


def test_compare_takes_each_blocks_argmax_apart() -> None:
    """Drive logits (4) then two arm dimensions of 5 bins: a change that moves only one arm
    dimension's argmax is one disagreement of three blocks."""
    ref = np.zeros((1, 1, 4 + 2 * 5), np.float32)
    ref[0, 0, [0, 4 + 2, 9 + 2]] = 1.0  # drive 0, arm dims at bin 2
    other = ref.copy()
    other[0, 0, 9 + 2], other[0, 0, 9 + 4] = 0.0, 1.0  # the second arm dim now at bin 4
    report = compare(ref, other, n_actions=4, n_arm_levels=5)
    assert report.agreement == pytest.approx(2 / 3)
    with pytest.raises(ParityError):
        report.check()
