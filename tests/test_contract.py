"""The observation/action contract: shapes, action meanings, metadata round trip."""

import pytest

from zima.contract import DEFAULT, Action, Contract, TrackCommand


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
