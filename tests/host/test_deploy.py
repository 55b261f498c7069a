"""`zima deploy` over a real OpenSSH server on loopback, against the real onboard runtime
(emulated board, real Mosquitto): verify, upload, atomic install, hot reload, rollback.

The ``sshd`` fixture runs Debian's ``/usr/sbin/sshd`` (package ``openssh-server``) on a free
port with a temporary host key, authorised client key and known_hosts file; the "robot
computer" is a directory of ``tmp_path``, reached as the current user.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pytest

from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, Broker
from tests.onboard.helpers import run
from tests.onboard.test_policy_guard import BRIGHT, DARK, nan_when_live, observations
from tests.onboard.test_runtime import constant_policy, running, runtime_config
from zima.cli import main
from zima.contract import Action, Contract
from zima.emulator import EmulatedBoard
from zima.host.deploy import RemoteLayout, SshTarget, deploy
from zima.mosquitto import free_port
from zima.onboard.link_config import LinkConfig
from zima.onboard.policy_runner import PolicyConfig

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class Sshd:
    port: int
    identity: Path  # the client's private key, authorised for the current user
    known_hosts: Path

    def target(self) -> SshTarget:
        return SshTarget("127.0.0.1", getpass.getuser(), self.port, self.identity,
                         (f"UserKnownHostsFile={self.known_hosts}",
                          "StrictHostKeyChecking=yes"))

    def argv(self, model: Path, robot_root: Path, *extra: str) -> list[str]:
        """`zima deploy` of ``model`` into ``robot_root`` (the link is policy.onnx there)."""
        return ["deploy", str(model), "--host", "127.0.0.1", "--port", str(self.port),
                "--user", getpass.getuser(), "--identity", str(self.identity),
                "--ssh-option", f"UserKnownHostsFile={self.known_hosts}",
                "--ssh-option", "StrictHostKeyChecking=yes", "--connect-timeout", "5",
                "--remote-path", str(robot_root / "policy.onnx"), *extra]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    directory = tmp_path / "sshd"
    directory.mkdir()
    _keygen(directory / "host_key")
    _keygen(directory / "client_key")
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    port = free_port()
    host_key = (directory / "host_key.pub").read_text().split()
    (directory / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (directory / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {directory / 'host_key'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        f"PidFile {directory / 'sshd.pid'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    if os.geteuid() == 0:  # sshd's compiled-in privilege separation directory (tmpfiles.d
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # makes it on a booted Debian)
    log = (directory / "sshd.log").open("wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(directory / "sshd_config")],
                               stderr=log)
    try:
        deadline = time.monotonic() + 10.0
        while b"Server listening" not in (directory / "sshd.log").read_bytes():
            assert process.poll() is None, (directory / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.02)
        yield Sshd(port, directory / "client_key", directory / "known_hosts")
    finally:
        process.terminate()
        process.wait(timeout=5)
        log.close()


def robot_root(tmp_path: Path) -> Path:
    root = tmp_path / "robot"
    root.mkdir()
    return root


def test_install_switches_the_link_keeps_the_newest_and_reuses_what_is_there(
    sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = robot_root(tmp_path)
    # What the installer leaves: model_path a plain file. Deploy keeps it, by its hash.
    first = constant_policy(root / "policy.onnx", Action.STOP)
    first_sha = _sha256(first)
    models = [constant_policy(tmp_path / f"{a.name}.onnx", a)
              for a in (Action.FORWARD, Action.LEFT, Action.RIGHT)]
    for model in models:
        assert main(sshd.argv(model, root, "--no-reload", "--keep", "2")) == 0
    out = capsys.readouterr().out
    assert f"(previous: {root}/models/{first_sha}.onnx)" in out
    assert "uploaded 0.0 MB in" in out
    newest = root / "models" / f"{_sha256(models[-1])}.onnx"
    assert (root / "policy.onnx").is_symlink()
    assert (root / "policy.onnx").readlink() == newest
    # the newest two, and nothing half-written
    assert sorted(p.name for p in (root / "models").iterdir()) == sorted(
        f"{_sha256(m)}.onnx" for m in models[1:])
    assert not list(root.glob("*.zima-new"))
    # a model already on the robot is not uploaded again
    assert main(sshd.argv(models[1], root, "--no-reload")) == 0
    out = capsys.readouterr().out
    assert "already on 127.0.0.1: not uploaded again" in out
    assert (root / "policy.onnx").readlink() == root / "models" / f"{_sha256(models[1])}.onnx"


def test_a_model_with_the_wrong_contract_is_refused_before_any_upload(
    sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = robot_root(tmp_path)
    model = constant_policy(tmp_path / "other.onnx", Action.LEFT, Contract(chunk_len=6))
    assert main(sshd.argv(model, root, "--no-reload")) == 1
    assert "chunk_len" in capsys.readouterr().err
    assert list(root.iterdir()) == []  # nothing reached the robot


def test_a_model_bad_on_its_shipped_observations_is_refused_before_any_upload(
    sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The model is finite on random input and NaN on bright (live) frames; the export
    shipped bright frames in it: deploy runs it on them and uploads nothing."""
    root = robot_root(tmp_path)
    live = nan_when_live(tmp_path / "live.onnx", samples=observations(BRIGHT))
    assert main(sshd.argv(live, root, "--no-reload")) == 1
    err = capsys.readouterr().err
    assert "bad output on shipped sample 1 of 2" in err
    assert "logits are not finite" in err
    assert list(root.iterdir()) == []  # nothing reached the robot
    # The same model with observations it is finite on goes through, and says so.
    dark = nan_when_live(tmp_path / "dark.onnx", samples=observations(DARK))
    assert main(sshd.argv(dark, root, "--no-reload")) == 0
    assert "outputs on its 2 shipped observations finite and in range" in (
        capsys.readouterr().out)
    assert (root / "policy.onnx").readlink() == root / "models" / f"{_sha256(dark)}.onnx"


