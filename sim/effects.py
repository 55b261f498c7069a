"""Camera image effects on rendered frames: motion blur, barrel distortion, colour, noise.

Real cameras blur, distort and differ in colour from the renderer (ARCHITECTURE.md,
"lessons"). Each effect is switched on or off per episode with its own probability and
its strength is drawn once per episode (a camera does not change mid-run); only the
sensor noise is drawn per frame. Everything comes from the numpy ``Generator`` handed
in, so a seed gives the same images. Order: blur (optics and motion), distortion
(lens), colour (white balance, exposure), noise (sensor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class EffectsConfig:
    """Per-episode probabilities and strength ranges of the image effects."""

    # Probability that an episode has each effect (0 switches it off).
    p_blur: float = 0.4
    p_fisheye: float = 0.3
    p_colour: float = 0.6
    p_noise: float = 0.5
    # Motion blur: length of the line kernel, pixels, at a random angle.
    blur_px: tuple[int, int] = (2, 6)
    # Barrel distortion k1 (radius normalised to the half diagonal; 0 is a pinhole).
    fisheye_k1: tuple[float, float] = (0.05, 0.35)
    # Colour: per-channel gain and offset (grey levels).
    colour_gain: tuple[float, float] = (0.8, 1.2)
    colour_offset: tuple[float, float] = (-15.0, 15.0)
    # Gaussian sensor noise, standard deviation in grey levels.
    noise_sigma: tuple[float, float] = (2.0, 8.0)

    @classmethod
    def off(cls) -> EffectsConfig:
        """No effect ever: frames as rendered."""
        return replace(cls(), p_blur=0.0, p_fisheye=0.0, p_colour=0.0, p_noise=0.0)

    @classmethod
    def always(cls) -> EffectsConfig:
        """Every effect in every episode (tests, previews)."""
        return replace(cls(), p_blur=1.0, p_fisheye=1.0, p_colour=1.0, p_noise=1.0)


def motion_blur_kernel(length_px: int, angle_rad: float) -> np.ndarray:
    """A normalised line kernel [k, k] (k = odd size >= length_px), float32."""
    k = length_px | 1
    kernel = np.zeros((k, k), np.float32)
    c, dx, dy = k // 2, math.cos(angle_rad), math.sin(angle_rad)
    for t in np.linspace(-(length_px - 1) / 2, (length_px - 1) / 2, 4 * length_px):
        kernel[round(c + t * dy), round(c + t * dx)] = 1.0
    kernel /= kernel.sum()
    return kernel


def barrel_maps(height: int, width: int, k1: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps [H, W] float32 of a barrel distortion whose corners stay corners."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)  # [H, W] each
    cx, cy = (width - 1) / 2, (height - 1) / 2
    half_diag = math.hypot(cx, cy)
    x, y = (u - cx) / half_diag, (v - cy) / half_diag
    scale = (1 + k1 * (x * x + y * y)) / (1 + k1)  # the centre shrinks, corners fixed
    return (cx + x * scale * half_diag).astype(np.float32), (
        cy + y * scale * half_diag).astype(np.float32)


class ImageEffects:
    """The effects of one camera for one episode; :meth:`reset` draws a new episode."""

    def __init__(self, cfg: EffectsConfig, height: int, width: int) -> None:
        self.cfg, self.height, self.width = cfg, height, width
        self.blur: np.ndarray | None = None  # [k, k] kernel
        self.maps: tuple[np.ndarray, np.ndarray] | None = None  # remap [H, W] x2
        self.gain_offset: tuple[np.ndarray, np.ndarray] | None = None  # [3], [3]
        self.noise_sigma = 0.0

    def reset(self, rng: np.random.Generator) -> None:
        """Draw which effects this episode has and how strong (always the same draws)."""
        cfg = self.cfg
        on = rng.uniform(size=4) < (cfg.p_blur, cfg.p_fisheye, cfg.p_colour, cfg.p_noise)
        length = int(rng.integers(cfg.blur_px[0], cfg.blur_px[1] + 1))
        angle = float(rng.uniform(0, math.pi))
        k1 = float(rng.uniform(*cfg.fisheye_k1))
        gain, offset = rng.uniform(*cfg.colour_gain, 3), rng.uniform(*cfg.colour_offset, 3)
        sigma = float(rng.uniform(*cfg.noise_sigma))
        self.blur = motion_blur_kernel(length, angle) if on[0] and length > 1 else None
        self.maps = barrel_maps(self.height, self.width, k1) if on[1] else None
        self.gain_offset = (gain.astype(np.float32), offset.astype(np.float32)) if on[2] else None
        self.noise_sigma = sigma if on[3] else 0.0

    @property
    def active(self) -> dict[str, bool]:
        """Which effects this episode has, by name."""
        return {"blur": self.blur is not None, "fisheye": self.maps is not None,
                "colour": self.gain_offset is not None, "noise": self.noise_sigma > 0}

    def apply(self, frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The frame [H, W, 3] uint8 as this episode's camera would see it: [H, W, 3] uint8."""
        out = frame
        if self.blur is not None:
            out = cv2.filter2D(out, -1, self.blur, borderType=cv2.BORDER_REFLECT)
        if self.maps is not None:
            out = cv2.remap(out, *self.maps, interpolation=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        if self.gain_offset is None and self.noise_sigma == 0:
            return np.ascontiguousarray(out)
        img = out.astype(np.float32)  # [H, W, 3]
        if self.gain_offset is not None:
            img = img * self.gain_offset[0] + self.gain_offset[1]
        if self.noise_sigma > 0:
            img += rng.normal(0.0, self.noise_sigma, img.shape).astype(np.float32)
        result: np.ndarray = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        return result
