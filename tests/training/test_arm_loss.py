"""The arm head's loss (issue 17, item 4): per jog dimension a cross-entropy, summed over the
dimensions; with bin weights, each dimension's weighted mean."""

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from zima.training.train import arm_loss


def test_the_arm_loss_is_each_dimensions_cross_entropy_summed() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 6, 5, generator=g)  # [B, chunk, D, L]
    target = torch.randint(0, 5, (3, 4, 6), generator=g)
    per_dim = [F.cross_entropy(logits[:, :, d].flatten(0, 1), target[:, :, d].flatten())
               for d in range(6)]
    assert torch.allclose(arm_loss(logits, target), torch.stack(per_dim).sum())
    assert torch.allclose(arm_loss(logits, target, torch.ones(6, 5)), arm_loss(logits, target))


def test_bin_weights_weigh_each_label_within_its_dimension() -> None:
    logits = torch.zeros(1, 2, 6, 5)
    logits[0, 0, :, 2] = 5.0  # step 0 confident in bin 2 (hold), step 1 uniform
    target = torch.full((1, 2, 6), 2)
    target[0, 1] = 4  # step 1's label: fast +
    weights = torch.ones(6, 5)
    weights[:, 4] = 3.0  # the rare bin weighs 3x
    ce = F.cross_entropy(logits[0, :, 0], target[0, :, 0], reduction="none")  # [2]
    want = 6 * (ce[0] * 1 + ce[1] * 3) / 4
    assert torch.allclose(arm_loss(logits, target, weights), want)
