"""What the robot's real cameras do to a frame, applied to rendered ones.

Real cameras blur, drift and differ from the renderer (ARCHITECTURE.md, "lessons"). The
simulator's collection, evaluation and ``zima sim run`` all render through
:class:`ImageEffects`, and training's augmentation borrows its lens model
(:func:`barrel_maps`): one implementation of each effect. In a real camera's order::

    rendered [h, w, 3]   the whole sensor's view at its aspect (render_size)
      -> motion blur     the robot's own turning (horizontal smear) and driving (a smear
                         away from the heading: downward for a camera tilted down) at the
                         moment of capture, over this episode's exposure time
      -> lens            barrel distortion
      -> colour          the camera's gain and offset, times a smooth exposure and
                         white-balance drift over the episode's time
      -> sensor noise    Gaussian, fresh every frame
      -> MJPEG           JPEG encode and decode at this episode's quality (the USB stream),
                         on the real sensor's 640x480 so that its 8x8 blocks have their scale
      -> runtime path    the runtime's own centre_crop and fit_image -> [H, W, 3] contract size

Which effects an episode has and how strong (exposure time, JPEG quality, drift) is drawn
once per episode and camera in :meth:`ImageEffects.reset`; only the noise is drawn per
frame. The drift is a function of the episode's time, not of how many frames were
rendered. Everything comes from the numpy ``Generator`` handed in: a seed gives the same
images. No MuJoCo here: training imports this module without the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import cv2
import numpy as np

from zima.onboard.camera import centre_crop
from zima.onboard.camera_config import CameraConfig
from zima.onboard.fusion import fit_image

_CAMERA = CameraConfig()  # the runtime's camera defaults: capture size and crop
DEFAULT_FOVY_DEG = 58.0  # a webcam's vertical field of view (the simulated forward camera's)
MIN_BLUR_PX = 0.1  # a smear shorter than this is no blur: the frame is left as it is
MAX_BLUR_SAMPLES = 32  # views averaged over one exposure (one per pixel of smear, at most)
DRIFT_COMPONENTS = 3  # sinusoids summed per drifting quantity


@dataclass(frozen=True, slots=True)
class EffectsConfig:
    """Per-episode probabilities and strength ranges of the camera effects."""

    # Probability that an episode has each effect (0 switches it off).
    p_motion_blur: float = 1.0  # every camera exposes for a while; exposure_ms says how long
    p_fisheye: float = 0.3  # some webcam lenses are wide and barrel-shaped
    p_colour: float = 0.6  # cameras differ from the renderer in gain and black level
    p_drift: float = 0.7  # auto exposure and white balance hunt as the view changes
    p_noise: float = 0.5  # cheap sensors are noisy, more so in dim rooms
    p_jpeg: float = 0.8  # USB cameras stream MJPEG; some run raw (YUYV)
    # Exposure time, ms, log-uniform: a bright room to a 30 fps camera's whole frame period.
    exposure_ms: tuple[float, float] = (4.0, 33.0)
    # Distance of the scene for driving's smear (no depth is rendered), m: furniture ahead.
    scene_depth_m: float = 1.0
    # Barrel distortion k1 (radius normalised to the half diagonal; 0 is a pinhole).
    fisheye_k1: tuple[float, float] = (0.05, 0.35)
    # Per-channel gain and offset (grey levels) for the whole episode: a camera's colour.
    colour_gain: tuple[float, float] = (0.8, 1.2)
    colour_offset: tuple[float, float] = (-15.0, 15.0)
    # Drift amplitude of exposure, stops: brightness within x 2**(+-a) over the episode.
    exposure_drift_stops: tuple[float, float] = (0.1, 0.5)
    # Drift amplitude of the red and blue gains relative to green: within x (1 +- a).
    white_balance_drift: tuple[float, float] = (0.02, 0.1)
    # Periods of the drift's sinusoids, s: auto exposure settles in seconds, a room in tens.
    drift_period_s: tuple[float, float] = (3.0, 20.0)
    # Gaussian sensor noise, standard deviation in grey levels, fresh every frame.
    noise_sigma: tuple[float, float] = (2.0, 8.0)
    # MJPEG quality (OpenCV's 1..100) per episode: camera models and USB bandwidth differ.
    jpeg_quality: tuple[int, int] = (40, 95)
    # The real sensor's (height, width), CameraConfig's capture size, where JPEG runs; None:
    # JPEG at the rendered size (cheaper; its blocks then 5x coarser than a real camera's).
    sensor_hw: tuple[int, int] | None = (_CAMERA.height_px, _CAMERA.width_px)
    # The runtime's centre crop of the sensor (CameraConfig.crop); renders show the whole sensor.
    sensor_crop: float = _CAMERA.crop

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
                raise ValueError(f"effects.{f.name} must be in [0, 1], got {value}")
            if isinstance(value, tuple) and f.name != "sensor_hw" and not value[0] <= value[1]:
                raise ValueError(f"effects.{f.name} must be (low, high), got {value}")
        if self.exposure_ms[0] <= 0 or self.drift_period_s[0] <= 0:
            raise ValueError("effects: exposure_ms and drift_period_s must be positive")
        if not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"effects.jpeg_quality must lie in 1..100, got {self.jpeg_quality}")
        if self.scene_depth_m <= 0 or not 0 < self.sensor_crop <= 1:
            raise ValueError("effects: scene_depth_m must be > 0 and sensor_crop in (0, 1]")
        if self.sensor_hw is not None and min(self.sensor_hw) < 1:
            raise ValueError(f"effects.sensor_hw must be positive, got {self.sensor_hw}")

    @classmethod
    def off(cls) -> EffectsConfig:
        """No effect ever: frames as rendered."""
        return replace(cls(), p_motion_blur=0.0, p_fisheye=0.0, p_colour=0.0, p_drift=0.0,
                       p_noise=0.0, p_jpeg=0.0, sensor_hw=None)

    @classmethod
    def always(cls) -> EffectsConfig:
        """Every effect in every episode (tests, previews)."""
        return replace(cls(), p_motion_blur=1.0, p_fisheye=1.0, p_colour=1.0, p_drift=1.0,
                       p_noise=1.0, p_jpeg=1.0)


@dataclass(frozen=True, slots=True)
class CameraMotion:
    """The camera's velocity while a frame is exposed, in the camera's own frame: x right,
    y down, z along the view (what the robot's turning and driving do to the camera)."""

    angular_rad_s: tuple[float, float, float] = (0.0, 0.0, 0.0)
    linear_m_s: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @classmethod
    def of_body(cls, yaw_rate_rad_s: float, forward_m_s: float,
                pitch_down_rad: float = 0.0) -> CameraMotion:
        """A camera on the robot's turning axis looking ahead, tilted down by
        ``pitch_down_rad``, while the robot turns (left positive) and drives."""
        s, c = math.sin(pitch_down_rad), math.cos(pitch_down_rad)
        up, ahead = (0.0, -c, -s), (0.0, -s, c)  # world up and the heading, camera frame
        return cls((yaw_rate_rad_s * up[0], yaw_rate_rad_s * up[1], yaw_rate_rad_s * up[2]),
                   (forward_m_s * ahead[0], forward_m_s * ahead[1], forward_m_s * ahead[2]))

    @classmethod
    def from_mujoco(cls, velocity: np.ndarray) -> CameraMotion:
        """From ``mj_objectVelocity(..., mjOBJ_CAMERA, id, res, flg_local=1)``: [6] (rotation,
        translation) in MuJoCo's camera frame, which looks along -z with y up."""
        wx, wy, wz, vx, vy, vz = (float(x) for x in velocity[:6])
        return cls((wx, -wy, -wz), (vx, -vy, -vz))  # a half turn about x: y down, z ahead


AT_REST = CameraMotion()


def motion_flow(u: np.ndarray, v: np.ndarray, focal_px: float, motion: CameraMotion,
                depth_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Image velocity, px/s, of the pixels at (u, v) px from the image centre (right, down):
    ([H, W], [H, W]) float32. Rotation moves the image regardless of depth; translation as
    if the whole scene were ``depth_m`` away (the classic motion field equations)."""
    (wx, wy, wz), (tx, ty, tz) = motion.angular_rad_s, motion.linear_m_s
    f = focal_px
    du = (u * tz - f * tx) / depth_m + wx * u * v / f - wy * (f + u * u / f) + wz * v
    dv = (v * tz - f * ty) / depth_m + wx * (f + v * v / f) - wy * u * v / f - wz * u
    return du.astype(np.float32), dv.astype(np.float32)


def motion_blur(image: np.ndarray, smear_u: np.ndarray, smear_v: np.ndarray) -> np.ndarray:
    """The [H, W, 3] uint8 image averaged over an exposure in which the pixel at (x, y)
    travels ``(smear_u, smear_v)[y, x]`` px, centred on the moment of capture."""
    length_px = float(np.sqrt(smear_u * smear_u + smear_v * smear_v).max())
    if length_px < MIN_BLUR_PX:
        return image
    h, w = image.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)  # [H, W] each
    n = min(MAX_BLUR_SAMPLES, math.ceil(length_px) + 1)  # samples about 1 px apart
    total = np.zeros(image.shape, np.float32)
    for t in np.linspace(-0.5, 0.5, n, dtype=np.float32):
        total += cv2.remap(image, x - t * smear_u, y - t * smear_v, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    blurred: np.ndarray = np.clip(total / n + 0.5, 0, 255).astype(np.uint8)
    return blurred


def barrel_maps(height: int, width: int, k1: float) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps [H, W] float32 of a barrel distortion whose corners stay corners."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)  # [H, W] each
    cx, cy = (width - 1) / 2, (height - 1) / 2
    half_diag = math.hypot(cx, cy)
    x, y = (u - cx) / half_diag, (v - cy) / half_diag
    scale = (1 + k1 * (x * x + y * y)) / (1 + k1)  # the centre shrinks, corners fixed
    return (cx + x * scale * half_diag).astype(np.float32), (
        cy + y * scale * half_diag).astype(np.float32)


def jpeg_roundtrip(image_rgb: np.ndarray, quality: int) -> np.ndarray:
    """The [H, W, 3] uint8 RGB image after a camera's JPEG encoding at ``quality`` (1..100)
    and OpenCV's decoding, as the runtime receives an MJPEG frame: [H, W, 3] uint8 BGR."""
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)  # a camera encodes its true colours
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a frame")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("OpenCV could not decode its own JPEG")
    return np.asarray(decoded, np.uint8)


def runtime_fit(image_bgr: np.ndarray, crop: float, height: int, width: int) -> np.ndarray:
    """What the runtime's camera makes of a decoded frame (``Camera._stream``): centre crop,
    RGB, ``fit_image`` to the contract size. [h, w, 3] uint8 BGR -> [height, width, 3] RGB."""
    rgb = cv2.cvtColor(centre_crop(image_bgr, crop), cv2.COLOR_BGR2RGB)
    return fit_image(rgb, height, width)


def render_size(cfg: EffectsConfig, height: int, width: int) -> tuple[int, int]:
    """(height, width) to render at: the sensor's aspect, just large enough that the crop and
    fit to ``height x width`` never enlarge (the contract's size when the aspects agree)."""
    sh, sw = cfg.sensor_hw or (height, width)
    scale = max(height / sh, width / sw) / cfg.sensor_crop
    return max(1, math.ceil(sh * scale - 1e-6)), max(1, math.ceil(sw * scale - 1e-6))


class ImageEffects:
    """The effects of one camera for one episode; :meth:`reset` draws a new episode.

    ``height x width`` is the size :meth:`apply` returns (the contract's); it takes frames
    of :attr:`render_hw`.
    """

    def __init__(self, cfg: EffectsConfig, height: int, width: int) -> None:
        self.cfg, self.height, self.width = cfg, height, width
        self.render_hw = render_size(cfg, height, width)
        rh, rw = self.render_hw
        v, u = np.mgrid[0:rh, 0:rw].astype(np.float32)  # [h, w] each
        self._uv = (u - (rw - 1) / 2, v - (rh - 1) / 2)  # pixels from the centre
        self.focal_px = rh / 2 / math.tan(math.radians(DEFAULT_FOVY_DEG) / 2)
        self.exposure_s = 0.0  # 0: no motion blur
        self.maps: tuple[np.ndarray, np.ndarray] | None = None  # remap [h, w] x2
        self.gain_offset: tuple[np.ndarray, np.ndarray] | None = None  # [3], [3]
        self.drift: np.ndarray | None = None  # [3 quantities, DRIFT_COMPONENTS, 3]
        self.drift_amplitude = np.zeros(3)  # exposure (stops), red, blue (fractions)
        self.noise_sigma = 0.0
        self.jpeg_quality = 0  # 0: no JPEG

    def reset(self, rng: np.random.Generator, fovy_deg: float = DEFAULT_FOVY_DEG) -> None:
        """Draw which effects this episode has and how strong (always the same draws);
        ``fovy_deg`` is the rendering camera's vertical field of view this episode."""
        cfg = self.cfg
        on = rng.uniform(size=6) < (cfg.p_motion_blur, cfg.p_fisheye, cfg.p_colour,
                                    cfg.p_drift, cfg.p_noise, cfg.p_jpeg)
        log_ms = rng.uniform(math.log(cfg.exposure_ms[0]), math.log(cfg.exposure_ms[1]))
        k1 = float(rng.uniform(*cfg.fisheye_k1))
        gain, offset = rng.uniform(*cfg.colour_gain, 3), rng.uniform(*cfg.colour_offset, 3)
        amplitude = np.array([rng.uniform(*cfg.exposure_drift_stops),
                              *rng.uniform(*cfg.white_balance_drift, 2)])
        weights = rng.dirichlet(np.ones(DRIFT_COMPONENTS), 3)  # [3, K], rows sum to 1
        periods = rng.uniform(*cfg.drift_period_s, (3, DRIFT_COMPONENTS))
        phases = rng.uniform(0, 2 * math.pi, (3, DRIFT_COMPONENTS))
        sigma = float(rng.uniform(*cfg.noise_sigma))
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        self.focal_px = self.render_hw[0] / 2 / math.tan(math.radians(fovy_deg) / 2)
        self.exposure_s = math.exp(log_ms) / 1000 if on[0] else 0.0
        self.maps = barrel_maps(*self.render_hw, k1) if on[1] else None
        self.gain_offset = (gain.astype(np.float32), offset.astype(np.float32)) if on[2] else None
        self.drift = np.stack([weights, periods, phases], axis=-1) if on[3] else None
        self.drift_amplitude = amplitude if on[3] else np.zeros(3)
        self.noise_sigma = sigma if on[4] else 0.0
        self.jpeg_quality = quality if on[5] else 0

    @property
    def active(self) -> dict[str, bool]:
        """Which effects this episode has, by name."""
        return {"motion_blur": self.exposure_s > 0, "fisheye": self.maps is not None,
                "colour": self.gain_offset is not None, "drift": self.drift is not None,
                "noise": self.noise_sigma > 0, "jpeg": self.jpeg_quality > 0}

    def smear(self, motion: CameraMotion) -> tuple[np.ndarray, np.ndarray]:
        """How far each rendered pixel travels during this episode's exposure while the
        camera moves with ``motion``, px: ([h, w], [h, w]) right and down."""
        du, dv = motion_flow(*self._uv, self.focal_px, motion, self.cfg.scene_depth_m)
        return du * self.exposure_s, dv * self.exposure_s

    def blur_px(self, motion: CameraMotion) -> float:
        """The longest smear in the rendered frame, px (0 at rest or without motion blur)."""
        su, sv = self.smear(motion)
        return float(np.sqrt(su * su + sv * sv).max())

    def drift_gains(self, time_s: float) -> np.ndarray:
        """The drift's per-channel (R, G, B) gain at ``time_s`` into the episode: [3].
        Smooth and bounded: exposure within 2**(+-a) and red, blue within 1 +- a."""
        if self.drift is None:
            return np.ones(3, np.float32)
        weights, periods, phases = np.moveaxis(self.drift, -1, 0)  # [3, K] each
        wave = (weights * np.sin(2 * math.pi * time_s / periods + phases)).sum(axis=1)  # [3]
        exposure, red, blue = (float(x) for x in wave * self.drift_amplitude)  # in [-a, a]
        return np.array([1 + red, 1.0, 1 + blue], np.float32) * np.float32(2.0**exposure)

    def apply(self, frame: np.ndarray, rng: np.random.Generator,
              motion: CameraMotion = AT_REST, time_s: float = 0.0) -> np.ndarray:
        """The rendered frame [h, w, 3] uint8 (``render_hw``) as this episode's camera would
        deliver it to the runtime, captured ``time_s`` into the episode while the camera
        moves with ``motion``: [height, width, 3] uint8 RGB."""
        out = frame
        if self.exposure_s > 0:
            out = motion_blur(out, *self.smear(motion))
        if self.maps is not None:
            out = cv2.remap(out, *self.maps, interpolation=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT)
        if self.gain_offset is not None or self.drift is not None or self.noise_sigma > 0:
            gain, offset = self.gain_offset or (np.ones(3, np.float32), np.zeros(3, np.float32))
            img = out.astype(np.float32) * (gain * self.drift_gains(time_s)) + offset
            if self.noise_sigma > 0:
                img += self.noise_sigma * rng.standard_normal(img.shape, np.float32)
            out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        if self.jpeg_quality:
            # At the sensor's size, each rendered pixel covering the sensor pixels it stands
            # for, so that JPEG's 8x8 blocks have their real scale. Without JPEG that trip
            # (nearest up, fit_image's area average down) would give the render back: skipped.
            sh, sw = self.cfg.sensor_hw or out.shape[:2]
            if out.shape[:2] != (sh, sw):
                out = cv2.resize(out, (sw, sh), interpolation=cv2.INTER_NEAREST)
            bgr = jpeg_roundtrip(out, self.jpeg_quality)
        else:
            bgr = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)  # as OpenCV delivers a camera's frame
        return runtime_fit(bgr, self.cfg.sensor_crop, self.height, self.width)
