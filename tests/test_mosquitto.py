"""zima.mosquitto: the one launcher of `zima sim run`'s broker and the tests' brokers; and
zima.processes.terminate, which stops it (and the emulator)."""

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from zima.mosquitto import Mosquitto, find_mosquitto, free_port, run_lines
from zima.processes import terminate

needs_mosquitto = pytest.mark.skipif(find_mosquitto() is None, reason="Debian's mosquitto")


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _broker(folder: Path, settings: str) -> Mosquitto:
    """A broker on a free loopback port with ``settings`` after its listener line."""
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\n{settings}\n" + run_lines())
    return Mosquitto(conf, port, folder / "mosquitto.log")


@pytest.mark.broker
@needs_mosquitto
def test_a_broker_starts_stops_and_starts_again_on_its_port(tmp_path: Path) -> None:
    broker = _broker(tmp_path, "allow_anonymous true")
    port = broker.port
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


@pytest.mark.broker
@needs_mosquitto
def test_a_broker_that_cannot_start_says_why(tmp_path: Path) -> None:
    broker = _broker(tmp_path, "no_such_option 1")
    try:
        broker.start()
        with pytest.raises(OSError, match=r"did not start.*no_such_option"):
            broker.wait_ready(timeout_s=5.0)
    finally:
        broker.stop()


def test_terminate_kills_a_child_that_ignores_sigterm() -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('up', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"up\n"  # its SIGTERM handler is set
    assert terminate(child, timeout_s=0.2) == -signal.SIGKILL
    child.stdout.close()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert terminate(done, timeout_s=0.2) == 0  # already ended: its status, no signal
