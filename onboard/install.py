"""``zima onboard install``: the runtime as a systemd service, the MCU's udev rule, a config,
and the secrets the config names.

Puts in place, under ``root`` (``/`` on the robot, a scratch folder in tests)::

    /etc/systemd/system/zima-onboard.service   0644  onboard/service/zima-onboard.service
    /etc/udev/rules.d/99-zima-mcu.rules        0644  onboard/service/99-zima-mcu.rules
    /etc/zima/onboard.toml                     0640  --config FILE, else the shipped
                                                     onboard/onboard.example.toml; an
                                                     existing file is never overwritten
    /var/lib/zima/                             0750  episodes and models, owned by the user

and, unless ``--no-secrets``, each secret at the path the installed config names (else
its standard path), made only where none exists, owner-only (0600, owned by the service
user on the real root), written so that no other user can ever read it, and never
printed (a step says which file, never what it holds)::

    [web] token_file         /etc/zima/web-token       the console's sign-in token
    [web] tls_key, tls_cert  /etc/zima/web-tls.key     a self-signed certificate
                             /etc/zima/web-tls.crt     (0644) for the console's HTTPS
                                                       (``openssl req``, P-256, 10 years,
                                                       the host's names)
    [mqtt] password_file     /etc/zima/mqtt-password   the robot's broker password, also
                                                       added for user <robot_id> to
                                                       /etc/mosquitto/zima.passwd through
                                                       ``mosquitto_passwd`` (on its stdin)
    [mqtt] command_key_file  /etc/zima/command-key     the signed-command key (copy it to
                                                       the operators; off until the config
                                                       names it)

On the real root (``run_commands``) it also creates the system user (``useradd --system``,
in ``dialout`` and ``video``), then reloads systemd and udev. The service expects the venv
at ``/opt/zima/.venv`` (see ``onboard/service/README.md``). Safe to rerun: unchanged files
and existing secrets are left alone (a secret others could read is made 0600). Every step
is reported as one line; ``dry_run`` only reports::

    $ sudo /opt/zima/.venv/bin/zima onboard install
    wrote /etc/systemd/system/zima-onboard.service
    ...
    created secret /etc/zima/web-token (0600)
    $ sudo systemctl enable --now zima-onboard
"""

from __future__ import annotations

import argparse
import grp
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_PATH", "EXEC_PATH", "STATE_DIR", "InstallError", "add_arguments", "install",
    "make_self_signed", "run",
]

