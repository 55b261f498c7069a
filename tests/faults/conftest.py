"""Fixtures of the fault-injection suite: the whole stack of tests/faults/stack.py.

``stack`` has the emulated board (real firmware), a Mosquitto with the sample ACL and the
live cameras running, and a FORWARD policy at ``stack.model``; the test starts the runtime
process (``stack.start_runtime(...)``) with the configuration it needs. Everything is
stopped on leaving, the runtime with SIGTERM (SIGKILL if it hangs).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mqtt_broker import Broker
from tests.onboard.test_runtime import constant_policy
from zima.contract import Action
from zima.emulator import EmulatedBoard, EmulatorConfig

from .stack import LiveCameras, Stack, bright_video


@pytest.fixture
def stack(board: EmulatedBoard, board_config: EmulatorConfig, broker: Broker,
          tmp_path: Path) -> Iterator[Stack]:
    assert board_config.port is not None
    cameras = LiveCameras(bright_video(tmp_path / "camera.avi"))
    running = Stack(board=board, broker=broker, cameras=cameras, directory=tmp_path,
                    port=board_config.port,
                    model=constant_policy(tmp_path / "policy.onnx", Action.FORWARD))
    try:
        yield running
    finally:
        running.close()
