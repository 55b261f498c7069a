"""Hostile MQTT payloads for the host tools' tests, and a publisher with a robot's account.

What a compromised or broken robot (or anyone holding its password) can put on its topics:
nesting that makes ``json.loads`` raise ``RecursionError``, megabytes, bytes that are not
UTF-8, JSON's non-standard constants, duplicate keys, escape sequences meant for the
operator's terminal. Each must be skipped and counted by a tool, never crash it.
"""

from __future__ import annotations

import aiomqtt
from hypothesis import strategies as st

from tests.mqtt_broker import ROBOT, ROBOT_PASSWORD, Broker

__all__ = ["HOSTILE", "json_values", "publish_as_robot"]

HOSTILE: list[bytes] = [
    b'{"battery_mv": 11000, "level": "\\u001b[2J", "low_mv": 10500, "critical_mv": 9900}',
    b"[" * 3000,  # json.loads: RecursionError
    b"{" * 100_000,
    b"[" * (1 << 20),  # 1 MB
    b"\xff\xfe not utf-8",
    b"NaN",
    b'{"battery_mv": NaN, "level": "ok", "low_mv": 1, "critical_mv": 1}',
    b'{"battery_mv": 1e999}',
    b'{"a": 1, "a": 2}',
    b'[{"battery_mv": 11000}]',
    b'"\x1b[2J\x1b[H a raw escape"',  # not JSON: raw control characters in a string
    b'{"battery_mv": ' + b"9" * 5000 + b"}",
    b"",
    bytes(range(256)),
]


async def publish_as_robot(broker: Broker, messages: list[tuple[str, bytes]],
                           retain: bool = False) -> None:
    """What a compromised or broken robot (or anyone with its password) can send."""
    async with aiomqtt.Client("127.0.0.1", broker.port, username=ROBOT,
                              password=ROBOT_PASSWORD, identifier="hostile") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=retain)


# Any JSON value, nested a few levels: numbers beyond any field's range, strings, lists and
# objects (the property tests' payloads and field values).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
