"""A real Mosquitto on loopback for tests, with the sample ACL and real passwords.

``Broker`` starts ``mosquitto`` (Debian package ``mosquitto``) on a free port with
onboard/mosquitto.acl.example, users ``ROBOT`` (the robot's username is its id: the ACL's
``%u`` patterns), ``operator`` and ``alice``; ``extra_acl`` appends lines (e.g. what a host
tool needs beyond the sample). The ``broker`` fixture is one such broker per test;
tests/conftest.py registers this module as a plugin, so every test folder has it.

``Broker(..., sample_conf=True, tls=make_test_ca(folder))`` runs onboard/mosquitto.conf.example
itself instead of a minimal config (paths, ports and persistence swapped for the test's, its
commented TLS listener opened on ``tls_port`` with a CA made here by ``openssl``): what the
sample says is what is tested. Without it, clients keep their own ids (the fixture's tests
open several clients of one account at once). The process itself is :mod:`zima.mosquitto`'s,
as `zima sim run`'s broker is.
"""

import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zima.host.mqtt import HostMqttConfig
from zima.mosquitto import Mosquitto, free_port, run_lines
from zima.onboard.config import MqttSection
from zima.onboard.mqtt_config import MqttConfig

__all__ = ["ALICE_PASSWORD", "OPERATOR_PASSWORD", "ROBOT", "ROBOT_PASSWORD", "Broker",
           "TestCa", "broker", "make_test_ca"]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ACL = ROOT / "onboard" / "mosquitto.acl.example"
SAMPLE_CONF = ROOT / "onboard" / "mosquitto.conf.example"
ROBOT = "zima-test"  # the robot's username is its id: the sample ACL's %u patterns
ROBOT_PASSWORD = "robot-secret"
OPERATOR_PASSWORD = "operator-secret"
ALICE_PASSWORD = "alice-secret"


@dataclass(frozen=True)
class TestCa:
    """A CA and the broker certificate it signed (for localhost and 127.0.0.1)."""

    __test__ = False  # not a pytest class
    ca: Path
    cert: Path
    key: Path


def make_test_ca(directory: Path) -> TestCa:
    """A throwaway CA and a server certificate signed by it, made with ``openssl``."""
    tool = shutil.which("openssl")
    assert tool is not None, "Debian package openssl is missing"
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key = directory / "ca.key", directory / "ca.crt", directory / "server.key"
    csr, cert, ext = directory / "server.csr", directory / "server.crt", directory / "ext.cnf"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    for argv in (
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "2", "-subj", "/CN=zima test CA", "-keyout", ca_key, "-out", ca],
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-subj", "/CN=localhost", "-keyout", key, "-out", csr],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-extfile", ext, "-out", cert],
    ):
        subprocess.run([tool, *map(str, argv)], check=True, capture_output=True)
    key.chmod(0o600)
    return TestCa(ca, cert, key)


class Broker:
    """A Mosquitto process with the sample ACL, on a fixed loopback port; restartable."""

    def __init__(self, directory: Path, extra_acl: str = "", *, sample_conf: bool = False,
                 tls: TestCa | None = None) -> None:
        self.port = free_port()
        self.tls_port = free_port() if tls is not None else None
        self.conf = directory / "mosquitto.conf"
        passwd = directory / "passwd"
        tool = shutil.which("mosquitto_passwd")
        assert tool is not None
        passwd.touch(mode=0o600)
        for user, password in ((ROBOT, ROBOT_PASSWORD), ("operator", OPERATOR_PASSWORD),
                               ("alice", ALICE_PASSWORD)):
            subprocess.run([tool, "-b", str(passwd), user, password], check=True)
        acl = SAMPLE_ACL
        if extra_acl:
            acl = directory / "acl"
            acl.write_text(SAMPLE_ACL.read_text() + "\n" + extra_acl + "\n")
        if sample_conf:
            text = self._from_sample(passwd, acl, tls)
        else:
            assert tls is None, "TLS comes with the sample config (sample_conf=True)"
            text = (f"per_listener_settings false\nallow_anonymous false\n"
                    f"password_file {passwd}\nacl_file {acl}\n"
                    f"listener {self.port} 127.0.0.1\n")
        self.conf.write_text(text + run_lines())
        self.log = directory / "mosquitto.log"
        self.mosquitto = Mosquitto(self.conf, self.port, self.log)

    def _from_sample(self, passwd: Path, acl: Path, tls: TestCa | None) -> str:
        """onboard/mosquitto.conf.example with the test's paths and ports; each line it
        swaps must be in the sample, so a changed sample fails here, not silently."""
        swaps = {
            "password_file /etc/mosquitto/zima.passwd": f"password_file {passwd}",
            "acl_file /etc/mosquitto/zima.acl": f"acl_file {acl}",
            "listener 1883 127.0.0.1": f"listener {self.port} 127.0.0.1",
            "persistence true": "persistence false",
            "persistence_location /var/lib/mosquitto/": "",
        }
        if tls is not None:
            swaps.update({
                "#listener 8883": f"listener {self.tls_port} 127.0.0.1",
                "#use_username_as_clientid true": "use_username_as_clientid true",
                "#cafile /etc/mosquitto/ca_certificates/zima-ca.crt": f"cafile {tls.ca}",
                "#certfile /etc/mosquitto/certs/zima.crt": f"certfile {tls.cert}",
                "#keyfile /etc/mosquitto/certs/zima.key": f"keyfile {tls.key}",
                "#tls_version tlsv1.2": "tls_version tlsv1.2",
            })
        lines = SAMPLE_CONF.read_text().splitlines()
        missing = [line for line in swaps if line not in lines]
        assert not missing, f"the sample config no longer has {missing}"
        return "".join(swaps.get(line, line) + "\n" for line in lines)

    def start(self) -> None:
        """Start the broker (again: the config file is read anew) and wait until it listens."""
        self.mosquitto.start()
        self.mosquitto.wait_ready()

    def stop(self) -> None:
        self.mosquitto.stop()

    def robot_mqtt(self, folder: Path, *, rates_hz: Mapping[str, float] | None = None,
                   **changes: Any) -> MqttSection:
        """The runtime's ``[mqtt]`` section signed in here as ``ROBOT`` (its password in
        ``folder/mqtt-password``): ``rates_hz`` over the default stream rates (a test waits
        less for a record), ``changes`` to other ``MqttConfig`` fields."""
        password = folder / "mqtt-password"
        password.write_text(ROBOT_PASSWORD + "\n")
        return MqttSection(enabled=True, password_file=password, broker=MqttConfig(
            robot_id=ROBOT, host="127.0.0.1", port=self.port, username=ROBOT,
            rates_hz={**MqttConfig().rates_hz, **(rates_hz or {})}, **changes))

    def operator_config(self) -> HostMqttConfig:
        """The host tools' connection as ``operator``."""
        return HostMqttConfig(ROBOT, "127.0.0.1", self.port, "operator", OPERATOR_PASSWORD)

    def operator_flags(self) -> list[str]:
        """The host commands' flags naming the robot, this broker and ``operator`` (the
        password comes from a file or ``ZIMA_MQTT_PASSWORD``)."""
        return ["--robot", ROBOT, "--broker", f"127.0.0.1:{self.port}", "--username", "operator"]

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running broker (a test signals it: SIGHUP rereads the password file)."""
        return self.mosquitto.process


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()
