"""``zima onboard install`` makes the secrets the config names: owner-only from the first
byte, never printed, kept on a rerun; the robot's MQTT password reaches a real Mosquitto's
password file (and Mosquitto lets the robot in with it), the web certificate serves TLS."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from zima.mosquitto import free_port
from zima.onboard import install as installer
from zima.onboard.install import install, make_self_signed

from .helpers import run

SECRETS = ("etc/zima/web-token", "etc/zima/command-key", "etc/zima/mqtt-password",
           "etc/zima/web-tls.key")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask() -> Iterator[None]:
    """umask 0: a file made with the default mode would be world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_install_makes_owner_only_secrets_and_never_prints_them(
        tmp_path: Path, wide_umask: None, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    installer.add_arguments(parser)
    assert installer.run(parser.parse_args(["--root", str(tmp_path), "--no-commands"])) == 0
    out = capsys.readouterr()
    held = {name: (tmp_path / name).read_text() for name in SECRETS}
    for name in SECRETS:
        assert mode_of(tmp_path / name) == 0o600, name
        assert f"create secret /{name} (0600)" in out.out or name.endswith(".key")
    for name in SECRETS[:3]:
        assert len(held[name].strip()) == 43  # token_urlsafe(32)
        assert held[name].strip() not in out.out + out.err
    assert "PRIVATE KEY" in held["etc/zima/web-tls.key"]
    assert "PRIVATE KEY" not in out.out + out.err
    assert len(set(held.values())) == len(held)  # four different secrets
    cert = tmp_path / "etc/zima/web-tls.crt"
    assert mode_of(cert) == 0o644
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    host = socket.gethostname().split(".")[0]
    assert f"DNS:{host}" in text
    assert "IP Address:127.0.0.1" in text
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
        cert, tmp_path / "etc/zima/web-tls.key")  # a pair a server can use
    # No temporary file is left beside them.
    assert sorted(p.name for p in (tmp_path / "etc/zima").iterdir()) == sorted(
        ["onboard.toml", "web-token", "command-key", "mqtt-password", "web-tls.key",
         "web-tls.crt"])


def test_a_rerun_keeps_the_secrets_and_tightens_loose_ones(tmp_path: Path) -> None:
    install(tmp_path, run_commands=False, make_secrets=True)
    before = {name: (tmp_path / name).read_bytes() for name in SECRETS}
    (tmp_path / "etc/zima/web-token").chmod(0o644)
    lines = install(tmp_path, run_commands=False, make_secrets=True)
    assert {name: (tmp_path / name).read_bytes() for name in SECRETS} == before
    assert "tightened /etc/zima/web-token to 0600" in lines
    assert "kept /etc/zima/command-key (exists)" in lines
    assert mode_of(tmp_path / "etc/zima/web-token") == 0o600
    assert not [line for line in lines if "create secret" in line]


def test_secrets_go_where_the_config_says_and_a_dry_run_makes_none(tmp_path: Path) -> None:
    config = tmp_path / "onboard.toml"
    config.write_text('robot_id = "r7"\n[web]\ntoken_file = "secrets/console"\n'
                      '[mqtt]\ncommand_key_file = "/etc/zima/keys/cmd"\n')
    root = tmp_path / "root"
    lines = install(root, config_source=config, dry_run=True, make_secrets=True)
    assert "would create secret /etc/zima/secrets/console (0600)" in lines
    assert not root.exists()
    install(root, config_source=config, run_commands=False, make_secrets=True)
    assert mode_of(root / "etc/zima/secrets/console") == 0o600
    assert mode_of(root / "etc/zima/keys/cmd") == 0o600
    assert not (root / "etc/zima/web-token").exists()
    install(tmp_path / "bare", config_source=config, run_commands=False)  # the default
    assert not (tmp_path / "bare/etc/zima/secrets").exists()


@pytest.mark.broker
def test_the_robot_logs_in_to_mosquitto_with_the_password_install_made(
        tmp_path: Path) -> None:
    config = tmp_path / "onboard.toml"
    config.write_text('robot_id = "r7"\n')
    root = tmp_path / "root"
    lines = install(root, config_source=config, run_commands=False, make_secrets=True)
    assert "add MQTT user r7 to /etc/mosquitto/zima.passwd" in lines
    passwd = root / "etc/mosquitto/zima.passwd"
    password = (root / "etc/zima/mqtt-password").read_text().strip()
    assert mode_of(passwd) == 0o600
    assert passwd.read_text().startswith("r7:$7$")  # hashed, not the password
    assert password not in passwd.read_text()
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "mosquitto")
    conf.write_text(f"allow_anonymous false\npassword_file {passwd}\n"
                    f"listener {port} 127.0.0.1\nuser {user}\n")
    binary = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
    assert binary is not None
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                time.sleep(0.02)

        async def login(secret: str) -> None:
            async with aiomqtt.Client("127.0.0.1", port, username="r7", password=secret,
                                      timeout=3):
                pass

        run(lambda: login(password))
        with pytest.raises(aiomqtt.MqttError):
            run(lambda: login("not-" + password))
    finally:
        broker.terminate()
        broker.wait(5)


def test_make_self_signed_writes_the_key_owner_only(tmp_path: Path, wide_umask: None) -> None:
    cert, key = tmp_path / "c.crt", tmp_path / "k.key"
    make_self_signed(cert, key, ["robot.local", "10.0.0.7"], days=1)
    assert (mode_of(key), mode_of(cert)) == (0o600, 0o644)
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:robot.local" in text
    assert "IP Address:10.0.0.7" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.crt", "k.key"]
