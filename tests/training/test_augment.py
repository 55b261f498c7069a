"""Batch augmentation: shapes and dtype kept, seeded determinism, identity in eval."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from zima.sim.effects import barrel_maps
from zima.training.augment import Augment, AugmentConfig, barrel_grid

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


def test_barrel_is_the_simulators_lens() -> None:
    # One lens model: augmentation's grid samples where sim.effects.barrel_maps does.
    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    expected = cv2.remap(image, *barrel_maps(24, 32, 0.3), interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()  # [1, 3, H, W]
    grid = barrel_grid(24, 32, torch.tensor([0.3, 0.0]))  # [2, H, W, 2]
    out = F.grid_sample(x.expand(2, -1, -1, -1), grid, mode="bilinear",
                        padding_mode="border", align_corners=False)
    warped = out[0].permute(1, 2, 0).numpy()
    assert np.abs(warped - expected).max() < 0.6  # cv2's fixed-point weights round
    assert np.abs(warped - image).mean() > 5  # it does distort
    assert torch.allclose(out[1], x[0], atol=1e-3)  # k1 = 0: untouched


def test_whole_pixel_shifts_are_grid_samples_border_padded_shift() -> None:
    # The fast path (crops of a padded batch) moves the view as grid_sample does.
    images = _batch(2)
    only_shift = AugmentConfig(brightness=0, contrast=0, saturation=0, blur_prob=0,
                               noise_std=0, shift_px=3)
    out = Augment(only_shift, torch.Generator().manual_seed(5)).train()(images)
    g = torch.Generator().manual_seed(5)  # the same draws: barrel k, its coin, the shift
    torch.rand(3, generator=g)
    torch.rand(3, generator=g)
    shift = torch.randint(-3, 4, (3, 2), generator=g).float()
    assert shift.abs().sum() > 0
    x = images.reshape(12, 12, 16, 3).permute(0, 3, 1, 2).float()
    step = shift * torch.tensor([2 / 16, 2 / 12])  # pixels -> grid units
    grid = barrel_grid(12, 16, torch.zeros(3)) + step[:, None, None]
    expected = F.grid_sample(x, grid.repeat_interleave(4, dim=0), mode="bilinear",
                             padding_mode="border", align_corners=False)
    expected = expected.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    assert torch.equal(out.reshape(12, 12, 16, 3), expected)


def test_colour_is_brightness_then_contrast_then_saturation() -> None:
    images = _batch(3)
    colour = AugmentConfig(blur_prob=0, noise_std=0, shift_px=0)
    out = Augment(colour, torch.Generator().manual_seed(9)).train()(images)
    g = torch.Generator().manual_seed(9)
    bright, contrast, sat = (0.75 + 0.5 * torch.rand(3, generator=g) for _ in range(3))
    x = images.reshape(12, 12, 16, 3).permute(0, 3, 1, 2).float()

    def each(v: torch.Tensor) -> torch.Tensor:
        return v.repeat_interleave(4)[:, None, None, None]

    x = x * each(bright)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * each(contrast) + mean
    grey = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
    x = (x - grey) * each(sat) + grey
    expected = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(out.shape)
    assert (out.int() - expected.int()).abs().max() <= 1  # float order; rounding at .5
    assert not torch.equal(out, images)
