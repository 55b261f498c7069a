"""The web console's WebSocket parser: any text gives a message or a refusal with a reason.

Issue 13: 3 kB of nested ``[`` made the console's ``json.loads`` raise ``RecursionError``.
The end-to-end check (hostile messages, then an e-stop the MCU latches) is in
test_web_console.py; this is the parser on its own, property-tested.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zima.bounded import InputError
from zima.onboard.web.server import MAX_MESSAGE_BYTES, parse_message

MESSAGES = st.dictionaries(
    st.sampled_from(["t", "v", "w", "engaged", "mode", "targets", "take", "action", "x"]),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
    | st.sampled_from(["drive", "hb", "heartbeat", "estop", "mode", "arm"])
    | st.lists(st.integers() | st.none(), max_size=7),
    max_size=4)
TEXT = (st.text(max_size=200)
        | MESSAGES.map(json.dumps)
        | st.integers(0, 10_000).map(lambda n: "[" * n)
        | st.integers(0, 3_000).map(lambda n: '{"t": "x", "a": ' * n)
        | st.integers(MAX_MESSAGE_BYTES - 20, 3 * MAX_MESSAGE_BYTES).map(
            lambda n: json.dumps({"t": "drive", "pad": "x" * n})))


@given(TEXT | st.binary(max_size=200))
@example("[" * 3000)
@example('{"t": "drive", "v": NaN, "w": 0}')
@example('{"t": "drive", "v": 1e999, "w": 0}')
@example('{"t": "estop", "engaged": true, "engaged": false}')
@example('{"t": 7}')
@example("\ud800")
@example(b"\xff\xfe")
def test_any_text_gives_a_message_or_a_refusal(raw: str | bytes) -> None:
    message: dict[str, object] | None = None
    try:
        message = parse_message(raw)
    except InputError as exc:
        reason = str(exc)
    if message is None:
        assert 0 < len(reason) < 400
    else:
        assert isinstance(message["t"], str)


@pytest.mark.parametrize(("text", "reason"), [
    ("[" * 3000, "nested deeper than 2"),
    (json.dumps({"t": "drive", "pad": "x" * MAX_MESSAGE_BYTES}), "over the limit"),
    ('{"t": "drive", "v": Infinity, "w": 0}', "Infinity"),
    ("{oops", "not JSON"),
    ('["t", "drive"]', 'a JSON object with a "t" kind'),
])
def test_refusals_say_why(text: str, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_message(text)


def test_the_page_s_messages_parse() -> None:
    for text in ['{"t": "heartbeat"}', '{"t": "drive", "v": 0.3, "w": 0}',
                 '{"t": "arm", "targets": [null, 900, null, null, null, 1800]}']:
        assert parse_message(text) == json.loads(text)
