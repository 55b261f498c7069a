"""Training-time image augmentation on whole batches of the policy's uint8 input.

The prototype's lesson: a policy trained on clean frames fails on the real camera's
blur, colour cast, lens distortion and sensor noise, so training shows it all of them.
Everything runs on the batch tensor (B = batch, N = images of one observation)::

    images uint8 [B, N, H, W, 3] -> float [B*N, 3, H, W]
      -> geometry (shift/crop, optional barrel distortion: one grid_sample)
      -> colour (brightness, contrast, saturation) -> blur -> noise -> uint8 [B, N, H, W, 3]

The random parameters are drawn per sample and shared by its N images, so the frames
of one observation stay consistent with each other (motion between them is signal).
Noise alone is drawn per pixel. :class:`Augment` is an ``nn.Module`` only for its
train/eval switch: in eval mode it returns its input untouched.

The camera effects a simulated frame already has when it is recorded (the robot's own
motion blur, exposure and white-balance drift, MJPEG, the sensor's crop and fit) live in
:mod:`zima.sim.effects`, and real frames have them from the camera; they are not repeated
here. The lens is shared: the barrel distortion is :func:`zima.sim.effects.barrel_maps`,
applied with ``grid_sample``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import Tensor, nn

from zima.sim.effects import barrel_maps


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """Which augmentations run in training, and how strong they are."""

    # Master switch: False trains on the frames as recorded.
    enabled: bool = True
    # Brightness factor drawn from [1 - b, 1 + b] (exposure differences).
    brightness: float = 0.25
    # Contrast factor drawn from [1 - c, 1 + c] around each image's mean.
    contrast: float = 0.25
    # Saturation factor drawn from [1 - s, 1 + s] (white balance, cheap sensors).
    saturation: float = 0.25
    # Probability that a sample is blurred (motion, focus).
    blur_prob: float = 0.3
    # Largest Gaussian blur sigma, pixels (sigma drawn from [0.3, max]).
    blur_sigma_max: float = 1.2
    # Standard deviation of additive Gaussian pixel noise, in 0..255 units (drawn up to it).
    noise_std: float = 4.0
    # Largest shift of the view in each direction, pixels (camera mounting tolerance).
    shift_px: int = 4
    # Probability of a barrel (fisheye-like) distortion of a sample.
    barrel_prob: float = 0.0
    # Largest barrel coefficient k1, drawn from [0, max]: the simulator's lens model
    # (zima.sim.effects.barrel_maps: radius normalised to the half diagonal, corners fixed).
    barrel_strength: float = 0.15
    # Probability that a sample's action history is replaced by random actions. Runs of
    # one action are long, so "repeat the last action" scores well on the labels and a
    # policy that learns it ignores its cameras (it spun in place forever in closed
    # loop); unreliable history forces it to look. Applies even when enabled is False.
    history_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("blur_prob", "barrel_prob", "history_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("blur_sigma_max", "noise_std", "barrel_strength", "shift_px"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> Tensor:
    """[n] float32 uniform in [low, high)."""
    return low + (high - low) * torch.rand(n, generator=g)


def barrel_grid(height: int, width: int, k1: Tensor) -> Tensor:
    """``grid_sample`` coordinates (align_corners=False) [B, H, W, 2] (x, y) of the barrel
    distortion :func:`~zima.sim.effects.barrel_maps` with coefficient ``k1[b]`` [B] (0 is
    the identity): the same lens as the simulator's, not a second model of it."""
    made: dict[float, np.ndarray] = {}  # most samples share k1 = 0 (no barrel)
    for k in k1.tolist():
        if k not in made:
            map_x, map_y = barrel_maps(height, width, k)  # [H, W] pixel coordinates each
            made[k] = np.stack([(2 * map_x + 1) / width - 1, (2 * map_y + 1) / height - 1], -1)
    return torch.from_numpy(np.stack([made[k] for k in k1.tolist()])).float()


