"""`zima deploy`: install a policy model on a robot over SSH, hot-reload it, confirm it.

    zima deploy model.onnx --host zima.local --user zima \\
        --robot zima --username operator --password-file ~/.zima-mqtt

Steps, each printed as it finishes:

1. **Verify locally.** The file must load and carry the contract this host's software
   expects (``zima.onboard.policy.load_model`` with ``zima.contract.DEFAULT``: the same
   checks the runtime makes); its sha256 is what the runtime will report. A model that
   ships sample observations (``zima export --samples`` writes real frames into the file)
   is run on each of them and refused, before anything is uploaded, when an output is not
   finite and in range; the samples travel inside the file, and the runtime runs them
   again when it reloads it.
2. **Ask the runtime** (MQTT, the flags every host tool shares; the broker defaults to
   the SSH host) which model it runs: no ``telemetry/policy`` means nothing is changed.
3. **Upload** over SSH (the system's OpenSSH client, ``BatchMode``: keys only, never a
   prompt) to a hidden ``.partial`` file, then check its sha256 on the robot.
4. **Install** it atomically beside the previous version, in this remote layout::

       /var/lib/zima/policy.onnx -> models/<sha256>.onnx   the runtime's model_path: a symlink
       /var/lib/zima/models/<sha256>.onnx                  every installed model, by content

   The file is fsynced and renamed into place, then the link is switched by renaming a
   new link over it (a rename is atomic: the runtime sees the old or the new model,
   never neither). A ``model_path`` that is still a plain file is first copied into
   ``models/`` under its own hash, so that it can be rolled back to. ``--remote-path``
   moves the link, ``--models-dir`` the store (default: ``models/`` beside the link).
5. **Reload and confirm.** ``cmd/reload {"target": "policy"}`` (QoS 1), its ``cmd/result``
   must be accepted, then ``telemetry/policy`` must report the new ``model_hash`` with no
   ``reload_error`` within ``--timeout`` seconds.
6. **Roll back** when it does not: the link goes back to the previous target, the runtime
   reloads that, and its hash must be reported again. ``--no-reload`` stops after step 4.
7. **Prune** the store to the newest ``--keep`` models (never the active or previous one).

``deploy`` is the whole exchange (tests call it directly). Exceptions::

    DeployError               nothing was changed on the robot (also: ModelError, HostMqttError)
     +-- SshError             ssh failed: unreachable, login refused, unknown host key
     +-- RemoteError          a step on the robot failed: missing directory, corrupt upload
          +-- DiskFullError   the robot's disk has no room for the model

Exit status: 0 deployed and confirmed (or installed, with ``--no-reload``); 1 refused
before anything changed on the robot; 2 the robot did not take the new model and the
previous one is active and confirmed again; 3 the rollback itself failed or could not be
confirmed: the robot needs a look (the message says where the link points).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import aiomqtt

from zima.contract import DEFAULT, Contract
from zima.host.mqtt import (
    HostMqttConfig,
    HostMqttError,
    add_connection_arguments,
    command_payload,
    config_from_args,
    connect,
    json_object,
    seconds_problem,
)
from zima.onboard.api import CommandResult, PolicyRecord, RecordError

log = logging.getLogger(__name__)

__all__ = [
    "DeployError",
    "DeployOutcome",
    "DiskFullError",
    "RemoteError",
    "RemoteLayout",
    "SshError",
    "SshTarget",
    "deploy",
]

EXIT_OK, EXIT_ERROR, EXIT_ROLLED_BACK, EXIT_BROKEN = 0, 1, 2, 3
MB = 1_000_000
DEFAULT_MODEL_PATH = PurePosixPath("/var/lib/zima/policy.onnx")  # PolicyConfig's default
SHA256_RE = re.compile(r"[0-9a-f]{64}")
_UNREACHABLE = ("connect to host", "Could not resolve", "timed out", "No route", "unreachable")


class DeployError(Exception):
    """A deploy stopped before it changed anything on the robot."""


class SshError(DeployError):
    """ssh itself failed (exit status 255): unreachable, login refused, host key."""


class RemoteError(DeployError):
    """A command on the robot failed."""


class DiskFullError(RemoteError):
    """The robot's disk has no room for the model."""


