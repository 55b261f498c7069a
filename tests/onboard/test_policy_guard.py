"""A model's output is checked before any action is taken from it (issue 13, item 2).

The model that drove the robot: finite on the random warm-up image, NaN on live frames,
the NaN in FORWARD's logit, so that argmax (temperature 0) picked FORWARD and sampling
(temperature 1) turned it into a silent STOP. Built by tests/onboard/onnx_models.py
(``nan_above_mean``): NaN wherever an observation's mean brightness is above 140. Here it
never yields a driving action, its bad outputs are STOPs with their reason and are
counted, three in a row make it faulty until a reload, and sample frames shipped in a
model file make ``load_model`` (the runtime's start and reload, ``zima deploy``) refuse
it before it can drive.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from zima.contract import DEFAULT, Action, Contract
from zima.onboard.chunking import choose_actions
from zima.onboard.fusion import FrameFusion
from zima.onboard.model_samples import (
    MAX_SAMPLES,
    ModelSamples,
    decode_samples,
    encode_samples,
)
from zima.onboard.policy import (
    MAX_ABS_LOGIT,
    BadOutputError,
    ModelIOError,
    SampleOutputError,
    check_output,
    load_model,
)
from zima.onboard.policy_runner import PolicyConfig, PolicyRunner, Step

from .lockstep import SteppedClock
from .onnx_models import build_model
from .test_policy import run, stepped_runner

DARK, BRIGHT = 100, 250  # frame brightness; the model is NaN above a mean of 140
NAN_ABOVE = 140.0
DRIVING = {Action.FORWARD, Action.LEFT, Action.RIGHT}
NAN_REASON = "bad model output: logits are not finite (4 NaN, 0 infinite of 16 values)"


def left_table(contract: Contract = DEFAULT) -> np.ndarray:
    """Logits that pick LEFT at any temperature up to 1 (the runner-up has p ~ 2e-9)."""
    table = np.zeros((contract.chunk_len, contract.n_actions), np.float32)
    table[:, int(Action.LEFT)] = 20.0
    return table


def nan_when_live(path: Path, samples: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    return build_model(path, DEFAULT, kind="table", table=left_table(),
                       nan_above_mean=NAN_ABOVE, samples=samples)


def observations(brightness: int, n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``n`` observations of uniform ``brightness``: images [n, N, H, W, 3], history [n, A]."""
    images = np.full((n, *DEFAULT.image_shape), brightness, np.uint8)
    return images, np.zeros((n, DEFAULT.action_history), np.int64)


def feed(fusion: FrameFusion, now_s: float, brightness: int) -> None:
    for cam in fusion.contract.cameras:
        fusion.push(cam, np.full((96, 128, 3), brightness, np.uint8), now_s)


async def drive(runner: PolicyRunner, fusion: FrameFusion, clock: SteppedClock,
                frames: list[int]) -> list[Step]:
    """One tick per entry of ``frames`` (the brightness fed before it), each plan waited for."""
    steps = []
    for brightness in frames:
        feed(fusion, clock.now_s, brightness)
        steps.append(runner.tick(clock.now_s))
        await runner.wait_plan()
        clock.now_s += 1 / fusion.contract.control_hz
    return steps


# ---- the model itself ------------------------------------------------------------------


def test_the_model_is_finite_on_random_and_dark_frames_and_nan_on_live_ones(
        tmp_path: Path) -> None:
    model = load_model(nan_when_live(tmp_path / "m.onnx"), DEFAULT)  # the warm-up passes
    assert model.samples_checked == 0
    dark = model.infer(*(a[:1] for a in observations(DARK)))
    assert dark.tolist() == left_table().tolist()
    live = model.infer(*(a[:1] for a in observations(BRIGHT)))
    assert np.isnan(live[:, int(Action.FORWARD)]).all()
    assert live.argmax(-1).tolist() == [int(Action.FORWARD)] * DEFAULT.chunk_len  # the bug
    with pytest.raises(BadOutputError, match="logits are not finite"):
        check_output(live, DEFAULT)
    check_output(dark, DEFAULT)