def _shift(x: Tensor, shift: Tensor, n: int, pad: int) -> Tensor:
    """x [M, 3, H, W] moved by whole pixels, ``shift`` [B, 2] (x, y) shared by each
    sample's ``n`` images: ``out(u, v) = x(u + dx, v + dy)``, the border repeated beyond
    the edge (what ``grid_sample`` with border padding gives at whole pixels)."""
    h, w = x.shape[2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return torch.cat([padded[i * n:(i + 1) * n, :, pad + dy:pad + dy + h, pad + dx:pad + dx + w]
                      for i, (dx, dy) in enumerate(shift.tolist())])


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable Gaussian blur of x [M, 3, H, W] with per-image sigma [M] (pixels)."""
    m = x.shape[0]
    radius = max(1, math.ceil(2.0 * float(sigma.max())))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)  # [K]
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)  # [M, K]
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(3, dim=0)  # [M*3, K]: one kernel per channel
    y = x.reshape(1, m * 3, *x.shape[2:])  # [1, M*3, H, W]: every channel its own group
    y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, kernel[:, None, None, :], groups=m * 3)  # horizontal
    y = F.conv2d(y, kernel[:, None, :, None], groups=m * 3)  # vertical
    return y.reshape_as(x)


class Augment(nn.Module):
    """Random augmentation of uint8 [B, N, H, W, 3] batches in train mode; identity in eval.

    Deterministic given ``generator``'s state: the training loop seeds it per epoch.
    """

    def __init__(self, config: AugmentConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.generator = generator if generator is not None else torch.Generator()

    def history(self, action_history: Tensor, n_actions: int) -> Tensor:
        """action_history int64 [B, A] with each sample's row replaced by random actions
        with probability ``history_dropout`` (train mode only)."""
        p = self.config.history_dropout
        if not self.training or p <= 0:
            return action_history
        g = self.generator
        b, a = action_history.shape
        drop = torch.rand(b, generator=g) < p  # [B]
        noise = torch.randint(0, n_actions, (b, a), generator=g)  # [B, A]
        return torch.where(drop[:, None], noise, action_history)

    def forward(self, images: Tensor) -> Tensor:
        if not self.training or not self.config.enabled:
            return images
        if images.dtype != torch.uint8 or images.ndim != 5 or images.shape[-1] != 3:
            raise ValueError(f"augment expects uint8 [B, N, H, W, 3], got {images.dtype} "
                             f"{list(images.shape)}")
        cfg, g = self.config, self.generator
        b, n, h, w, _ = images.shape

        def per_image(v: Tensor) -> Tensor:  # [B] per sample -> [M, 1, 1, 1], shared by N
            return v.repeat_interleave(n)[:, None, None, None]

        # Geometry: one shift (plus, drawn with it, an optional barrel distortion) per sample.
        x = images.reshape(b * n, h, w, 3).permute(0, 3, 1, 2).float()  # [M, 3, H, W] 0..255
        if cfg.shift_px > 0 or cfg.barrel_prob > 0:
            k = _uniform(b, 0.0, cfg.barrel_strength, g)
            k = k * (torch.rand(b, generator=g) < cfg.barrel_prob)
            shift = torch.randint(-cfg.shift_px, cfg.shift_px + 1, (b, 2), generator=g)
            if bool((k > 0).any()):  # a lens: one bilinear grid_sample of everything
                step = shift.float() * torch.tensor([2.0 / w, 2.0 / h])  # pixels -> grid
                grid = barrel_grid(h, w, k) + step[:, None, None, :]  # [B, H, W, 2] (x, y)
                x = F.grid_sample(x, grid.repeat_interleave(n, dim=0), mode="bilinear",
                                  padding_mode="border", align_corners=False)
            else:  # whole-pixel shifts alone: crops of the border-padded batch (as exact)
                x = _shift(x, shift, n, cfg.shift_px)
        # Colour: brightness, then contrast about the image's mean, then saturation about
        # each pixel's grey; all linear, so one 3x3 matrix and offset per image.
        bright = _uniform(b, 1 - cfg.brightness, 1 + cfg.brightness, g).repeat_interleave(n)
        contrast = _uniform(b, 1 - cfg.contrast, 1 + cfg.contrast, g).repeat_interleave(n)
        sat = _uniform(b, 1 - cfg.saturation, 1 + cfg.saturation, g).repeat_interleave(n)
        grey = torch.tensor([0.299, 0.587, 0.114])  # [3] luma weights, summing to 1
        cb = contrast * bright  # [M]
        matrix = ((sat * cb)[:, None, None] * torch.eye(3)
                  + (cb * (1 - sat))[:, None, None] * grey[None, None, :])  # [M, 3, 3]
        offset = (1 - contrast) * bright * x.mean(dim=(1, 2, 3))  # [M]
        x = torch.baddbmm(offset[:, None, None].expand(-1, 3, h * w), matrix,
                          x.reshape(b * n, 3, h * w)).reshape(b * n, 3, h, w)
        # Blur: every sample draws a sigma; only the chosen ones are blurred.
        if cfg.blur_prob > 0 and cfg.blur_sigma_max > 0:
            sigma = _uniform(b, 0.3, max(0.3, cfg.blur_sigma_max), g).repeat_interleave(n)
            chosen = (torch.rand(b, generator=g) < cfg.blur_prob).repeat_interleave(n)  # [M]
            if bool(chosen.any()):
                x[chosen] = _gaussian_blur(x[chosen], sigma[chosen])
        # Noise, its strength drawn per sample.
        if cfg.noise_std > 0:
            std = per_image(_uniform(b, 0.0, cfg.noise_std, g))
            x = x + std * torch.randn(x.shape, generator=g)
        out = x.round().clamp(0, 255).to(torch.uint8)  # [M, 3, H, W]
        return out.permute(0, 2, 3, 1).reshape(b, n, h, w, 3)
