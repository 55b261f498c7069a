"""Camera effects: blur from the robot's own motion, drift, MJPEG, the runtime's fit path,
and the environment rendering through them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np
import pytest

from zima.contract import DEFAULT, Action
from zima.onboard.camera import Camera, CameraOptions
from zima.onboard.camera_config import CameraConfig
from zima.sim.effects import (
    AT_REST,
    CameraMotion,
    EffectsConfig,
    ImageEffects,
    jpeg_roundtrip,
    render_size,
    runtime_fit,
)
from zima.sim.env import EnvConfig, ZimaEnv

MakeEnv = Callable[..., ZimaEnv]
OFF = EffectsConfig.off()
BLUR_ONLY = replace(OFF, p_motion_blur=1.0, exposure_ms=(30.0, 30.0))
H, W = 96, 128


def _scene(seed: int = 0, size: tuple[int, int] = (H, W), block: int = 8) -> np.ndarray:
    """A blocky random RGB image [h, w, 3] uint8 (edges in every direction)."""
    h, w = size
    small = np.random.default_rng(seed).integers(0, 256, (h // block, w // block, 3))
    return np.repeat(np.repeat(small, block, 0), block, 1).astype(np.uint8)


def _effects(cfg: EffectsConfig, seed: int = 1) -> ImageEffects:
    fx = ImageEffects(cfg, H, W)
    fx.reset(np.random.default_rng(seed))
    return fx


def _gradient_energy(image: np.ndarray) -> tuple[float, float]:
    """Mean squared difference between neighbours along x and along y (blur lowers it)."""
    img = image.astype(np.float32)
    return float((np.diff(img, axis=1) ** 2).mean()), float((np.diff(img, axis=0) ** 2).mean())


def _spread(image: np.ndarray) -> tuple[float, float]:
    """Variance of a bright spot's light along x and along y, px^2 (a smear of L px adds
    L^2 / 12 along its direction)."""
    weight = image.astype(np.float64).sum(axis=2)
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    total = weight.sum()
    mx, my = (weight * x).sum() / total, (weight * y).sum() / total
    return (float((weight * (x - mx) ** 2).sum() / total),
            float((weight * (y - my) ** 2).sum() / total))


def _spot(v: int, u: int) -> np.ndarray:
    image = np.zeros((H, W, 3), np.uint8)
    image[v - 1 : v + 2, u - 1 : u + 2] = 255
    return image


def test_motion_blur_grows_with_yaw_rate_and_is_zero_at_rest() -> None:
    fx, frame = _effects(BLUR_ONLY), _scene()
    assert fx.blur_px(AT_REST) == 0
    np.testing.assert_array_equal(fx.apply(frame, np.random.default_rng(0)), frame)
    lengths, sharpness = [], []
    for yaw_rate in (0.25, 0.5, 1.0, 2.0):
        motion = CameraMotion.of_body(yaw_rate, 0.0)
        lengths.append(fx.blur_px(motion))
        sharpness.append(_gradient_energy(fx.apply(frame, np.random.default_rng(0), motion))[0])
    assert lengths == sorted(lengths)
    assert lengths[0] > 0.5
    # At the centre 1 rad/s x 30 ms x the focal length, pixels; the edges move faster.
    centre = fx.smear(CameraMotion.of_body(1.0, 0.0))[0][H // 2, W // 2]
    assert centre == pytest.approx(0.03 * fx.focal_px, rel=1e-3)
    assert lengths[2] > centre
    assert sharpness == sorted(sharpness, reverse=True)
    assert sharpness[-1] < 0.8 * _gradient_energy(frame)[0]
    fast = CameraMotion.of_body(2.0, 0.0)
    still = _effects(OFF)  # without motion blur, motion changes nothing
    np.testing.assert_array_equal(still.apply(frame, np.random.default_rng(0), fast), frame)


def test_blur_direction_follows_turning_vs_driving() -> None:
    # A near scene (0.1 m) so that driving's smear is pixels long at 0.3 m/s.
    fx, cy, cx = _effects(replace(BLUR_ONLY, scene_depth_m=0.1)), H // 2, W // 2
    sharp_x, sharp_y = _spread(_spot(cy, cx))

    def spread(spot: np.ndarray, motion: CameraMotion) -> tuple[float, float]:
        sx, sy = _spread(fx.apply(spot, np.random.default_rng(0), motion))
        return sx - sharp_x, sy - sharp_y  # growth over the sharp spot's

    turning = spread(_spot(cy, cx), CameraMotion.of_body(1.0, 0.0))
    assert turning[0] > 0.5
    assert turning[1] < 0.05 * turning[0]  # a horizontal smear
    # Driving, level camera: a smear away from the heading (the centre), i.e. radial.
    ahead = CameraMotion.of_body(0.0, 0.3)
    above, left = spread(_spot(cy - 30, cx), ahead), spread(_spot(cy, cx - 40), ahead)
    assert above[1] > 0.3
    assert above[0] < 0.1 * above[1]
    assert left[0] > 0.3
    assert left[1] < 0.1 * left[0]
    assert spread(_spot(cy, cx), ahead)[0] < 0.1 * left[0]  # the heading stays sharp
    # A camera tilted down sees its heading above the image: the centre smears downward.
    down = CameraMotion.of_body(0.0, 0.3, pitch_down_rad=0.4)
    centre = spread(_spot(cy, cx), down)
    assert centre[1] > 0.3
    assert centre[0] < 0.1 * centre[1]
    su, sv = fx.smear(down)
    assert sv[cy, cx] > 0  # down the image
    assert abs(su[cy, cx]) < 0.05 * sv[cy, cx]


def test_jpeg_quality_lowers_psnr_monotonically() -> None:
    scene = _scene(3, size=(480, 640), block=4)
    scene = cv2.GaussianBlur(scene, (0, 0), 1.0)  # camera-like: edges, not pixel noise

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
        return float(10 * np.log10(255.0**2 / mse))

    qualities = (95, 80, 60, 40, 20)
    sensor = [psnr(cv2.cvtColor(jpeg_roundtrip(scene, q), cv2.COLOR_BGR2RGB), scene)
              for q in qualities]
    assert sensor == sorted(sensor, reverse=True)
    assert sensor[0] - sensor[-1] > 5
    # After the fit to the contract's size the artefacts shrink but keep their order.
    clean = ImageEffects(OFF, H, W)
    fitted = [psnr(_effects(replace(OFF, sensor_hw=(480, 640), p_jpeg=1.0,
                                    jpeg_quality=(q, q))).apply(scene, np.random.default_rng(0)),
                   clean.apply(scene, np.random.default_rng(0)))
              for q in (95, 40, 20)]
    assert fitted == sorted(fitted, reverse=True)


def test_drift_is_deterministic_per_seed_smooth_and_bounded() -> None:
    cfg = replace(OFF, p_drift=1.0)
    times = np.arange(0.0, 60.0, 0.1)
    a, b, c = _effects(cfg, seed=5), _effects(cfg, seed=5), _effects(cfg, seed=6)
    gains = np.array([a.drift_gains(t) for t in times])  # [T, 3] R, G, B
    np.testing.assert_array_equal(gains, [b.drift_gains(t) for t in times])
    assert not np.allclose(gains, [c.drift_gains(t) for t in times])
    exposure_stops = np.log2(gains[:, 1])
    assert np.abs(exposure_stops).max() <= a.drift_amplitude[0] + 1e-6
    assert a.drift_amplitude[0] <= cfg.exposure_drift_stops[1]
    assert exposure_stops.max() - exposure_stops.min() > 0.5 * a.drift_amplitude[0]  # it moves
    red_blue = gains[:, [0, 2]] / gains[:, 1:2]
    assert np.abs(red_blue - 1).max() <= cfg.white_balance_drift[1] + 1e-6
    # Smooth: 0.1 s changes the exposure by at most 2 pi 0.1 / the shortest period, a.
    step = np.abs(np.diff(exposure_stops)).max()
    assert step <= a.drift_amplitude[0] * 2 * np.pi * 0.1 / cfg.drift_period_s[0] + 1e-6
    # The frames follow the drift: a grey image brightens and darkens with it.
    grey = np.full((H, W, 3), 100, np.uint8)
    means = [a.apply(grey, np.random.default_rng(0), AT_REST, t).mean() for t in times[::50]]
    np.testing.assert_allclose(means, 100 * gains[::50].mean(axis=1), atol=1.0)
    assert (_effects(OFF).drift_gains(3.0) == 1).all()


class _StillCapture:
    """A Capture (zima.onboard.camera) that delivers one decoded BGR frame over and over."""

    def __init__(self, bgr: np.ndarray) -> None:
        self.bgr = bgr

    def grab(self) -> bool:
        time.sleep(0.002)
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return True, self.bgr.copy()

    def release(self) -> None:
        pass


def test_the_sensor_path_is_the_runtime_cameras_own() -> None:
    crop = 0.8
    rgb = _scene(4, size=(480, 640), block=4)  # a 640x480 frame as the sensor sees it
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # as OpenCV decodes it

    async def runtime_frame() -> np.ndarray:
        config = CameraConfig(name="forward", source="still", crop=crop)
        options = CameraOptions(opener=lambda _: _StillCapture(bgr), fit_to=(H, W))
        async with Camera(config, options) as cam:
            async with asyncio.timeout(10):
                while (frame := cam.latest()) is None:
                    await asyncio.sleep(0.005)
        assert frame.fitted is not None
        return frame.fitted

    fitted = asyncio.run(runtime_frame())
    cfg = replace(OFF, sensor_hw=(480, 640), sensor_crop=crop)
    np.testing.assert_array_equal(_effects(cfg).apply(rgb, np.random.default_rng(0)), fitted)
    # Renders show the whole sensor, at its aspect, big enough for the crop not to enlarge.
    assert render_size(cfg, H, W) == (120, 160)
    assert render_size(replace(cfg, sensor_crop=1.0), H, W) == (H, W)
    assert render_size(replace(cfg, sensor_crop=1.0), 96, 96) == (96, 128)
    assert render_size(OFF, H, W) == (H, W)
    small = cv2.resize(rgb, (160, 120), interpolation=cv2.INTER_AREA)
    assert _effects(cfg).apply(small, np.random.default_rng(0)).shape == (H, W, 3)
    # Up to the sensor (nearest) and fitted back, a render is unchanged: the effects skip
    # that trip without JPEG, and only JPEG leaves a trace.
    sensor = replace(OFF, sensor_hw=(480, 640))
    render = _scene(5, block=1)
    up = cv2.resize(render, (640, 480), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(runtime_fit(cv2.cvtColor(up, cv2.COLOR_RGB2BGR), 1, H, W),
                                  render)
    np.testing.assert_array_equal(_effects(sensor).apply(render, np.random.default_rng(0)), render)
    jpeg = replace(sensor, p_jpeg=1.0, jpeg_quality=(40, 40))
    assert not np.array_equal(_effects(jpeg).apply(render, np.random.default_rng(0)), render)


def test_config_switches_and_refusals() -> None:
    assert not any(_effects(OFF).active.values())
    assert all(_effects(EffectsConfig.always()).active.values())
    with pytest.raises(ValueError, match="p_jpeg"):
        EffectsConfig(p_jpeg=1.5)
    with pytest.raises(ValueError, match="jpeg_quality"):
        EffectsConfig(jpeg_quality=(0, 50))
    with pytest.raises(ValueError, match="exposure_ms"):
        EffectsConfig(exposure_ms=(30.0, 4.0))


def test_env_renders_blur_from_its_own_turning_and_is_deterministic(make_env: MakeEnv) -> None:
    strong = EnvConfig(effects=replace(EffectsConfig.always(), exposure_ms=(30.0, 30.0)))
    a, b = make_env("room", strong), make_env("room", strong)
    sharp, blurred = make_env("room", EnvConfig(effects=OFF)), make_env(
        "room", EnvConfig(effects=BLUR_ONLY))
    for env in (a, b, sharp, blurred):
        env.reset(seed=7)
    forward = DEFAULT.cameras.index("forward") * DEFAULT.image_history + DEFAULT.image_history - 1
    for action in (Action.LEFT, Action.FORWARD, Action.STOP):
        obs = [env.step(action).observation.images for env in (a, b)]
        assert obs[0] is not None
        np.testing.assert_array_equal(obs[0], obs[1])
    # The camera feels the robot's own motion at capture: nothing at rest, a turn when turning.
    np.testing.assert_array_equal(sharp.render("forward"), blurred.render("forward"))
    assert blurred._effects["forward"].blur_px(blurred.camera_motion("forward")) < 0.2
    for env in (sharp, blurred):
        env.step(Action.LEFT)
    yaw_rate = float(blurred.data.qvel[blurred.model.joint("base_yaw").dofadr[0]])
    motion = blurred.camera_motion("forward")
    assert np.linalg.norm(motion.angular_rad_s) == pytest.approx(abs(yaw_rate), rel=1e-3)
    assert yaw_rate > 0.5
    assert blurred._effects["forward"].blur_px(motion) > 2.0
    frames = [env.step(Action.LEFT).observation.images for env in (sharp, blurred)]
    assert frames[0] is not None
    assert frames[1] is not None
    x_sharp, y_sharp = _gradient_energy(frames[0][forward])
    x_blur, y_blur = _gradient_energy(frames[1][forward])
    assert x_blur < 0.5 * x_sharp  # smeared sideways (measured: 0.25)
    assert x_blur / x_sharp < 0.5 * y_blur / y_sharp  # far more than up and down (0.76)