# ---- choosing actions never turns NaN into one -----------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_choose_actions_refuses_nan_logits(temperature: float) -> None:
    logits = left_table()
    logits[:, int(Action.FORWARD)] = np.nan
    with pytest.raises(BadOutputError, match=r"logits are not finite \(4 NaN"):
        choose_actions(logits, temperature, np.random.default_rng(0))
    logits[:, int(Action.FORWARD)] = -np.inf
    with pytest.raises(BadOutputError, match="4 infinite"):
        choose_actions(logits, temperature, np.random.default_rng(0))
    logits[:, int(Action.FORWARD)] = 2 * MAX_ABS_LOGIT
    with pytest.raises(BadOutputError, match="out of range"):
        choose_actions(logits, temperature, np.random.default_rng(0))


def test_a_tiny_temperature_on_large_finite_logits_is_the_argmax() -> None:
    logits = np.array([[-MAX_ABS_LOGIT, MAX_ABS_LOGIT, 0, 3]], np.float32)
    assert choose_actions(logits, 1e-300, np.random.default_rng(0)) == [1]


FLOATS = st.floats() | st.sampled_from(  # NaN and the infinities included
    [0.0, -0.0, MAX_ABS_LOGIT, -MAX_ABS_LOGIT, float(np.nextafter(MAX_ABS_LOGIT, np.inf))])


@given(values=hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
                         elements=FLOATS),
       dtype=st.sampled_from([np.float16, np.float32, np.float64]),
       temperature=st.just(0.0) | st.floats(0.0, 1e6),
       seed=st.integers(0, 2**32 - 1))
def test_choose_actions_acts_only_on_finite_in_range_logits(
        values: np.ndarray, dtype: type[np.floating], temperature: float, seed: int) -> None:
    """For any float logits: a valid action per step from finite in-range ones, else a
    refusal; never an action from logits with a NaN or an infinity."""
    with np.errstate(over="ignore"):  # float16 overflows to inf: one more bad case
        logits = values.astype(dtype)
    x = logits.astype(np.float64)
    acceptable = bool(np.isfinite(x).all() and (np.abs(x) <= MAX_ABS_LOGIT).all())
    try:
        actions = choose_actions(logits, temperature, np.random.default_rng(seed))
    except BadOutputError:
        assert not acceptable
        return
    assert acceptable
    assert len(actions) == logits.shape[0]
    assert all(0 <= a < logits.shape[1] for a in actions)
    if temperature == 0:
        assert actions == x.argmax(-1).tolist()


# ---- the runner --------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_live_nan_never_drives_and_three_in_a_row_make_the_model_faulty(
        tmp_path: Path, temperature: float) -> None:
    path = nan_when_live(tmp_path / "nan.onnx")
    good = build_model(tmp_path / "good.onnx", DEFAULT, kind="table", table=left_table())
    fusion = FrameFusion(DEFAULT)

    async def main() -> None:
        async with stepped_runner(fusion, path, execute_k=1, temperature=temperature,
                                  seed=0) as (runner, clock):
            # A tick acts on the plan of the tick before: the frame fed at i shows at i + 1.
            steps = await drive(runner, fusion, clock, [DARK, DARK, BRIGHT, DARK, BRIGHT])
            assert [s.action for s in steps] == [Action.STOP, Action.LEFT, Action.LEFT,
                                                 Action.STOP, Action.STOP]
            assert steps[3] == Step(Action.STOP, NAN_REASON)
            # The next observation still holds the bright frame in its history.
            assert steps[4] == Step(Action.STOP, NAN_REASON)
            st_ = runner.status
            assert (st_.bad_outputs, st_.bad_in_row, st_.faulty) == (2, 2, None)
            assert st_.last_bad_output == NAN_REASON.removeprefix("bad model output: ")
            # Two bad in a row, then the third: faulty.
            steps = await drive(runner, fusion, clock, [BRIGHT, DARK, DARK, DARK])
            faulty = ("model faulty: 3 bad outputs in a row, the last: logits are not finite "
                      "(4 NaN, 0 infinite of 16 values); reload a model to clear")
            assert steps[0] == Step(Action.STOP, faulty)
            # Dark frames do not clear it: no plan starts while it is faulty.
            assert steps[1:] == [Step(Action.STOP, faulty)] * 3
            st_ = runner.status
            assert (st_.bad_outputs, st_.bad_in_row) == (3, 3)
            assert st_.faulty == faulty.removeprefix("model faulty: ")
            assert st_.plans == 2  # the good ones only; none started since
            # A reload clears it; the counters of what happened stay.
            await runner.reload(good)
            st_ = runner.status
            assert (st_.faulty, st_.bad_in_row, st_.bad_outputs) == (None, 0, 3)
            steps = await drive(runner, fusion, clock, [DARK, DARK, DARK])
            assert steps == [Step(Action.STOP, "action queue ran dry: planning again"),
                             Step(Action.LEFT), Step(Action.LEFT)]

    run(main)


