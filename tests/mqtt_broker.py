"""A real Mosquitto on loopback for tests, with the sample ACL and real passwords.

``Broker`` starts ``mosquitto`` (Debian package ``mosquitto``) on a free port with
onboard/mosquitto.acl.example, users ``ROBOT`` (the robot's username is its id: the ACL's
``%u`` patterns) and ``operator``; ``extra_acl`` appends lines (e.g. what a host tool
needs beyond the sample). The ``broker`` fixture is one such broker per test; tests/conftest.py
registers this module as a plugin, so every test folder has it.
"""

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["OPERATOR_PASSWORD", "ROBOT", "ROBOT_PASSWORD", "Broker", "broker", "free_port"]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ACL = ROOT / "onboard" / "mosquitto.acl.example"
ROBOT = "zima-test"  # the robot's username is its id: the sample ACL's %u patterns
ROBOT_PASSWORD = "robot-secret"
OPERATOR_PASSWORD = "operator-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A Mosquitto process with the sample ACL, on a fixed loopback port; restartable."""

    def __init__(self, directory: Path, extra_acl: str = "") -> None:
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        passwd = directory / "passwd"
        tool = shutil.which("mosquitto_passwd")
        assert tool is not None
        passwd.touch(mode=0o600)
        for user, password in ((ROBOT, ROBOT_PASSWORD), ("operator", OPERATOR_PASSWORD)):
            subprocess.run([tool, "-b", str(passwd), user, password], check=True)
        acl = SAMPLE_ACL
        if extra_acl:
            acl = directory / "acl"
            acl.write_text(SAMPLE_ACL.read_text() + "\n" + extra_acl + "\n")
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "mosquitto")
        self.conf.write_text(
            f"per_listener_settings false\nallow_anonymous false\n"
            f"password_file {passwd}\nacl_file {acl}\n"
            f"listener {self.port} 127.0.0.1\nuser {user}\nlog_dest stderr\n"
        )
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
        assert binary is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([binary, "-c", str(self.conf)], stderr=log)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.02)
            else:
                return
        raise RuntimeError(f"mosquitto did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=5)
            self.process = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()
