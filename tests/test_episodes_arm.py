"""The arm in the contract and in episode files (issue 17, item 4): a contract with an arm
head round-trips and is told apart; the find task's contract and files are unchanged; an
episode of the pick contract stores its arm actions, labels and state, and refuses what
does not fit."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from zima.contract import (
    ARM_JOG_LEVELS,
    ARM_STATE_DIMS,
    CONTRACTS,
    DEFAULT,
    METADATA_KEY,
    PICK,
    Action,
    Contract,
)
from zima.episodes import EpisodeFormatError, EpisodeInfo, EpisodeReader, EpisodeWriter, seal

SMALL_PICK = Contract(image_height=12, image_width=16, arm_dims=6,
                      arm_jog_levels=ARM_JOG_LEVELS)
STATE = [0.15, 0.0, 0.02, 1.2, 0.1, 0.03]


def _frames(c: Contract) -> dict[str, np.ndarray]:
    return {cam: np.full((c.image_height, c.image_width, 3), 7, np.uint8) for cam in c.cameras}


# ---- the contract ---------------------------------------------------------------------------


def test_the_pick_contract_round_trips_and_differs_from_the_find_tasks_by_its_arm() -> None:
    assert Contract.from_json(PICK.to_json()) == PICK
    assert json.loads(PICK.to_json())["arm_jog_levels"] == list(ARM_JOG_LEVELS)
    assert DEFAULT.mismatches(PICK) == ["arm_dims: model 6, runtime 0",
                                       f"arm_jog_levels: model {ARM_JOG_LEVELS!r}, runtime ()"]
    assert PICK.n_arm_levels == 5
    assert PICK.arm_hold_bin == 2
    assert CONTRACTS == {"find": DEFAULT, "pick": PICK}


def test_a_contract_without_an_arm_writes_the_json_it_wrote_before_the_arm() -> None:
    """Models and episode files made before the arm (and older readers of new files of
    the find task) see the same contract text: no arm fields in it."""
    text = DEFAULT.to_json()
    assert "arm" not in text
    assert Contract.from_json(text) == DEFAULT


@pytest.mark.parametrize("fields", [
    {"arm_dims": 5, "arm_jog_levels": ARM_JOG_LEVELS},  # not the six jog dimensions
    {"arm_dims": 6},  # no levels
    {"arm_dims": 0, "arm_jog_levels": ARM_JOG_LEVELS},  # levels without a head
    {"arm_dims": 6, "arm_jog_levels": (-1.0, 1.0)},  # no hold
    {"arm_dims": 6, "arm_jog_levels": (0.0, -1.0, 1.0)},  # not ascending
    {"arm_dims": 6, "arm_jog_levels": (-2.0, 0.0, 1.0)},  # beyond the jog limit
])
def test_malformed_arm_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="contract: arm"):
        Contract(**fields)  # type: ignore[arg-type]
    text = json.dumps({**json.loads(DEFAULT.to_json()), **fields})
    with pytest.raises(ValueError, match="malformed"):
        Contract.from_json(text)


# ---- episode files ------------------------------------------------------------------------


def _write_pick(path: Path, steps: int, *, labelled: bool = False) -> Path:
    with EpisodeWriter(path, EpisodeInfo("sim", "arena", seed=3), SMALL_PICK,
                       flush_every=3) as w:
        for t in range(steps):
            bins = [t % 5, 2, 2, 2, 2, 4 - t % 5]
            w.append(_frames(SMALL_PICK), Action.STOP, t / 10,
                     expert_action=Action.LEFT if labelled else None,
                     arm_action=bins, arm_state=[v + t for v in STATE],
                     expert_arm_action=[2] * 6 if labelled else None)
        w.set_outcome("success")
    return path


def test_an_episode_of_the_pick_contract_keeps_its_arm_actions_and_state(
        tmp_path: Path) -> None:
    path = _write_pick(tmp_path / "pick.h5", 7)  # 7 steps, flushed by 3: a partial flush
    with EpisodeReader(path, SMALL_PICK) as r:
        ep = r.load()
    assert ep.arm_action is not None
    assert ep.expert_arm_action is not None
    assert ep.arm_state is not None
    assert ep.arm_action.dtype == np.uint8
    assert ep.arm_action.shape == (7, 6)
    assert ep.arm_action[:, 0].tolist() == [t % 5 for t in range(7)]
    np.testing.assert_array_equal(ep.expert_arm_action, ep.arm_action)  # not labelled: a copy
    assert ep.arm_state.dtype == np.float32
    assert ep.arm_state.shape == (7, ARM_STATE_DIMS)
    np.testing.assert_allclose(ep.arm_state[6], [v + 6 for v in STATE], rtol=1e-6)
    labelled = _write_pick(tmp_path / "labelled.h5", 4, labelled=True)
    with EpisodeReader(labelled, SMALL_PICK) as r:
        lep = r.load()
    assert lep.expert_arm_action is not None
    assert lep.expert_arm_action.tolist() == [[2] * 6] * 4
    assert lep.expert_action.tolist() == [int(Action.LEFT)] * 4


def test_an_episode_of_the_find_task_has_no_arm(tmp_path: Path) -> None:
    """An episode written without the arm (every file before it) reads as it did: no arm
    datasets, None in the loaded episode."""
    small = Contract(image_height=12, image_width=16)
    path = tmp_path / "find.h5"
    with EpisodeWriter(path, EpisodeInfo("sim", "arena"), small) as w:
        w.append(_frames(small), Action.FORWARD, 0.0)
        with pytest.raises(ValueError, match="arm head"):
            w.append(_frames(small), Action.FORWARD, 0.1, arm_action=[2] * 6,
                     arm_state=STATE)
    with h5py.File(path) as f:
        assert "arm_action" not in f
        assert "arm" not in f.attrs[METADATA_KEY]
    with EpisodeReader(path, small) as r:
        ep = r.load()
    assert ep.arm_action is None
    assert ep.arm_state is None


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"arm_state": STATE}, "arm_action and arm_state at every step"),
    ({"arm_action": [2] * 6}, "arm_action and arm_state at every step"),
    ({"arm_action": [2] * 5, "arm_state": STATE}, r"arm_action must be 6 bins in 0..4"),
    ({"arm_action": [2, 2, 2, 2, 2, 5], "arm_state": STATE}, r"arm_action must be 6 bins"),
    ({"arm_action": [2] * 6, "arm_state": STATE[:5]}, "arm_state has 6 values"),
    ({"arm_action": [2] * 6, "arm_state": STATE, "expert_arm_action": [2] * 6},
     "goes with expert_action"),
])
def test_the_writer_refuses_arm_steps_that_do_not_fit(tmp_path: Path, kwargs: dict[str, object],
                                                      match: str) -> None:
    with EpisodeWriter(tmp_path / "bad.h5", EpisodeInfo("sim", "arena"), SMALL_PICK) as w:
        with pytest.raises(ValueError, match=match):
            w.append(_frames(SMALL_PICK), Action.STOP, 0.0, **kwargs)  # type: ignore[arg-type]
        w.append(_frames(SMALL_PICK), Action.STOP, 0.0, arm_action=[2] * 6, arm_state=STATE)


def test_a_reader_refuses_damaged_arm_datasets(tmp_path: Path) -> None:
    bins = _write_pick(tmp_path / "bins.h5", 3)
    with h5py.File(bins, "r+") as f:
        f["arm_action"][1, 2] = 9  # not a bin of 0..4
    seal(bins)
    with EpisodeReader(bins, SMALL_PICK) as r, pytest.raises(EpisodeFormatError,
                                                             match="arm_action holds 9"):
        r.load()
    missing = _write_pick(tmp_path / "missing.h5", 3)
    with h5py.File(missing, "r+") as f:
        del f["arm_state"]
    seal(missing)
    with pytest.raises(EpisodeFormatError, match="missing dataset 'arm_state'"):
        EpisodeReader(missing, SMALL_PICK)