SERVICE_FILES = Path(__file__).parent / "service"
DEFAULT_CONFIG = Path(__file__).parent / "onboard.example.toml"
UNIT_PATH = Path("/etc/systemd/system/zima-onboard.service")
RULE_PATH = Path("/etc/udev/rules.d/99-zima-mcu.rules")
CONFIG_PATH = Path("/etc/zima/onboard.toml")
STATE_DIR = Path("/var/lib/zima")
EXEC_PATH = Path("/opt/zima/.venv/bin/zima")  # the unit's ExecStart
GROUPS = ("dialout", "video")  # the serial port, the cameras
# Secrets: (config table, key) -> standard path, used when the config names none.
WEB_TOKEN = Path("/etc/zima/web-token")
WEB_TLS_KEY = Path("/etc/zima/web-tls.key")
WEB_TLS_CERT = Path("/etc/zima/web-tls.crt")
MQTT_PASSWORD = Path("/etc/zima/mqtt-password")
COMMAND_KEY = Path("/etc/zima/command-key")
MOSQUITTO_PASSWD = Path("/etc/mosquitto/zima.passwd")  # onboard/mosquitto.conf.example's
SECRET_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits, 43 characters
CERT_DAYS = 3650

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
    make_secrets: bool = False,
) -> list[str]:
    """Install the service under ``root``; returns one line per step (see the module doc).

    Commands (useradd, systemctl, udevadm) and file ownership apply only when ``root`` is
    ``/``; elsewhere they are reported as skipped. ``make_secrets`` (the command's default)
    creates the secrets the installed config names. Raises ``InstallError`` when not root
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
    if make_secrets:
        _make_secrets(steps, user, real, source)
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


def _secret_paths(steps: _Steps, source: Path) -> tuple[str, dict[str, Path]]:
    """The robot id and each secret's path, from the config in place (else ``source``);
    relative paths from /etc/zima, as the runtime takes them."""
    installed = steps.path(CONFIG_PATH)
    try:
        table = tomllib.loads((installed if installed.is_file() else source).read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InstallError(f"{CONFIG_PATH} cannot be read for its secrets' paths: "
                           f"{exc}") from exc

    def named(section: str, key: str, default: Path) -> Path:
        part: Any = table.get(section, {})
        value = part.get(key) if isinstance(part, dict) else None
        if not isinstance(value, str) or not value:
            return default
        path = Path(value)
        return path if path.is_absolute() else CONFIG_PATH.parent / path

    robot_id = table.get("robot_id", "zima")
    return (robot_id if isinstance(robot_id, str) else "zima"), {
        "web token": named("web", "token_file", WEB_TOKEN),
        "web TLS key": named("web", "tls_key", WEB_TLS_KEY),
        "web TLS certificate": named("web", "tls_cert", WEB_TLS_CERT),
        "MQTT password": named("mqtt", "password_file", MQTT_PASSWORD),
        "command key": named("mqtt", "command_key_file", COMMAND_KEY),
    }


def _make_secrets(steps: _Steps, user: str, real: bool, source: Path) -> None:
    robot_id, paths = _secret_paths(steps, source)
    owner = user if real else None
    steps.secret(paths["web token"], owner)
    steps.secret(paths["command key"], owner)
    if steps.secret(paths["MQTT password"], owner):
        _add_broker_account(steps, robot_id, paths["MQTT password"])
    key, cert = paths["web TLS key"], paths["web TLS certificate"]
    have_key, have_cert = steps.path(key).exists(), steps.path(cert).exists()
    if have_key and have_cert:  # the user's own pair, or ours from before
        steps.secret(key, owner)  # kept, made owner-only if it was not
        steps.note(f"kept {cert} (exists)")
    elif have_key or have_cert:
        steps.note(f"warning: only one of {key} and {cert} exists: give both, or remove it "
                   "and rerun to make a self-signed pair")
    else:
        steps.certificate(cert, key, owner, _host_names())


def _host_names() -> list[str]:
    """Names the robot is reached by: its host name (and .local, mDNS), and loopback."""
    host = socket.gethostname().split(".")[0] or "zima"
    return [host, f"{host}.local", "localhost", "127.0.0.1", "::1"]


def _add_broker_account(steps: _Steps, robot_id: str, password_file: Path) -> None:
    """The new MQTT password goes into Mosquitto's password file for user ``robot_id``
    (the sample ACL's ``%u``): ``mosquitto_passwd`` hashes it, reading it from stdin."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        steps.note(f"skipped adding MQTT user {robot_id}: mosquitto_passwd not found "
                   f"(Debian package mosquitto); then: sudo mosquitto_passwd "
                   f"{MOSQUITTO_PASSWD} {robot_id}  (type the password in {password_file})")
        return
    steps.run_secret_input(
        [tool, str(steps.path(MOSQUITTO_PASSWD)), robot_id], steps.path(password_file),
        f"add MQTT user {robot_id} to {MOSQUITTO_PASSWD}", MOSQUITTO_PASSWD,
        "mosquitto")


