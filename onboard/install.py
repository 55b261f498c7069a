"""``zima onboard install``: the runtime as a systemd service, the MCU's udev rule, a config.

Puts in place, under ``root`` (``/`` on the robot, a scratch folder in tests)::

    /etc/systemd/system/zima-onboard.service   0644  onboard/service/zima-onboard.service
    /etc/udev/rules.d/99-zima-mcu.rules        0644  onboard/service/99-zima-mcu.rules
    /etc/zima/onboard.toml                     0640  --config FILE, else the shipped
                                                     onboard/onboard.example.toml; an
                                                     existing file is never overwritten
    /var/lib/zima/                             0750  episodes and models, owned by the user

and on the real root (``run_commands``) creates the system user (``useradd --system``, in
``dialout`` and ``video``), then reloads systemd and udev. The service expects the venv at
``/opt/zima/.venv`` (see ``onboard/service/README.md``). Safe to rerun: unchanged files
are left alone. Every step is reported as one line; ``dry_run`` only reports::

    $ sudo /opt/zima/.venv/bin/zima onboard install
    wrote /etc/systemd/system/zima-onboard.service
    ...
    $ sudo systemctl enable --now zima-onboard
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

__all__ = [
    "CONFIG_PATH", "EXEC_PATH", "STATE_DIR", "InstallError", "add_arguments", "install", "run",
]

SERVICE_FILES = Path(__file__).parent / "service"
DEFAULT_CONFIG = Path(__file__).parent / "onboard.example.toml"
UNIT_PATH = Path("/etc/systemd/system/zima-onboard.service")
RULE_PATH = Path("/etc/udev/rules.d/99-zima-mcu.rules")
CONFIG_PATH = Path("/etc/zima/onboard.toml")
STATE_DIR = Path("/var/lib/zima")
EXEC_PATH = Path("/opt/zima/.venv/bin/zima")  # the unit's ExecStart
GROUPS = ("dialout", "video")  # the serial port, the cameras

_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class InstallError(Exception):
    """The installation cannot go on; the message says what to fix."""


def install(
    root: Path = Path("/"),
    *,
    user: str = "zima",
    config_source: Path | None = None,
    dry_run: bool = False,
    run_commands: bool = True,
) -> list[str]:
    """Install the service under ``root``; returns one line per step (see the module doc).

    Commands (useradd, systemctl, udevadm) and file ownership apply only when ``root`` is
    ``/``; elsewhere they are reported as skipped. Raises ``InstallError`` when not root
    on ``/`` (unless ``dry_run``), for a bad user name, or for a missing or invalid config.
    """
    real = root.resolve() == Path("/")
    source = _check(real, user, DEFAULT_CONFIG if config_source is None else config_source,
                    dry_run)
    steps = _Steps(root, dry_run)
    if real and run_commands:
        _ensure_user(steps, user)
    else:
        steps.note(f"skipped creating user {user}: " + _why_no_commands(root, real))
    _put_files(steps, user, source)
    if real:
        # The service reads its config as group <user> and owns its state directory.
        steps.chown(CONFIG_PATH, "root", user)
        steps.chown(STATE_DIR, user, user)
    if not steps.path(EXEC_PATH).exists():
        steps.note(f"warning: {EXEC_PATH} (the unit's ExecStart) does not exist: install "
                   f"zima into /opt/zima/.venv, or edit ExecStart in {UNIT_PATH}")
    if real and run_commands:
        _reload(steps)
    else:
        steps.note("skipped systemctl daemon-reload and udevadm reload: "
                   + _why_no_commands(root, real))
    return steps.lines


def _check(real: bool, user: str, source: Path, dry_run: bool) -> Path:
    if not _USER_NAME.fullmatch(user):
        raise InstallError(f"invalid user name {user!r} (lowercase letters, digits, _ and -)")
    if real and not dry_run and os.geteuid() != 0:
        raise InstallError("installing into / needs root: run it with sudo (or --dry-run)")
    if not source.is_file():
        raise InstallError(f"config file {source} does not exist (give one with --config)")
    try:
        tomllib.loads(source.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InstallError(f"config file {source} is not valid TOML: {exc}") from exc
    return source


def _why_no_commands(root: Path, real: bool) -> str:
    return "--no-commands" if real else f"root is {root}, not /"


def _put_files(steps: _Steps, user: str, config_source: Path) -> None:
    unit = (SERVICE_FILES / UNIT_PATH.name).read_text()
    if user != "zima":
        unit = re.sub(r"(?m)^(User|Group)=zima$", rf"\1={user}", unit)
    steps.write(UNIT_PATH, unit, 0o644)
    steps.write(RULE_PATH, (SERVICE_FILES / RULE_PATH.name).read_text(), 0o644)
    steps.mkdir(CONFIG_PATH.parent, 0o755)
    if steps.path(CONFIG_PATH).exists():
        steps.note(f"kept {CONFIG_PATH} (exists; new sample at {config_source})")
    else:
        steps.write(CONFIG_PATH, config_source.read_text(), 0o640)
    steps.mkdir(STATE_DIR, 0o750)


def _reload(steps: _Steps) -> None:
    if Path("/run/systemd/system").is_dir():  # sd_booted(3)'s test
        steps.run(["systemctl", "daemon-reload"])
    else:
        steps.note("skipped systemctl daemon-reload: systemd is not running here")
    if Path("/run/udev/control").exists() and shutil.which("udevadm"):
        steps.run(["udevadm", "control", "--reload"])
        # Apply the rule to a board that is already plugged in.
        steps.run(["udevadm", "trigger", "--action=add", "--subsystem-match=tty"])
    else:
        steps.note("skipped udevadm reload: udevd is not running here")


class _Steps:
    """Carries out (or, dry, only describes) each step under ``root`` and logs one line."""

    def __init__(self, root: Path, dry_run: bool) -> None:
        self.root, self.dry_run, self.lines = root, dry_run, list[str]()

    def path(self, p: Path) -> Path:
        return self.root / p.relative_to("/")

    def note(self, line: str) -> None:
        self.lines.append(line)

    def _did(self, what: str) -> None:
        self.lines.append(f"would {what}" if self.dry_run else what)

    def write(self, p: Path, text: str, mode: int) -> None:
        target = self.path(p)
        if target.is_file() and target.read_text() == text:
            if not self.dry_run:
                target.chmod(mode)
            self.note(f"unchanged {p}")
            return
        self._did(f"write {p} ({mode:04o})")
        if not self.dry_run:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_text(text)
            tmp.chmod(mode)
            tmp.replace(target)  # never a half-written unit or rule

    def mkdir(self, p: Path, mode: int) -> None:
        target = self.path(p)
        if target.is_dir():
            if not self.dry_run:
                target.chmod(mode)
            return
        self._did(f"create {p}/ ({mode:04o})")
        if not self.dry_run:
            target.mkdir(parents=True)
            target.chmod(mode)  # mkdir's mode is filtered by the umask

    def chown(self, p: Path, owner: str, group: str) -> None:
        try:
            uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
        except KeyError:
            # Only in a dry run (the user is created first otherwise) or with --no-commands.
            self.note(f"would chown {owner}:{group} {p}" if self.dry_run
                      else f"skipped chown {owner}:{group} {p}: no such user or group")
            return
        self._did(f"chown {owner}:{group} {p}")
        if not self.dry_run:
            os.chown(self.path(p), uid, gid)

    def run(self, argv: list[str]) -> None:
        self._did("run " + " ".join(argv))
        if self.dry_run:
            return
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise InstallError(f"{' '.join(argv)} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")


def _ensure_user(steps: _Steps, user: str) -> None:
    try:
        pwd.getpwnam(user)
    except KeyError:
        steps.run(["useradd", "--system", "--user-group", "--no-create-home",
                   "--home-dir", str(STATE_DIR), "--shell", "/usr/sbin/nologin",
                   "--groups", ",".join(GROUPS), user])
        return
    missing = [g for g in GROUPS if user not in grp.getgrnam(g).gr_mem]
    if missing:
        steps.run(["usermod", "--append", "--groups", ",".join(missing), user])
    else:
        steps.note(f"user {user} exists, in {', '.join(GROUPS)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``zima onboard install``."""
    parser.add_argument("--root", type=Path, default=Path("/"),
                        help="install under this folder instead of / (no commands run)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help="the config to put at /etc/zima/onboard.toml if none is there "
                             "(default: the shipped onboard.example.toml)")
    parser.add_argument("--user", default="zima", help="the service's system user")
    parser.add_argument("--dry-run", action="store_true", help="only say what would be done")
    parser.add_argument("--no-commands", action="store_true",
                        help="write the files only: no useradd, systemctl, udevadm")


def run(args: argparse.Namespace) -> int:
    """Install; print each step, or the error. Exit status 0 or 1."""
    try:
        lines = install(args.root, user=args.user, config_source=args.config,
                        dry_run=args.dry_run, run_commands=not args.no_commands)
    except (InstallError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for line in lines:
        print(line)  # noqa: T201
    if not args.dry_run and args.root.resolve() == Path("/"):
        print("next: sudo systemctl enable --now zima-onboard; "  # noqa: T201
              "journalctl -u zima-onboard -f")
    return 0
