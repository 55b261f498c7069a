"""FrameFusion: the contract's observation from frames and executed actions, with times
passed in (no clock), so every expectation here is exact."""

from __future__ import annotations

import numpy as np
import pytest

from zima.contract import DEFAULT, Action, Contract
from zima.onboard.fusion import FrameFusion, FusionConfig, StaleObservationError, fit_image


def solid(value: int, h: int = 480, w: int = 640) -> np.ndarray:
    """An [h, w, 3] uint8 image of one grey value: the value names the frame."""
    return np.full((h, w, 3), value, np.uint8)


def test_observation_has_exactly_the_contract_shapes_and_dtypes() -> None:
    fusion = FrameFusion(DEFAULT)
    for cam in DEFAULT.cameras:
        fusion.push(cam, solid(7), captured_s=1.0)
    obs = fusion.observe(now_s=1.05)
    assert obs.images.shape == (1, *DEFAULT.image_shape)
    assert obs.images.dtype == np.uint8
    assert obs.action_history.shape == (1, DEFAULT.action_history)
    assert obs.action_history.dtype == np.int64
    assert (obs.action_history == int(Action.STOP)).all()  # STOP-filled at start
    assert obs.newest_s == (1.0, 1.0)


def test_fit_image_centre_crops_to_the_contract_aspect() -> None:
    wide = np.zeros((96, 256, 3), np.uint8)  # [H, W, 3]: red sides, green centre
    wide[:, :, 0] = 255
    wide[:, 64:192] = (0, 255, 0)
    fitted = fit_image(wide, 96, 128)
    assert fitted.shape == (96, 128, 3)
    assert (fitted == (0, 255, 0)).all()
    tall = np.zeros((400, 128, 3), np.uint8)  # blue top and bottom, white middle 96 rows
    tall[:, :, 2] = 255
    tall[152:248] = 255
    assert (fit_image(tall, 96, 128) == 255).all()
    big = fit_image(np.full((480, 640, 3), 9, np.uint8), 96, 128)  # 4:3 -> 4:3, shrink only
    assert big.shape == (96, 128, 3)
    assert (big == 9).all()
    with pytest.raises(ValueError, match=r"\[h, w, 3\] uint8"):
        fit_image(np.zeros((10, 10), np.uint8), 96, 128)


def test_history_is_camera_major_oldest_first_sampled_every_frame_interval() -> None:
    contract = Contract(image_history=3, frame_interval_s=0.1)
    fusion = FrameFusion(contract)
    # 30 frames/s for one second; a frame's value is its index, +100 on the wrist camera.
    for i in range(31):
        fusion.push("forward", solid(i), captured_s=i / 30)
        fusion.push("wrist", solid(100 + i), captured_s=i / 30 + 0.01)
    obs = fusion.observe(now_s=1.0 + 0.02)
    values = obs.images[0, :, 0, 0, 0].tolist()  # [N]: one value per image
    # forward: newest frame 30 (t = 1.0 s), then the frames nearest 0.9 s and 0.8 s
    assert values == [24, 27, 30, 124, 127, 130]


def test_before_the_buffer_reaches_back_its_oldest_frame_repeats() -> None:
    contract = Contract(image_history=3, frame_interval_s=0.1)
    fusion = FrameFusion(contract)
    for cam in contract.cameras:
        fusion.push(cam, solid(1), captured_s=0.0)
        fusion.push(cam, solid(2), captured_s=0.1)
    values = fusion.observe(now_s=0.1).images[0, :, 0, 0, 0].tolist()
    assert values == [1, 1, 2, 1, 1, 2]


def test_action_history_holds_executed_actions_then_pending_ones() -> None:
    fusion = FrameFusion(DEFAULT)
    for cam in DEFAULT.cameras:
        fusion.push(cam, solid(0), captured_s=0.0)
    for action in (Action.FORWARD, Action.LEFT):
        fusion.record_action(action)
    assert fusion.observe(0.0).action_history.tolist() == [[0, 0, 1, 2]]
    assert fusion.observe(0.0, pending=[3, 3, 1]).action_history.tolist() == [[2, 3, 3, 1]]
    for action in (Action.RIGHT,) * 5:
        fusion.record_action(action)
    assert fusion.observe(0.0).action_history.tolist() == [[3, 3, 3, 3]]
    fusion.reset()
    with pytest.raises(StaleObservationError):
        fusion.observe(0.0)  # reset drops the frames too
    none = FrameFusion(Contract(action_history=0))
    for cam in DEFAULT.cameras:
        none.push(cam, solid(0), captured_s=0.0)
    assert none.observe(0.0).action_history.shape == (1, 0)


def test_a_stale_or_missing_camera_refuses_the_observation_naming_it() -> None:
    fusion = FrameFusion(DEFAULT, FusionConfig(max_frame_age_s=0.2))
    fusion.push("forward", solid(0), captured_s=1.0)
    with pytest.raises(StaleObservationError, match="camera 'wrist': no frame yet") as err:
        fusion.observe(now_s=1.0)
    assert err.value.reasons == ("camera 'wrist': no frame yet",)
    fusion.push("wrist", solid(0), captured_s=1.0)
    fusion.observe(now_s=1.2)  # exactly at the limit: fresh
    with pytest.raises(StaleObservationError) as err:
        fusion.observe(now_s=1.5)
    assert err.value.reasons == (
        "camera 'forward': newest frame 0.500 s old (limit 0.2 s)",
        "camera 'wrist': newest frame 0.500 s old (limit 0.2 s)",
    )
    assert fusion.stale_reasons(1.1) == []


def test_fusion_is_deterministic_and_ignores_frames_out_of_order() -> None:
    rng = np.random.default_rng(3)
    frames = [(cam, rng.integers(0, 256, (120, 160, 3), np.uint8), i * 0.033)
              for i in range(20) for cam in DEFAULT.cameras]
    a, b = FrameFusion(DEFAULT), FrameFusion(DEFAULT)
    for cam, image, t in frames:
        a.push(cam, image, t)
        b.push(cam, image, t)
        b.push(cam, solid(255, 120, 160), t - 0.01)  # older than the newest: ignored
    assert np.array_equal(a.observe(0.7).images, b.observe(0.7).images)


def test_unknown_camera_is_refused() -> None:
    with pytest.raises(ValueError, match="'rear' is not in the contract"):
        FrameFusion(DEFAULT).push("rear", solid(0), 0.0)
