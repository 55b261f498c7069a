"""The observation/action contract: shapes, action meanings, the nearest action of a
track command, metadata round trip."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.contract import (
    DEFAULT,
    Action,
    Contract,
    TrackCommand,
    nearest_action,
)


def test_shapes_follow_the_fields() -> None:
    c = Contract(cameras=("forward",), image_history=3, image_height=48, image_width=64)
    assert c.n_images == 3
    assert c.image_shape == (3, 48, 64, 3)
    assert DEFAULT.n_images == 2 * DEFAULT.image_history
    assert DEFAULT.n_actions == len(Action) == 4


def test_actions_turn_in_place_and_stop() -> None:
    c = Contract(forward_mm_s=250, turn_mm_s=100)
    assert c.track_command(Action.STOP) == TrackCommand(0, 0)
    assert c.track_command(Action.FORWARD) == TrackCommand(250, 250)
    assert c.track_command(Action.LEFT) == TrackCommand(-100, 100)
    assert c.track_command(int(Action.RIGHT)) == TrackCommand(100, -100)


def test_json_round_trip_is_exact() -> None:
    c = Contract(chunk_len=8, cameras=("forward", "wrist", "rear"))
    assert Contract.from_json(c.to_json()) == c
    assert Contract.from_json(DEFAULT.to_json()) == DEFAULT


def test_mismatches_name_each_field() -> None:
    model = Contract(chunk_len=8, image_width=160)
    assert DEFAULT.mismatches(model) == [
        "image_width: model 160, runtime 128",
        "chunk_len: model 8, runtime 4",
    ]
    assert DEFAULT.mismatches(Contract()) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[1]", "JSON object"),
        ('{"chunk_size": 4}', "unknown fields"),
        ('{"chunk_len": 0}', "chunk_len must be positive"),
        ('{"cameras": []}', "cameras must be distinct"),
        ('{"actions": ["go"]}', "actions must be"),
    ],
)
def test_bad_metadata_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Contract.from_json(text)


def test_nearest_action_of_track_commands() -> None:
    assert nearest_action(0, 0) is Action.STOP
    assert nearest_action(20, -20) is Action.STOP  # the dead band is inclusive
    assert nearest_action(21, 21) is Action.FORWARD
    assert nearest_action(200, 300) is Action.FORWARD  # a gentle curve: forward
    assert nearest_action(-150, 150) is Action.LEFT
    assert nearest_action(150, -150) is Action.RIGHT
    assert nearest_action(-300, -300) is Action.STOP  # no reverse action
    assert nearest_action(30, 30, deadband_mm_s=50) is Action.STOP
    # Each action's own command maps back to it.
    for action in Action:
        command = DEFAULT.track_command(action)
        assert nearest_action(command.left_mm_s, command.right_mm_s) is action


@given(st.one_of(st.text(max_size=300), st.builds(lambda n: "[" * n, st.integers(0, 50_000)),
                 st.builds(lambda d: DEFAULT.to_json()[:d], st.integers(0, 400))))
@settings(max_examples=300, deadline=None)
def test_contract_metadata_from_any_text_is_a_contract_or_a_clear_refusal(text: str) -> None:
    # A model's or an episode's metadata is outside input: deep nesting once escaped as
    # RecursionError; a wrong field type as a TypeError.
    outcome: Contract | str
    try:
        outcome = Contract.from_json(text)
    except ValueError as exc:
        outcome = str(exc)
    assert isinstance(outcome, Contract) or "contract metadata" in outcome