def test_ssh_failures_are_clear_errors(
    sshd: Sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = robot_root(tmp_path)
    model = constant_policy(tmp_path / "m.onnx", Action.LEFT)
    argv = sshd.argv(model, root, "--no-reload")
    closed = free_port()
    assert main([*argv, "--port", str(closed)]) == 1
    assert f"cannot reach 127.0.0.1 port {closed} over SSH" in capsys.readouterr().err
    stranger = tmp_path / "stranger"
    _keygen(stranger)
    assert main([*argv, "--identity", str(stranger)]) == 1
    assert "127.0.0.1 port" in (err := capsys.readouterr().err)
    assert "refused the SSH login" in err
    missing = tmp_path / "no-such-dir" / "policy.onnx"
    assert main([*argv, "--remote-path", str(missing)]) == 1
    assert f"no directory {missing.parent}" in capsys.readouterr().err
    assert list(root.iterdir()) == []


def test_no_runtime_answering_means_nothing_is_changed(
    sshd: Sshd, broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = robot_root(tmp_path)
    model = constant_policy(tmp_path / "m.onnx", Action.LEFT)
    password = tmp_path / "operator-password"
    password.write_text(OPERATOR_PASSWORD)
    argv = sshd.argv(model, root, *broker.operator_flags(), "--password-file", str(password),
                     "--timeout", "0.5")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"no telemetry/policy from robot {ROBOT!r} within 0.5 s" in err
    assert list(root.iterdir()) == []


def test_deploy_to_the_running_runtime_confirms_and_rolls_back_a_refused_model(  # noqa: PLR0917
    sshd: Sshd, broker: Broker, board: EmulatedBoard, link_config: LinkConfig,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    root = robot_root(tmp_path)
    link = root / "policy.onnx"
    constant_policy(link, Action.FORWARD)
    operator_password = tmp_path / "operator-password"
    operator_password.write_text(OPERATOR_PASSWORD + "\n")
    mqtt = broker.robot_mqtt(tmp_path, rates_hz={"policy": 10.0})
    config = runtime_config(tmp_path, link_config, robot_id=ROBOT, mqtt=mqtt,
                            policy=PolicyConfig(model_path=link, temperature=0.0, seed=0))
    mqtt_flags = [*broker.operator_flags(), "--password-file", str(operator_password),
                  "--timeout", "15"]
    operator = broker.operator_config()
    good = constant_policy(tmp_path / "left.onnx", Action.LEFT)
    # Made for a chunk length this runtime does not have: passes the check of a host
    # whose contract says so, and the runtime refuses it.
    other = Contract(chunk_len=6)
    alien = constant_policy(tmp_path / "alien.onnx", Action.RIGHT, other)

    async def main_() -> None:
        async with running(config) as runtime:
            first = runtime.model_sha256
            assert first is not None
            code = await asyncio.to_thread(main, sshd.argv(good, root, *mqtt_flags))
            assert code == 0, capsys.readouterr()
            assert runtime.model_sha256 == _sha256(good)
            assert link.readlink() == root / "models" / f"{_sha256(good)}.onnx"
            out = capsys.readouterr().out
            assert f"robot {ROBOT} runs model {first[:16]}…" in out
            assert f"reloaded: the runtime reports model {_sha256(good)[:16]}…" in out

            # The API, with the host's contract: the CLI's is zima.contract.DEFAULT.
            lines: list[str] = []
            outcome = await deploy(
                alien, sshd.target(), RemoteLayout(PurePosixPath(link)), operator,
                contract=other, timeout_s=15.0, say=lines.append)
            out = "\n".join(lines)
            assert outcome.exit_status == 2, out
            assert runtime.model_sha256 == _sha256(good)  # the old one kept driving
            assert link.readlink() == root / "models" / f"{_sha256(good)}.onnx"
            assert outcome.rolled_back
            assert outcome.rollback_confirmed
            assert outcome.error is not None
            assert "chunk_len" in outcome.error
            assert "NOT confirmed: the runtime refused the model" in out
            assert f"the runtime reports the previous model {_sha256(good)[:16]}… again" in out

    run(main_, guard_s=90)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