def make_self_signed(cert: Path, key: Path, names: list[str], *,
                     days: int = CERT_DAYS) -> None:
    """A self-signed P-256 certificate for ``names`` (host names or IP addresses; the
    first is its CN) into ``cert`` (0644) and its private key into ``key`` (0600 from
    the start: written inside a 0700 folder, then moved). ``InstallError`` if openssl
    fails; needs Debian's ``openssl``."""
    tool = shutil.which("openssl")
    if tool is None:
        raise InstallError("openssl not found (Debian package openssl): cannot make the "
                           "web console's certificate")
    san = ",".join(f"IP:{n}" if _is_ip(n) else f"DNS:{n}" for n in names)
    key.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=key.parent, prefix=".zima-tls-") as folder:
        tmp_key, tmp_cert = Path(folder) / "key.pem", Path(folder) / "cert.pem"
        argv = [tool, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-days", str(days), "-subj", f"/CN={names[0]}",
                "-addext", f"subjectAltName={san}", "-addext", "basicConstraints=CA:FALSE",
                "-keyout", str(tmp_key), "-out", str(tmp_cert)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0:
            raise InstallError(f"openssl req failed ({done.returncode}): "
                               f"{done.stderr.strip()[-500:]}")
        tmp_key.chmod(0o600)
        tmp_cert.chmod(0o644)
        tmp_key.replace(key)
        tmp_cert.replace(cert)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


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

    def secret(self, p: Path, owner: str | None) -> bool:
        """A new random secret at ``p`` (0600), unless one is there (then it is made
        0600 if it was not). True when one was created. Never shows what it holds."""
        target = self.path(p)
        if target.exists():
            loose = target.stat().st_mode & 0o077
            if loose and not self.dry_run:
                target.chmod(0o600)
            self.note(f"{'would tighten' if self.dry_run else 'tightened'} {p} to 0600"
                      if loose else f"kept {p} (exists)")
            return False
        self._did(f"create secret {p} (0600)")
        if self.dry_run:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        # O_EXCL with mode 0600: no moment when another user could open it.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(SECRET_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        tmp.chmod(0o600)  # the umask can only narrow it; be exact anyway
        tmp.replace(target)
        if owner is not None:
            self.chown(p, owner, owner)
        return True

    def certificate(self, cert: Path, key: Path, owner: str | None, names: list[str]) -> None:
        self._did(f"create secret {key} (0600) and self-signed certificate {cert} (0644) "
                  f"for {', '.join(names)}")
        if self.dry_run:
            return
        make_self_signed(self.path(cert), self.path(key), names)
        if owner is not None:
            self.chown(key, owner, owner)

    def run_secret_input(self, argv: list[str], secret_file: Path, what: str,
                         made: Path, owner: str) -> None:
        """Run ``argv`` with the secret in ``secret_file`` on its stdin (twice: a tool that
        asks for it to be repeated), never on its command line; ``made`` (owner-only) is
        the file it writes, owned by ``owner`` where that user exists."""
        self._did(what)
        if self.dry_run:
            return
        target = self.path(made)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        line = secret_file.read_text().strip()
        done = subprocess.run(argv, input=f"{line}\n{line}\n", capture_output=True,  # noqa: S603
                              text=True, check=False)
        if done.returncode != 0:
            raise InstallError(f"{what} failed ({done.returncode}): "
                               f"{done.stderr.strip()[-300:]}")
        target.chmod(0o600)
        if self.root.resolve() == Path("/"):
            self.chown(made, owner, owner)  # says so if there is no such user

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
    parser.add_argument("--no-secrets", action="store_true",
                        help="do not create the secrets the config names (web token, "
                             "TLS key and certificate, MQTT password, command key)")


def run(args: argparse.Namespace) -> int:
    """Install; print each step, or the error. Exit status 0 or 1."""
    try:
        lines = install(args.root, user=args.user, config_source=args.config,
                        dry_run=args.dry_run, run_commands=not args.no_commands,
                        make_secrets=not args.no_secrets)
    except (InstallError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    for line in lines:
        print(line)  # noqa: T201
    if not args.dry_run and args.root.resolve() == Path("/"):
        print("next: sudo systemctl enable --now zima-onboard; "  # noqa: T201
              "journalctl -u zima-onboard -f")
    return 0
