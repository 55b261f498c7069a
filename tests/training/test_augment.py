"""Batch augmentation: shapes and dtype kept, seeded determinism, identity in eval."""

import pytest
import torch

from zima.training.augment import Augment, AugmentConfig

STRONG = AugmentConfig(blur_prob=1.0, barrel_prob=1.0, noise_std=8.0, shift_px=3)


def _batch(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, 4, 12, 16, 3), generator=g, dtype=torch.uint8)


def test_training_mode_keeps_shape_and_dtype_and_changes_pixels() -> None:
    images = _batch()
    out = Augment(STRONG, torch.Generator().manual_seed(1)).train()(images)
    assert out.dtype == torch.uint8
    assert out.shape == images.shape
    assert not torch.equal(out, images)


def test_eval_mode_and_disabled_config_apply_nothing() -> None:
    images = _batch()
    assert Augment(STRONG).eval()(images) is images
    assert Augment(AugmentConfig(enabled=False)).train()(images) is images


def test_same_generator_state_gives_the_same_batch() -> None:
    images = _batch()
    a = Augment(STRONG, torch.Generator().manual_seed(7)).train()(images)
    b = Augment(STRONG, torch.Generator().manual_seed(7)).train()(images)
    c = Augment(STRONG, torch.Generator().manual_seed(8)).train()(images)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_zero_strengths_are_the_identity() -> None:
    none = AugmentConfig(brightness=0, contrast=0, saturation=0, blur_prob=0, noise_std=0,
                         shift_px=0, barrel_prob=0)
    images = _batch()
    assert torch.equal(Augment(none).train()(images), images)


def test_frames_of_one_sample_share_their_parameters() -> None:
    # Four identical frames in a sample stay identical without per-pixel noise.
    frame = _batch()[:, :1].expand(3, 4, 12, 16, 3).contiguous()
    cfg = AugmentConfig(blur_prob=0.5, barrel_prob=0.5, noise_std=0.0)
    out = Augment(cfg, torch.Generator().manual_seed(3)).train()(frame)
    assert all(torch.equal(out[:, 0], out[:, k]) for k in range(1, 4))


def test_rejects_wrong_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Augment(STRONG).train()(torch.zeros(2, 1, 4, 4, 3))


def test_config_rejects_bad_strengths() -> None:
    with pytest.raises(ValueError, match="brightness"):
        AugmentConfig(brightness=1.5)
    with pytest.raises(ValueError, match="blur_prob"):
        AugmentConfig(blur_prob=2.0)


def test_history_dropout_replaces_whole_rows_in_training_mode_only() -> None:
    history = torch.full((400, 4), 1, dtype=torch.int64)  # [B, A]: all FORWARD
    augment = Augment(AugmentConfig(enabled=False, history_dropout=0.5),
                      torch.Generator().manual_seed(0))
    out = augment.train().history(history, n_actions=4)
    changed = (out != history).any(dim=1)  # [B]
    assert 0.3 < changed.float().mean().item() < 0.7  # about half the rows, p = 0.5
    assert out.min() >= 0
    assert out.max() < 4
    kept = ~changed
    assert torch.equal(out[kept], history[kept])
    assert torch.equal(augment.eval().history(history, n_actions=4), history)
    none = Augment(AugmentConfig(history_dropout=0.0)).train()
    assert torch.equal(none.history(history, n_actions=4), history)