@dataclass(frozen=True, slots=True)
class SshTarget:
    """How to reach the robot computer with ``ssh``."""

    host: str  # HOST or USER@HOST
    user: str | None = None  # ssh -l
    port: int | None = None  # ssh -p (None: ssh's own default, 22 or ~/.ssh/config)
    identity: Path | None = None  # ssh -i
    options: tuple[str, ...] = ()  # ssh -o KEY=VALUE, before ours: ssh takes the first value
    connect_timeout_s: int = 10

    def command(self, remote: Sequence[str]) -> list[str]:
        """The ssh command line that runs ``remote`` (an argv, quoted here) on the robot."""
        # ssh hands the remote login shell one string: quote every word of it.
        return [*self._ssh(), "--", self.host, " ".join(shlex.quote(word) for word in remote)]

    def _ssh(self, *flags: str) -> list[str]:
        argv = ["ssh", *flags]
        for option in self.options:
            argv += ["-o", option]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                 # a dead link ends the session in ~15 s instead of hanging an upload
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.identity is not None:
            argv += ["-i", str(self.identity)]
        if self.user is not None:
            argv += ["-l", self.user]
        return argv

    def run(self, script: str, *args: str, stdin: Path | None = None) -> str:
        """Run a POSIX sh ``script`` with ``args`` ($1...) on the robot; its stdout."""
        argv = self.command(["sh", "-c", script, "zima-deploy", *args])
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
            done = subprocess.run(  # noqa: S603 - our argv, every remote word quoted
                argv, stdin=source, capture_output=True, check=False)
        err = done.stderr.decode(errors="replace").strip()
        if done.returncode == 255:  # ssh's own failures; our scripts never exit 255
            raise self._ssh_error(err)
        if done.returncode != 0:
            if "No space left" in err:
                raise DiskFullError(f"the robot's disk is full: {err}")
            raise RemoteError(f"on {self.host}: {err or f'exit status {done.returncode}'}")
        return done.stdout.decode(errors="replace")

    def open_master(self) -> tuple[SshTarget, Callable[[], None]]:
        """Log in once (an OpenSSH control master): the target whose commands reuse that
        connection, and the function that closes it. Each step then costs no handshake."""
        directory = Path(tempfile.mkdtemp(prefix="zima-ssh-"))  # short: a socket path
        socket, log = directory / "control", directory / "master.log"
        with log.open("wb") as stderr:  # a file, not a pipe: the master outlives this call
            done = subprocess.run(  # noqa: S603 - our argv
                [*self._ssh("-M", "-N", "-f", "-S", str(socket)), "--", self.host],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, check=False)
        if done.returncode != 0:
            err = log.read_text(errors="replace").strip()
            shutil.rmtree(directory, ignore_errors=True)
            raise self._ssh_error(err)

        def close() -> None:
            subprocess.run(  # noqa: S603 - our argv
                [*self._ssh("-S", str(socket), "-O", "exit"), "--", self.host],
                capture_output=True, check=False, timeout=10)
            shutil.rmtree(directory, ignore_errors=True)

        # ControlMaster=no: should the master die, each command logs in by itself.
        shared = (*self.options, f"ControlPath={socket}", "ControlMaster=no")
        return dataclasses.replace(self, options=shared), close

    def _ssh_error(self, err: str) -> SshError:
        where = f"{self.host}" + (f" port {self.port}" if self.port is not None else "")
        last = err.splitlines()[-1] if err else "no message"
        if "Permission denied" in err:
            return SshError(f"{where} refused the SSH login: {last} (check --user and "
                            "--identity; deploy never asks for a password)")
        if "Host key verification failed" in err:
            return SshError(f"{where}: unknown or changed SSH host key: {last} (connect "
                            "once with plain ssh to accept it)")
        if any(text in err for text in _UNREACHABLE):
            return SshError(f"cannot reach {where} over SSH: {last}")
        return SshError(f"ssh to {where} failed: {last}")


