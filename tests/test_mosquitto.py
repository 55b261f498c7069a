"""zima.mosquitto: the one launcher of `zima sim run`'s broker and the tests' brokers."""

import socket
from pathlib import Path

import pytest

from zima.mosquitto import Mosquitto, find_mosquitto, free_port, run_lines

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(find_mosquitto() is None, reason="Debian package mosquitto"),
]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_a_broker_starts_stops_and_starts_again_on_its_port(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + run_lines())
    broker = Mosquitto(conf, port, tmp_path / "mosquitto.log")
    try:
        for _ in range(2):
            broker.start()
            broker.wait_ready()
            assert broker.running
            assert _accepts(port)
            broker.stop()
            assert not broker.running
    finally:
        broker.stop()
    assert "mosquitto" in (tmp_path / "mosquitto.log").read_text()  # both runs logged


def test_a_broker_that_cannot_start_says_why(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nno_such_option 1\n" + run_lines())
    broker = Mosquitto(conf, port, tmp_path / "mosquitto.log")
    try:
        broker.start()
        with pytest.raises(OSError, match=r"did not start.*no_such_option"):
            broker.wait_ready(timeout_s=5.0)
    finally:
        broker.stop()
