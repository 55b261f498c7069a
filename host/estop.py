"""`zima estop`: stop the robot's motors over MQTT, and confirm that they stopped.

Publishes ``zima/<r>/cmd/estop`` ``{"engaged": true, "request_id": <uuid>}`` at QoS 1,
then waits (``--timeout``, default 5 s) for two things: the runtime's ``cmd/result`` with
that request id (accepted or refused, and why) and ``telemetry/mode`` showing ``"estop"``.
Only both together count as confirmed. ``--release`` sends ``engaged: false`` and waits
for a mode other than ``"estop"``. Nothing is asked of the robot first: the runtime
accepts an e-stop in every mode::

    zima estop --robot zima --username operator --password-file ~/.zima-mqtt
    zima estop --release

``send_estop`` is the whole exchange (tests and other tools call it directly). A payload
that is not a bounded JSON object (any bytes) is skipped and counted, never a crash: the
e-stop's answer may still come after it.

Exit status: 0 confirmed; 1 an error (broker, flags) or the robot refused the command;
2 not confirmed within the timeout (no result or the mode never changed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from zima.host import mqtt
from zima.onboard.api import CommandResult, ModeRecord

__all__ = ["EstopOutcome", "send_estop"]

EXIT_OK, EXIT_ERROR, EXIT_UNCONFIRMED = 0, 1, 2


@dataclass(frozen=True, slots=True)
class EstopOutcome:
    """What came back for one e-stop command."""

    engaged: bool  # what was asked: True engage, False release
    request_id: str
    result: CommandResult | None  # the matching cmd/result, None if none came
    mode: str | None  # the last telemetry/mode seen after sending
    mode_confirmed: bool  # telemetry/mode showed the asked-for state
    bad_payloads: int = 0  # messages skipped meanwhile: not a bounded JSON object

    @property
    def accepted(self) -> bool:
        return self.result is not None and self.result.accepted

    @property
    def confirmed(self) -> bool:
        return self.accepted and self.mode_confirmed

    def describe(self) -> str:
        """A few lines saying what happened."""
        action = "e-stop" if self.engaged else "e-stop release"
        if self.result is None:
            said = f"no result for {action} request {self.request_id} (is the robot running?)"
        elif self.accepted:
            said = f"the robot accepted the {action} (request {self.request_id})"
        else:
            said = f"the robot REFUSED the {action}: {mqtt.printable(self.result.error, 300)}"
        mode = ("no telemetry/mode message" if self.mode is None
                else f"mode is {mqtt.printable(repr(self.mode), 60)}")
        bad = (f"\nignored {self.bad_payloads} bad payloads meanwhile"
               if self.bad_payloads else "")
        verdict = "CONFIRMED" if self.confirmed else "NOT CONFIRMED"
        return f"{said}\n{mode}{bad}\n{action} {verdict}"


async def send_estop(
    config: mqtt.HostMqttConfig,
    *,
    engaged: bool = True,
    timeout_s: float = 5.0,
    request_id: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> EstopOutcome:
    """Send one e-stop (or release) and wait for its result and the mode to follow."""
    rid = request_id or str(uuid.uuid4())
    result: CommandResult | None = None
    mode: str | None = None
    mode_confirmed = False
    bad_payloads = 0
    async with mqtt.connect(config, "estop") as client:
        result_topic, mode_topic = config.topic("cmd/result"), config.topic("telemetry/mode")
        # Subscribed before sending: the answer cannot slip past us.
        await client.subscribe([(result_topic, 1), (mode_topic, 0)])
        body = mqtt.command_payload(config, "estop", {"engaged": engaged, "request_id": rid})
        await client.publish(config.topic("cmd/estop"), body, qos=1)
        deadline_s = clock() + timeout_s
        while (now_s := clock()) < deadline_s:
            message = await mqtt.next_message(client, deadline_s - now_s)
            if message is None:
                break
            topic = str(message.topic)
            try:  # the operator API's records (zima.onboard.api), checked
                payload = mqtt.payload_object(message.payload)
                if topic == result_topic:
                    answer = CommandResult.from_json(payload)
                    if answer.request_id == rid:
                        result = answer
                        if not answer.accepted:
                            break  # refused: the mode will not follow
                elif topic == mode_topic:
                    mode = ModeRecord.from_json(payload).mode.value
            except ValueError:  # InputError, RecordError: any bytes; the answer may still come
                bad_payloads += 1
                continue
            # The latest mode decides: one in flight before the command was handled still
            # says "estop" on release, and the next one must then say otherwise.
            mode_confirmed = mode is not None and (mode == "estop") == engaged
            if result is not None and mode_confirmed:
                break
    return EstopOutcome(engaged, rid, result, mode, mode_confirmed, bad_payloads)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mqtt.add_connection_arguments(parser)
    parser.add_argument("--release", action="store_true",
                        help="release the e-stop (engaged=false) instead of engaging it")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S",
                        help="wait this long for the result and the mode (default: 5)")


def run(args: argparse.Namespace) -> int:
    problem = mqtt.seconds_problem(("--timeout", args.timeout))
    if problem is not None:
        sys.stderr.write(f"zima estop: {problem}\n")
        return EXIT_ERROR
    try:
        config = mqtt.config_from_args(args)
        outcome = asyncio.run(send_estop(config, engaged=not args.release, timeout_s=args.timeout))
    except mqtt.HostMqttError as exc:
        sys.stderr.write(f"zima estop: {exc}\n")
        return EXIT_ERROR
    sys.stdout.write(outcome.describe() + "\n")
    if outcome.confirmed:
        return EXIT_OK
    return EXIT_ERROR if outcome.result is not None and not outcome.accepted else EXIT_UNCONFIRMED
