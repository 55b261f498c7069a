"""The service part: sd_notify against real sockets, the unit under systemd-analyze, the
udev rule's syntax, and ``zima onboard install`` into a scratch root."""

import argparse
import asyncio
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from zima.onboard import install as installer
from zima.onboard.install import InstallError, install
from zima.onboard.sdnotify import Notifier, watchdog_loop

SERVICE = Path(installer.__file__).parent / "service"
UNIT = SERVICE / "zima-onboard.service"
RULES = SERVICE / "99-zima-mcu.rules"
HANG_GUARD_S = 10.0


# --- sd_notify -------------------------------------------------------------------------


@pytest.fixture
def notify_path() -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket at a short path (sun_path holds 107 bytes; tmp_path may not)."""
    with tempfile.TemporaryDirectory(prefix="zsd", dir="/tmp") as folder:
        path = f"{folder}/notify"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(path)
            sock.settimeout(HANG_GUARD_S)
            yield path, sock


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock`` (none more will come)."""
    sock.settimeout(0)
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (BlockingIOError, TimeoutError):
            return out


def test_notifier_sends_the_sd_notify_fields(notify_path: tuple[str, socket.socket]) -> None:
    path, sock = notify_path
    with Notifier({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready("driving")
        assert sock.recv(4096) == b"READY=1\nSTATUS=driving"
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        # A newline in a status must not start a forged field of its own.
        assert notifier.status("link up\nREADY=1")
        assert sock.recv(4096) == b"STATUS=link up READY=1"
        assert notifier.reloading()
        assert re.fullmatch(rb"RELOADING=1\nMONOTONIC_USEC=\d+", sock.recv(4096))
        assert notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        with pytest.raises(ValueError, match="KEY=value"):
            notifier.notify("READY=1\nSTOPPING=1")


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"zima-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(HANG_GUARD_S)
        with Notifier({"NOTIFY_SOCKET": "@" + name}) as notifier:
            assert notifier.ready()
            assert sock.recv(4096) == b"READY=1"


def test_without_a_socket_every_call_is_a_no_op() -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
        notifier = Notifier(env)
        assert not notifier.enabled
        assert not notifier.ready("x")
        assert not notifier.watchdog()
        assert not notifier.status("x")
        assert not notifier.stopping()
        assert not notifier.reloading()


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    with Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}) as notifier:
        assert notifier.enabled
        assert not notifier.watchdog()
        assert not notifier.watchdog()