@dataclass(frozen=True, slots=True)
class RemoteLayout:
    """Where models live on the robot (see the module docstring)."""

    model_path: PurePosixPath = DEFAULT_MODEL_PATH  # the runtime's policy.model_path: a link
    models_dir: PurePosixPath | None = None  # None: models/ beside model_path

    @property
    def models(self) -> PurePosixPath:
        return self.models_dir or self.model_path.parent / "models"


# POSIX sh on the robot. $1 is always the link (model_path), $2 the models directory.
_PROBE = r"""set -eu
dir=$(dirname "$1")
[ -d "$dir" ] || { echo "no directory $dir (is the onboard runtime installed?)" >&2; exit 3; }
mkdir -p "$2"
[ -w "$2" ] || { echo "$2 is not writable by $(id -un)" >&2; exit 3; }
if [ -e "$2/$3.onnx" ]; then echo have; else df -Pk "$2" | awk 'NR == 2 {print $4}'; fi
"""
_INSTALL = r"""set -eu
link=$1 models=$2 sha=$3
new=$models/$sha.onnx part=$models/.$sha.onnx.partial
hash() { sha256sum < "$1" | cut -d' ' -f1; }
store() { sync "$1"; mv -f "$1" "$2"; sync "$models"; }  # data on disk before its name
fail() { rm -f "$1"; echo "$2" >&2; exit 4; }
if [ -e "$part" ]; then
  got=$(hash "$part")
  [ "$got" = "$sha" ] || fail "$part" "the upload arrived corrupt (sha256 $got)"
  store "$part" "$new"
else
  [ "$(hash "$new")" = "$sha" ] || fail "$new" "$new was corrupt: removed, deploy again"
  touch "$new"  # counts as the newest when pruning
fi
prev=
if [ -L "$link" ]; then
  prev=$(readlink "$link")
elif [ -e "$link" ]; then  # a plain file: keep it under its hash so it can come back
  old=$(hash "$link")
  if [ ! -e "$models/$old.onnx" ]; then
    cp -p "$link" "$models/.$old.partial"; store "$models/.$old.partial" "$models/$old.onnx"
  fi
  prev=$models/$old.onnx
fi
prev_sha=
[ -n "$prev" ] && [ -e "$link" ] && prev_sha=$(hash "$link")
ln -sfn "$new" "$link.zima-new"
mv -fT "$link.zima-new" "$link"
sync "$(dirname "$link")"
echo "$prev"
echo "$prev_sha"
"""
_SWITCH = r"""set -eu
if [ -n "$2" ]; then ln -sfn "$2" "$1.zima-new"; mv -fT "$1.zima-new" "$1"; else rm -f "$1"; fi
sync "$(dirname "$1")"
"""
_PRUNE = r"""set -eu
cd "$1"; keep=$2; shift 2; n=0
for f in $(ls -1t -- *.onnx 2>/dev/null); do
  n=$((n + 1)); [ "$n" -le "$keep" ] && continue
  for p in "$@"; do [ "$f" = "${p##*/}" ] && continue 2; done
  rm -f -- "$f"; echo "$f"
done
"""


@dataclass(slots=True)
class DeployOutcome:
    """What a deploy did (``deploy`` raises ``DeployError`` when it did nothing)."""

    sha256: str
    previous: str | None = None  # the link's target before, None if there was none
    confirmed: bool = False  # the runtime reported the new hash (False with --no-reload)
    rolled_back: bool = False  # the link points at ``previous`` again
    rollback_confirmed: bool = False  # ... and the runtime reported its hash
    error: str | None = None  # why the new model is not running
    pruned: list[str] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        if self.error is None:
            return EXIT_OK
        return EXIT_ROLLED_BACK if self.rollback_confirmed else EXIT_BROKEN