def test_a_good_output_between_bad_ones_resets_the_run(tmp_path: Path) -> None:
    path = nan_when_live(tmp_path / "nan.onnx")
    fusion = FrameFusion(DEFAULT)

    async def main() -> None:
        async with stepped_runner(fusion, path, execute_k=1, temperature=0.0) as (runner, clock):
            # A bright frame spoils two observations (its own and the next, whose history
            # holds it): two bad outputs, good ones, two bad again: 4 bad, never 3 in a row.
            steps = await drive(runner, fusion, clock,
                                [BRIGHT, DARK, DARK, DARK, BRIGHT, DARK, DARK, DARK])
            assert [s.reason or s.action.name for s in steps] == [
                "waiting for the first plan", NAN_REASON, NAN_REASON, "LEFT", "LEFT",
                NAN_REASON, NAN_REASON, "LEFT"]
            st_ = runner.status
            assert (st_.bad_outputs, st_.bad_in_row, st_.faulty) == (4, 0, None)

    run(main)


def test_max_bad_outputs_is_validated() -> None:
    with pytest.raises(ValueError, match="max_bad_outputs=0 must be >= 1"):
        PolicyConfig(max_bad_outputs=0)


def test_a_model_of_the_removed_continuous_head_is_refused_saying_so(tmp_path: Path) -> None:
    """An old file with the continuous head's ``tracks`` output gets the reason it is no
    longer driven, not a bare list of outputs."""
    tracks = build_model(tmp_path / "c.onnx", DEFAULT, kind="tracks",
                         table=np.full((DEFAULT.chunk_len, 2), 300, np.float32))
    with pytest.raises(ModelIOError, match=r"c.onnx: the continuous head \(output 'tracks', "
                                           r"track speeds\) was removed from Zima: .*78 %"):
        load_model(tracks, DEFAULT)
    both = build_model(tmp_path / "b.onnx", DEFAULT, kind="tracks", extra_output="logits")
    with pytest.raises(ModelIOError, match=r"outputs \['tracks', 'logits'\], expected exactly "
                                           r"'logits' \[B, chunk_len, n_actions\]"):
        load_model(both, DEFAULT)
    extra = build_model(tmp_path / "a.onnx", DEFAULT, extra_output="value")
    with pytest.raises(ModelIOError, match=r"outputs \['logits', 'value'\]"):
        load_model(extra, DEFAULT)


# ---- shipped samples: refused at load, reload and deploy ----------------------------------


def test_a_model_bad_on_its_shipped_samples_is_refused(tmp_path: Path) -> None:
    live = nan_when_live(tmp_path / "live.onnx", samples=observations(BRIGHT, 3))
    with pytest.raises(SampleOutputError,
                       match=r"bad output on shipped sample 1 of 3 \(real frames from its "
                             r"export\): its logits are not finite"):
        load_model(live, DEFAULT)
    mixed_images = np.concatenate([observations(DARK)[0], observations(BRIGHT, 1)[0]])
    mixed = nan_when_live(tmp_path / "mixed.onnx",
                          samples=(mixed_images, np.zeros((3, 4), np.int64)))
    with pytest.raises(SampleOutputError, match="shipped sample 3 of 3"):
        load_model(mixed, DEFAULT)
    fine = nan_when_live(tmp_path / "dark.onnx", samples=observations(DARK, 3))
    assert load_model(fine, DEFAULT).samples_checked == 3