def test_watchdog_period_is_half_the_interval_and_only_for_this_process() -> None:
    me = str(os.getpid())
    assert Notifier({"WATCHDOG_USEC": "5000000"}).watchdog_period_s() == 2.5
    assert Notifier({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": me}).watchdog_period_s() == 2.5
    # Inherited from a parent that systemd watches: not ours to ping.
    assert Notifier({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}).watchdog_period_s() is None
    for bad in ({}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "soon"}):
        assert Notifier(bad).watchdog_period_s() is None


def test_watchdog_loop_pings_only_while_healthy(notify_path: tuple[str, socket.socket]) -> None:
    path, sock = notify_path
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    assert notifier.watchdog_period_s() == 0.01
    # healthy(): 3 ticks, 2 stalls, 1 tick, then stalled for good; the loop is stopped at 9.
    answers = [True, True, True, False, False, True, False, False, False]
    calls = 0

    async def main() -> None:
        nonlocal calls
        done = asyncio.Event()

        def healthy() -> bool:
            nonlocal calls
            calls += 1
            if calls == len(answers):
                done.set()
            return answers[calls - 1]

        task = asyncio.create_task(watchdog_loop(notifier, healthy))
        await asyncio.wait_for(done.wait(), HANG_GUARD_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with notifier:
        asyncio.run(main())
    assert calls == len(answers)
    stalled = "STATUS=control loop stalled: watchdog pings withheld"
    assert received(sock) == [
        "WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1", stalled,
        "WATCHDOG=1", "STATUS=control loop ticking again", stalled,
    ]


def test_watchdog_loop_without_a_watchdog_returns_at_once() -> None:
    asyncio.run(asyncio.wait_for(watchdog_loop(Notifier({}), lambda: True), HANG_GUARD_S))


def test_a_child_process_notifies_through_the_environment(
    notify_path: tuple[str, socket.socket],
) -> None:
    """As under systemd: the runtime's process finds the socket and the watchdog in its env."""
    path, sock = notify_path
    child = textwrap.dedent("""
        import asyncio, itertools
        from zima.onboard.sdnotify import Notifier, watchdog_loop

        async def main():
            notifier = Notifier()
            notifier.ready("up")
            ticks = itertools.count()
            # Healthy for 4 checks, then wedged; exit after 10 checks.
            def healthy():
                n = next(ticks)
                if n == 10:
                    raise SystemExit(0)
                return n < 4
            try:
                await watchdog_loop(notifier, healthy)
            finally:
                notifier.stopping()

        asyncio.run(main())
    """)
    env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}
    env.pop("WATCHDOG_PID", None)
    done = subprocess.run([sys.executable, "-c", child], env=env, timeout=HANG_GUARD_S,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert received(sock) == [
        "READY=1\nSTATUS=up", *["WATCHDOG=1"] * 4,
        "STATUS=control loop stalled: watchdog pings withheld", "STOPPING=1",
    ]


# --- the unit --------------------------------------------------------------------------


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values, in order (systemd keys may repeat)."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def test_unit_is_a_watched_notify_service_that_can_reach_its_devices() -> None:
    s = unit_settings(UNIT.read_text())
    assert s["Service.Type"] == ["notify"]
    assert s["Service.NotifyAccess"] == ["main"]
    assert s["Service.WatchdogSec"] == ["5"]
    assert s["Service.Restart"] == ["on-failure"]
    assert s["Service.ExecStart"] == [
        f"{installer.EXEC_PATH} onboard run --config {installer.CONFIG_PATH}"]
    assert s["Service.User"] == ["zima"]
    assert s["Service.SupplementaryGroups"] == ["dialout video"]
    assert s["Service.StateDirectory"] == ["zima"]  # = installer.STATE_DIR, writable
    assert Path("/var/lib/zima") == installer.STATE_DIR
    assert s["Service.ProtectSystem"] == ["strict"]
    # These would hide /dev/zima-mcu and the cameras.
    assert "Service.PrivateDevices" not in s
    assert "Service.DevicePolicy" not in s
    # The broker is optional.
    assert "mosquitto.service" in s["Unit.Wants"][0]
    assert "Unit.Requires" not in s
    assert "Unit.BindsTo" not in s


def verify_in_root(root: Path, unit: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``unit`` installed under ``root``.

    ``--root`` resolves ExecStart and the units ours pulls in inside ``root``, so the
    system's own units are copied in beside it and the ExecStart binary is a stub.
    """
    assert shutil.which("systemd-analyze"), "Debian package systemd is missing"
    system_units = root / "usr/lib/systemd/system"
    if not system_units.exists():
        shutil.copytree("/usr/lib/systemd/system", system_units, symlinks=True)
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", unit],
                          capture_output=True, text=True, timeout=60, check=False)


def stub_exec_start(root: Path) -> None:
    stub = root / installer.EXEC_PATH.relative_to("/")
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)


def test_installed_unit_passes_systemd_analyze_verify(tmp_path: Path, config: Path) -> None:
    install(tmp_path, config_source=config, run_commands=False)
    stub_exec_start(tmp_path)
    done = verify_in_root(tmp_path, "zima-onboard.service")
    # verify only warns (exit 0) about unparsable lines: any output is a failure.
    # (It does not look up User=: a missing user fails only at start, so install creates it.)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_catches_a_broken_unit(tmp_path: Path, config: Path) -> None:
    install(tmp_path, config_source=config, run_commands=False)
    done = verify_in_root(tmp_path, "zima-onboard.service")
    assert done.returncode != 0
    assert f"{installer.EXEC_PATH} is not executable" in done.stderr
    stub_exec_start(tmp_path)
    units = tmp_path / "etc/systemd/system"
    broken = UNIT.read_text().replace("WatchdogSec=5", "WatchdogSec=5 parsecs")
    (units / "broken.service").write_text(broken)
    done = verify_in_root(tmp_path, "broken.service")
    assert "Failed to parse" in done.stderr


# --- the udev rule ---------------------------------------------------------------------

# udev's rule grammar: comma-separated KEY[{attr}] OP "value" (udev(7)).
_RULE_PAIR = re.compile(r'\s*([A-Z_]+)(?:\{([^}]+)\})?\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*')
_MATCH_KEYS = {"ACTION", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "ATTRS", "ATTR", "ENV",
               "DRIVERS", "TAG", "TAGS"}
_ASSIGN_KEYS = {"SYMLINK", "GROUP", "MODE", "OWNER", "TAG", "ENV", "RUN", "NAME", "ATTR"}


def parse_rules(text: str) -> list[dict[str, tuple[str, str]]]:
    """Each rule as {key or key{attr}: (operator, value)}; raises on a malformed pair."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rule: dict[str, tuple[str, str]] = {}
        for part in line.split(","):
            m = _RULE_PAIR.fullmatch(part)
            assert m, f"line {number}: malformed key/value pair {part!r}"
            key, attr, op, value = m.groups()
            known = _MATCH_KEYS if op in ("==", "!=") else _ASSIGN_KEYS
            assert key in known, f"line {number}: {key} cannot take {op}"
            rule[f"{key}{{{attr}}}" if attr else key] = (op, value)
        rules.append(rule)
    return rules


def test_udev_rule_links_every_mega_at_dev_zima_mcu() -> None:
    rules = parse_rules(RULES.read_text())
    ids = {(r["ATTRS{idVendor}"][1], r["ATTRS{idProduct}"][1]) for r in rules}
    assert ids == {("2341", "0042"), ("2341", "0010"), ("1a86", "7523")}
    for rule in rules:
        assert rule["SUBSYSTEM"] == ("==", "tty")
        assert rule["SYMLINK"] == ("+=", "zima-mcu")
        assert rule["GROUP"] == ("=", "dialout")
        assert rule["MODE"] == ("=", "0660")
        assert rule["TAG"] == ("+=", "systemd")
    # udev's own check where it has one (systemd >= 253; Debian 12 has 252).
    udevadm = shutil.which("udevadm")
    help_text = "" if udevadm is None else subprocess.run(
        [udevadm, "--help"], capture_output=True, text=True, check=False).stdout
    if re.search(r"^\s+verify\b", help_text, re.MULTILINE):
        done = subprocess.run([udevadm or "", "verify", str(RULES)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_rule_parser_rejects_malformed_rules() -> None:
    with pytest.raises(AssertionError, match="malformed"):
        parse_rules('SUBSYSTEM=="tty", SYMLINK+=zima-mcu')
    with pytest.raises(AssertionError, match="cannot take"):
        parse_rules('SUBSYSTEM="tty"')


# --- zima onboard install --------------------------------------------------------------


@pytest.fixture
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "onboard.toml"
    path.write_text('robot_id = "zima"\n')
    return path


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_into_a_root_twice(tmp_path: Path, config: Path) -> None:
    first = install(tmp_path, config_source=config, run_commands=False)
    unit = tmp_path / "etc/systemd/system/zima-onboard.service"
    rule = tmp_path / "etc/udev/rules.d/99-zima-mcu.rules"
    conf = tmp_path / "etc/zima/onboard.toml"
    state = tmp_path / "var/lib/zima"
    assert unit.read_text() == UNIT.read_text()
    assert rule.read_text() == RULES.read_text()
    assert conf.read_text() == config.read_text()
    assert (mode_of(unit), mode_of(rule), mode_of(conf), mode_of(state)) == (
        0o644, 0o644, 0o640, 0o750)
    assert "write /etc/systemd/system/zima-onboard.service (0644)" in first
    assert any(line.startswith("skipped creating user zima") for line in first)
    assert any(line.startswith("skipped systemctl daemon-reload") for line in first)
    assert any(line.startswith(f"warning: {installer.EXEC_PATH}") for line in first)

    conf.write_text('robot_id = "edited"\n')  # the operator's edits survive a reinstall
    second = install(tmp_path, config_source=config, run_commands=False)
    assert not [line for line in second if line.startswith(("write", "create"))]
    assert "unchanged /etc/systemd/system/zima-onboard.service" in second
    assert conf.read_text() == 'robot_id = "edited"\n'
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                  if p.is_file()) == ["etc/systemd/system/zima-onboard.service",
                                      "etc/udev/rules.d/99-zima-mcu.rules",
                                      "etc/zima/onboard.toml"]


def test_install_repairs_a_changed_unit_and_names_another_user(
    tmp_path: Path, config: Path,
) -> None:
    unit = tmp_path / "etc/systemd/system/zima-onboard.service"
    install(tmp_path, config_source=config, run_commands=False)
    unit.write_text("stale")
    unit.chmod(0o600)
    install(tmp_path, user="robot", config_source=config, run_commands=False)
    s = unit_settings(unit.read_text())
    assert (s["Service.User"], s["Service.Group"]) == (["robot"], ["robot"])
    assert mode_of(unit) == 0o644


def test_install_defaults_to_the_shipped_sample_config(tmp_path: Path) -> None:
    install(tmp_path, run_commands=False)
    assert (tmp_path / "etc/zima/onboard.toml").read_text() == installer.DEFAULT_CONFIG.read_text()


def test_dry_run_writes_nothing(tmp_path: Path, config: Path) -> None:
    lines = install(tmp_path, config_source=config, dry_run=True)
    assert "would write /etc/udev/rules.d/99-zima-mcu.rules (0644)" in lines
    assert "would create /var/lib/zima/ (0750)" in lines
    assert list(tmp_path.iterdir()) == []


def test_install_refuses_bad_input(tmp_path: Path, config: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InstallError, match="does not exist"):
        install(tmp_path, config_source=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("robot_id = \n")
    with pytest.raises(InstallError, match="not valid TOML"):
        install(tmp_path, config_source=broken)
    with pytest.raises(InstallError, match="invalid user name"):
        install(tmp_path, user="Zima; rm", config_source=config)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(InstallError, match="needs root"):
        install(Path("/"), config_source=config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.toml"]


def test_cli_installs_or_says_what_is_wrong(tmp_path: Path, config: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    installer.add_arguments(parser)
    args = parser.parse_args(["--root", str(tmp_path), "--config", str(config), "--no-commands"])
    assert installer.run(args) == 0
    assert "write /etc/zima/onboard.toml (0640)" in capsys.readouterr().out
    args = parser.parse_args(["--root", str(tmp_path), "--config", str(tmp_path / "nope")])
    assert installer.run(args) == 1
    assert "error: config file" in capsys.readouterr().err