class _PolicyWatch:
    """Keeps the newest telemetry/policy and the cmd/results while deploy works."""

    def __init__(self, client: aiomqtt.Client, config: HostMqttConfig) -> None:
        self.client, self.config = client, config
        self.policy: PolicyRecord | None = None  # the newest telemetry/policy
        self.results: dict[str, CommandResult] = {}  # request_id -> its cmd/result
        self.lost: str | None = None  # the broker connection broke
        self.changed = asyncio.Condition()

    async def read(self) -> None:
        result_topic = self.config.topic("cmd/result")
        try:
            async for message in self.client.messages:
                body = json_object(message.payload)
                try:  # the operator API's records (zima.onboard.api), checked
                    if body is None:
                        continue
                    if str(message.topic) == result_topic:
                        result = CommandResult.from_json(body)
                        if result.request_id is not None:
                            self.results[result.request_id] = result
                    else:
                        self.policy = PolicyRecord.from_json(body)
                except RecordError as exc:
                    log.warning("ignored a bad record on %s: %s", message.topic, exc)
                    continue
                async with self.changed:
                    self.changed.notify_all()
        except aiomqtt.MqttError as exc:
            self.lost = f"lost the MQTT broker: {exc}"
            async with self.changed:
                self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` (or the broker is lost); False after ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self.changed:
                await self.changed.wait_for(lambda: predicate() or self.lost is not None)
        return predicate()

    async def reload(self, sha: str, timeout_s: float) -> str | None:
        """Ask for a policy reload; None once ``sha`` runs, else why it does not."""
        rid = str(uuid.uuid4())
        before = None if self.policy is None else self.policy.reload_failures
        body = command_payload(self.config, "reload", {"target": "policy", "request_id": rid})
        try:
            await self.client.publish(self.config.topic("cmd/reload"), body, qos=1)
        except aiomqtt.MqttError as exc:
            return f"could not send the reload: {exc}"
        deadline = asyncio.get_running_loop().time() + timeout_s

        def left() -> float:
            return deadline - asyncio.get_running_loop().time()

        if not await self.until(lambda: rid in self.results, left()):
            return self.lost or f"no cmd/result for reload request {rid} within {timeout_s} s"
        if not self.results[rid].accepted:
            # The runtime answers a reload with its outcome: a refused model is refused here.
            return f"the runtime refused the model: {self.results[rid].error}"

        def running() -> bool:
            p = self.policy
            return p is not None and p.model_hash == sha and p.reload_error is None

        def refused() -> bool:  # a new refusal: an old error may linger from an earlier one
            failures = None if self.policy is None else self.policy.reload_failures
            return (failures is not None and before is not None
                    and failures > before and not running())

        await self.until(lambda: running() or refused(), left())
        if running():
            return None
        p = self.policy
        error = None if p is None else p.reload_error
        if refused():
            return f"the runtime refused the model: {error}"
        return self.lost or (f"after {timeout_s} s the runtime still reports model "
                             f"{str(None if p is None else p.model_hash)[:12]} (reload_error: "
                             f"{error})")


@contextlib.asynccontextmanager
async def _watching(mqtt: HostMqttConfig, timeout_s: float) -> AsyncIterator[_PolicyWatch]:
    async with connect(mqtt, "deploy") as client:
        await client.subscribe([(mqtt.topic("cmd/result"), 1),
                                (mqtt.topic("telemetry/policy"), 0)])
        watch = _PolicyWatch(client, mqtt)
        reader = asyncio.create_task(watch.read())
        try:
            if not await watch.until(lambda: watch.policy is not None, timeout_s):
                raise DeployError(watch.lost or (
                    f"no telemetry/policy from robot {mqtt.robot_id!r} within {timeout_s} s: "
                    "is its runtime running and connected to the broker? (nothing changed)"))
            yield watch
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def deploy(
    model: Path,
    target: SshTarget,
    layout: RemoteLayout = RemoteLayout(),
    mqtt: HostMqttConfig | None = None,
    *,
    contract: Contract = DEFAULT,
    keep: int = 3,
    timeout_s: float = 20.0,
    say: Callable[[str], None] = print,
    clock: Callable[[], float] = time.monotonic,
) -> DeployOutcome:
    """Verify, upload, install and (with ``mqtt``) reload ``model``; roll back if the
    runtime does not confirm it. ``DeployError`` when nothing was changed."""
    from zima.onboard.policy import load_model  # noqa: PLC0415 - onnxruntime, when used

    verified = await asyncio.to_thread(load_model, model, contract)
    sha, size = verified.sha256, model.stat().st_size
    checked = (f"outputs on its {verified.samples_checked} shipped observations finite and "
               "in range" if verified.samples_checked else
               "no shipped observations (zima export --samples ships some)")
    say(f"verified {model}: contract and I/O match, {checked}, {size / MB:.1f} MB, "
        f"sha256 {sha[:16]}…")
    link, models = str(layout.model_path), str(layout.models)
    async with contextlib.AsyncExitStack() as stack:
        watch = None
        if mqtt is not None:
            watch = await stack.enter_async_context(_watching(mqtt, timeout_s))
            policy = watch.policy
            running = None if policy is None else policy.model_hash
            error = None if policy is None else policy.reload_error
            say(f"robot {mqtt.robot_id} runs model {running[:16]}…" if running else
                f"robot {mqtt.robot_id} runs no model ({error})")
        target, close = await asyncio.to_thread(target.open_master)
        stack.push_async_callback(asyncio.to_thread, close)
        probe = (await asyncio.to_thread(target.run, _PROBE, link, models, sha)).strip()
        if probe == "have":
            say(f"{models}/{sha[:16]}….onnx is already on {target.host}: not uploaded again")
        else:
            free_kb = int(probe) if probe.isdigit() else None
            if free_kb is not None and free_kb * 1000 < size + MB:  # 1 MB to spare
                raise DiskFullError(f"{models} on {target.host} has {free_kb / 1000:.1f} MB "
                                    f"free, the model needs {size / MB:.1f} MB")
            start = clock()
            await asyncio.to_thread(target.run, 'cat > "$2/.$3.onnx.partial"', link, models,
                                    sha, stdin=model)
            say(f"uploaded {size / MB:.1f} MB in {clock() - start:.1f} s")
        prev, prev_sha = (await asyncio.to_thread(
            target.run, _INSTALL, link, models, sha)).split("\n")[:2]
        outcome = DeployOutcome(sha, previous=prev or None)
        say(f"installed: {link} -> {models}/{sha}.onnx"
            + (f" (previous: {prev})" if prev else " (no previous model)"))
        if watch is None:
            say("not reloaded (--no-reload): the runtime loads it at its next start or reload")
        else:
            outcome.error = await watch.reload(sha, timeout_s)
            if outcome.error is None:
                outcome.confirmed = True
                say(f"reloaded: the runtime reports model {sha[:16]}…")
            else:
                say(f"NOT confirmed: {outcome.error}")
                await _roll_back(outcome, target, link=link, prev_sha=prev_sha, watch=watch,
                                 timeout_s=timeout_s, say=say)
                return outcome
        outcome.pruned = (await asyncio.to_thread(
            target.run, _PRUNE, models, str(keep), f"{models}/{sha}.onnx", prev)).split()
        if outcome.pruned:
            say(f"pruned {len(outcome.pruned)} older model(s), keeping {keep}")
        say(f"deployed {sha[:16]}… to {target.host}")
        return outcome
    raise AssertionError("unreachable")  # mypy: the exit stack swallows nothing


async def _roll_back(outcome: DeployOutcome, target: SshTarget, *, link: str, prev_sha: str,
                     watch: _PolicyWatch, timeout_s: float, say: Callable[[str], None]) -> None:
    previous = outcome.previous
    try:
        await asyncio.to_thread(target.run, _SWITCH, link, previous or "")
    except DeployError as exc:
        say(f"ROLLBACK FAILED: {link} still points at the new model: {exc}")
        return
    outcome.rolled_back = True
    if previous is None:  # no model before: the runtime keeps running without one
        say(f"rolled back: removed {link} (there was no previous model)")
        outcome.rollback_confirmed = True
        return
    say(f"rolled back: {link} -> {previous}")
    if not SHA256_RE.fullmatch(prev_sha):
        say(f"the previous model {previous} is unreadable: the runtime keeps what it runs")
        return
    error = await watch.reload(prev_sha, timeout_s)
    if error is None:
        outcome.rollback_confirmed = True
        say(f"the runtime reports the previous model {prev_sha[:16]}… again")
    else:
        say(f"the previous model is NOT confirmed either: {error}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the ONNX file (zima export writes it)")
    ssh = parser.add_argument_group("SSH (the system's OpenSSH client, keys only)")
    ssh.add_argument("--host", required=True, metavar="[USER@]HOST",
                     help="the robot computer (also the default MQTT broker)")
    ssh.add_argument("--user", help="SSH login (default: ssh's own)")
    ssh.add_argument("--port", type=int, help="SSH port (default: ssh's own, 22)")
    ssh.add_argument("--identity", type=Path, metavar="FILE", help="SSH private key")
    ssh.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE",
                     help="passed to ssh as -o KEY=VALUE (repeatable)")
    ssh.add_argument("--connect-timeout", type=int, default=10, metavar="S",
                     help="SSH connect timeout (default: 10)")
    ssh.add_argument("--remote-path", type=PurePosixPath, default=DEFAULT_MODEL_PATH,
                     metavar="PATH", help="the runtime's policy.model_path, made a symlink "
                     f"(default: {DEFAULT_MODEL_PATH})")
    ssh.add_argument("--models-dir", type=PurePosixPath, metavar="DIR",
                     help="where models are kept (default: models/ beside --remote-path)")
    ssh.add_argument("--keep", type=int, default=3, metavar="N",
                     help="models kept on the robot (default: 3)")
    add_connection_arguments(parser)
    parser.set_defaults(broker=None)  # None: the SSH host (the robot runs the broker)
    for action in parser._actions:  # argparse has no public way to change a help text
        if action.dest == "broker":
            action.help = "MQTT broker (default: the --host, port 1883)"
    parser.add_argument("--timeout", type=float, default=20.0, metavar="S",
                        help="wait this long for the runtime to report the model (default: 20)")
    parser.add_argument("--no-reload", action="store_true",
                        help="only install: no MQTT, no reload, no confirmation")


def _bad_flag(args: argparse.Namespace) -> str | None:
    if (problem := seconds_problem(("--timeout", args.timeout))) is not None:
        return problem
    if args.keep < 2:
        return f"--keep {args.keep}: at least 2 (the active model and the previous one)"
    if args.connect_timeout < 1:
        return f"--connect-timeout {args.connect_timeout} must be at least 1"
    for flag, path in (("--remote-path", args.remote_path), ("--models-dir", args.models_dir)):
        if path is not None and not path.is_absolute():
            return f"{flag} {path} must be absolute"
    return None


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        sys.stderr.write(f"zima deploy: {message}\n")
        return EXIT_ERROR

    from zima.onboard.policy import ModelError  # noqa: PLC0415 - onnxruntime, when used

    if (bad := _bad_flag(args)) is not None:
        return fail(bad)
    target = SshTarget(args.host, args.user, args.port, args.identity,
                       tuple(args.ssh_option), args.connect_timeout)
    layout = RemoteLayout(args.remote_path, args.models_dir)
    try:
        mqtt = None
        if not args.no_reload:
            if args.broker is None:
                args.broker = args.host.rpartition("@")[2]
            mqtt = config_from_args(args)
        outcome = asyncio.run(deploy(args.model, target, layout, mqtt, keep=args.keep,
                                     timeout_s=args.timeout))
    except (DeployError, ModelError, HostMqttError) as exc:
        return fail(str(exc))
    if outcome.error is not None:
        sys.stderr.write(f"zima deploy: {outcome.sha256[:16]}… was not deployed: "
                         f"{outcome.error}\n")
    return outcome.exit_status