def test_reload_refuses_a_model_bad_on_its_samples_and_keeps_the_old(tmp_path: Path) -> None:
    good = build_model(tmp_path / "good.onnx", DEFAULT, kind="table", table=left_table())
    live = nan_when_live(tmp_path / "live.onnx", samples=observations(BRIGHT))
    fusion = FrameFusion(DEFAULT)

    async def main() -> None:
        async with stepped_runner(fusion, good, execute_k=1, temperature=0.0) as (runner, clock):
            sha = runner.model_sha256
            with pytest.raises(SampleOutputError, match="shipped sample 1 of 2"):
                await runner.reload(live)
            assert runner.model_sha256 == sha
            assert runner.status.reload_failures == 1
            assert "logits are not finite" in (runner.status.reload_error or "")
            steps = await drive(runner, fusion, clock, [BRIGHT, BRIGHT, BRIGHT])
            assert [s.action for s in steps[1:]] == [Action.LEFT, Action.LEFT]

    run(main)


@pytest.mark.parametrize(("text", "why"), [
    ("{oops", "not JSON"),
    ("[" * 100_000, "not JSON"),
    ("[]", "must be a JSON object"),
    ('{"format": 2}', "format 2"),
    ('{"format": 1, "count": 17}', "count 17 must be 1..16"),
    ('{"format": 1, "count": true}', "count True"),
    ('{"format": 1, "count": 1, "image_shape": [1, 2, 3, 3]}', "image_shape"),
    ('{"format": 1, "count": 1, "image_shape": [4, 96, 128, 3], "images": "!!"}',
     "not base64 of zlib"),
    ("x" * 10_000_000, "characters, more than"),
])
def test_unreadable_samples_are_refused(tmp_path: Path, text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        decode_samples(text, DEFAULT)
    if len(text) < 1000:
        model = build_model(tmp_path / "m.onnx", DEFAULT, samples=text)
        with pytest.raises(SampleOutputError, match=re.escape(why)):
            load_model(model, DEFAULT)


def test_samples_round_trip_and_their_shapes_and_actions_are_checked() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, *DEFAULT.image_shape), np.uint8)
    history = rng.integers(0, DEFAULT.n_actions, (3, DEFAULT.action_history), np.int64)
    back = decode_samples(encode_samples(images, history, DEFAULT), DEFAULT)
    assert np.array_equal(back.images, images)
    assert np.array_equal(back.action_history, history)
    data = json.loads(encode_samples(images, history, DEFAULT))
    cases: list[tuple[dict[str, object], str]] = [
        ({"action_history": [[0, 1, 2, 9]] * 3}, "outside 0..3"),
        ({"action_history": [[0, 1, 2]] * 3}, "3 lists of 4 ints"),
        ({"count": 2}, "not 294912 bytes"),
        ({"count": 4}, "not 589824 bytes")]
    for broken, why in cases:
        with pytest.raises(ValueError, match=re.escape(why)):
            decode_samples(json.dumps({**data, **broken}), DEFAULT)
    with pytest.raises(ValueError, match=r"expected 1\.\.16"):
        encode_samples(np.zeros((MAX_SAMPLES + 1, *DEFAULT.image_shape), np.uint8),
                       np.zeros((MAX_SAMPLES + 1, 4), np.int64), DEFAULT)


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_decoding_any_text_is_samples_or_a_refusal(text: str) -> None:
    try:
        samples = decode_samples(text, DEFAULT)
    except ValueError:
        return
    assert isinstance(samples, ModelSamples)  # pragma: no cover - 300 chars cannot hold one
