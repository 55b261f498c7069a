"""The whole robot as it runs, for the fault-injection tests: nothing stands in for a part.

- the real firmware ELF on the emulated board (``board`` fixture of tests/conftest.py), its
  UART behind ``tmp_path/zima-mcu`` as udev links /dev/zima-mcu;
- a real Mosquitto on loopback with the sample ACL (tests/mqtt_broker.py);
- the runtime as its own process, ``zima onboard run --config FILE``, configured by a
  TOML file written here;
- two cameras it opens through OpenCV, as on a robot with IP cameras: ``LiveCameras``
  serves a recorded MJPG video (tests/onboard/streams.py's ``write_video``) as live MJPEG
  streams over HTTP, paced to the camera's rate and looped;
- the operator: an MQTT client (``Operator``) that keeps every message it receives, with
  its arrival time, and the host tools' own ``send_estop``.

Waits are conditions with wall-clock limits (the runtime is another process: the MCU's
clock is not ours to read); the limits are several times what each wait needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2

from tests.mqtt_broker import ROBOT, ROBOT_PASSWORD, Broker
from tests.onboard.streams import write_video
from zima.emulator import BoardState, EmulatedBoard
from zima.mosquitto import free_port

from .operator_client import Message, Operator, heartbeats

__all__ = [
    "FAST_RATES_HZ",
    "LiveCameras",
    "Message",
    "Operator",
    "RuntimeProcess",
    "Stack",
    "as_float",
    "at_rest",
    "board_until",
    "bright_video",
    "driving_forward",
    "emulator_pid",
    "heartbeats",
    "motors_off",
    "nonzero_motor_events",
    "write_toml",
]

# Telemetry faster than the robot's defaults: the tests wait less for each record.
FAST_RATES_HZ = {"battery": 5.0, "odometry": 10.0, "mode": 5.0, "link": 5.0, "faults": 5.0,
                 "loop": 2.0, "policy": 5.0, "cameras": 2.0}
WEB_TOKEN = "fault-injection-token"


# ---- cameras ---------------------------------------------------------------------------


class LiveCameras:
    """MJPEG over HTTP at ``http://127.0.0.1:<port>/<camera>.mjpg``: the frames of a recorded
    MJPG video, JPEG-encoded once, sent at ``fps`` and looped like a live camera."""

    def __init__(self, video: Path, fps: float = 30.0) -> None:
        capture = cv2.VideoCapture(str(video))
        jpegs: list[bytes] = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            encoded, buf = cv2.imencode(".jpg", image)
            assert encoded
            jpegs.append(buf.tobytes())
        capture.release()
        assert jpegs, f"no frames in {video}"
        self._jpegs, self._period_s = jpegs, 1.0 / fps
        self._stop = threading.Event()
        cameras = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                with contextlib.suppress(OSError):
                    cameras.stream(self.wfile.write)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per request on stderr otherwise

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="mjpeg-cameras")
        self._thread.start()

    def url(self, camera: str) -> str:
        return f"http://127.0.0.1:{self.port}/{camera}.mjpg"

    def stream(self, write: Callable[[bytes], object]) -> None:
        """Write frames, paced, until the server closes (or the client goes: OSError)."""
        next_s, i = time.monotonic(), 0
        while not self._stop.is_set():
            jpeg = self._jpegs[i % len(self._jpegs)]
            write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                  % len(jpeg) + jpeg + b"\r\n")
            i += 1
            next_s = max(next_s + self._period_s, time.monotonic())
            self._stop.wait(max(0.0, next_s - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def bright_video(path: Path) -> Path:
    """A recorded camera stream: light grey frames with a moving bar (mean about 227 of 255,
    far above the ~127.5 of the uniform random image a model is checked on at load)."""
    return write_video(path, 30, bgr=(230, 230, 230))


# ---- the runtime as a process ------------------------------------------------------------


def write_toml(path: Path, table: Mapping[str, object]) -> Path:
    """A small TOML writer: scalars, paths, nested tables, arrays of tables."""
    lines: list[str] = []

    def scalar(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str | Path):
            return json.dumps(str(value))  # a JSON string is a TOML basic string
        raise TypeError(f"no TOML for {value!r}")

    def emit(prefix: str, body: Mapping[str, object]) -> None:
        tables: list[tuple[str, object]] = []
        for key, value in body.items():
            if isinstance(value, Mapping) or (
                    isinstance(value, list) and value and isinstance(value[0], Mapping)):
                tables.append((key, value))
            else:
                lines.append(f"{key} = {scalar(value)}")
        for key, value in tables:
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                lines.append(f"\n[{name}]")
                emit(f"{name}.", value)
            else:
                assert isinstance(value, list)
                for item in value:
                    lines.append(f"\n[[{name}]]")
                    emit(f"{name}.", item)

    emit("", table)
    path.write_text("\n".join(lines) + "\n")
    return path


def _zima_command() -> list[str]:
    """``zima`` of this interpreter's environment (the console script), else the module."""
    script = shutil.which("zima", path=str(Path(sys.executable).parent))
    if script is not None:
        return [script]
    return [sys.executable, "-c", "import sys; from zima.cli import main; sys.exit(main())"]


class RuntimeProcess:
    """``zima onboard run --config FILE`` in its own process, its log in ``log``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [*_zima_command(), "onboard", "run", "--config", str(config)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:]

    def kill(self) -> None:
        """SIGKILL: no clean stop, no DISCONNECT, nothing flushed."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM (systemd's stop); SIGKILL if it has not stopped within 15 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=10)


# ---- the emulated board, from async code ----------------------------------------------------


async def board_until(board: EmulatedBoard, predicate: Callable[[BoardState], bool],
                      timeout_s: float = 5.0, what: str = "") -> BoardState:
    """Poll the emulated board (its physical side: PWM duty, track speed) until
    ``predicate`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = await asyncio.to_thread(board.state)
        if predicate(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"board: not {what} within {timeout_s} s: duty "
                                 f"{state.duty_signed_left:+.3f}/{state.duty_signed_right:+.3f},"
                                 f" speed {state.speed_left_mm_s:.0f}/"
                                 f"{state.speed_right_mm_s:.0f} mm/s")
        await asyncio.sleep(0.03)


def emulator_pid(port: Path) -> int:
    """The process id of this test's zima-emu (the one serving ``port``), read from /proc:
    ``EmulatedBoard`` does not say it, and a pause (SIGSTOP) needs it."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if argv and argv[0].endswith(b"zima-emu") and str(port).encode() in argv:
            found.append(int(entry.name))
    assert len(found) == 1, f"zima-emu processes serving {port}: {found}"
    return found[0]


def motors_off(state: BoardState) -> bool:
    """No PWM on either motor: what the firmware does on e-stop, a critical battery and its
    command watchdog."""
    return state.duty_left == 0 and state.duty_right == 0


def at_rest(state: BoardState) -> bool:
    """Both tracks still, held at a zero target (the speed PID may leave a trace of duty)."""
    return (max(abs(state.duty_signed_left), abs(state.duty_signed_right)) < 0.02
            and max(abs(state.speed_left_mm_s), abs(state.speed_right_mm_s)) < 20)


def driving_forward(state: BoardState) -> bool:
    return state.duty_signed_left > 0.05 and state.duty_signed_right > 0.05


# ---- the whole stack -------------------------------------------------------------------------


@dataclass
class Stack:
    """Board, broker and cameras running; ``start_runtime`` adds the runtime process."""

    board: EmulatedBoard
    broker: Broker
    cameras: LiveCameras
    directory: Path
    port: Path  # the MCU's stable port path (the board's pty behind a symlink)
    model: Path
    web_port: int = field(default_factory=free_port)
    web_token: str = WEB_TOKEN
    runtime: RuntimeProcess | None = None
    starts: int = 0

    @property
    def episodes(self) -> Path:
        return self.directory / "episodes"

    def config(self, *, safety: Mapping[str, object] | None = None, web: bool = False,
               mqtt: Mapping[str, object] | None = None) -> dict[str, object]:
        password = self.directory / "mqtt-password"
        password.write_text(ROBOT_PASSWORD)
        token = self.directory / "web-token"
        token.write_text(self.web_token)
        table: dict[str, object] = {
            "robot_id": ROBOT,
            "loop_hz": 50.0,
            # A loaded machine can starve the link past the 0.25 s default (as in
            # tests/onboard/test_runtime.py); a vanished or silent MCU is still found.
            "link": {"port": self.port, "telemetry_timeout_s": 1.0, "reconnect_max_s": 0.4},
            "cameras": [{"name": name, "source": self.cameras.url(name), "width_px": 160,
                         "height_px": 120, "fps": 30.0, "stale_after_s": 0.5}
                        for name in ("forward", "wrist")],
            "fusion": {"max_frame_age_s": 0.5},
            "policy": {"model_path": self.model, "temperature": 0.0, "seed": 0},
            "mqtt": {"host": "127.0.0.1", "port": self.broker.port,
                     "password_file": password, "keepalive_s": 2, "reconnect_min_s": 0.05,
                     "reconnect_max_s": 0.5, **(mqtt or {}), "rates_hz": FAST_RATES_HZ},
            "recorder": {"directory": self.episodes},
            "web": {"enabled": web, "host": "127.0.0.1", "port": self.web_port,
                    "token_file": token},
        }
        if safety:
            table["safety"] = dict(safety)
        return table

    def start_runtime(self, **config: Any) -> RuntimeProcess:
        self.starts += 1
        path = write_toml(self.directory / f"onboard-{self.starts}.toml", self.config(**config))
        self.runtime = RuntimeProcess(path, self.directory / f"runtime-{self.starts}.log")
        return self.runtime

    def check_running(self) -> None:
        """AssertionError with the runtime's log if its process ended."""
        runtime = self.runtime
        if runtime is not None and runtime.exit_code is not None:
            raise AssertionError(f"the runtime exited with status {runtime.exit_code}:\n"
                                 f"{runtime.log_tail()}")

    def operator(self, **options: Any) -> Operator:
        return Operator(self.broker.port, check=self.check_running, **options)

    async def ready(self, operator: Operator, after: int = 0, timeout_s: float = 30.0) -> None:
        """The runtime is up: online on MQTT, the MCU link connected, cameras streaming
        (said in messages from index ``after`` on)."""
        await operator.wait("status", lambda m: m.body == "online", after=after,
                            timeout_s=timeout_s, what="online")
        await operator.wait("telemetry/link", lambda m: m.get("connected") is True,
                            after=after, timeout_s=timeout_s, what="connected")

        def streaming(m: Message) -> bool:
            body = m.body if isinstance(m.body, dict) else {}
            return all(isinstance(body.get(c), dict) and body[c].get("state") == "streaming"
                       for c in ("forward", "wrist"))

        await operator.wait("telemetry/cameras", streaming, after=after, timeout_s=timeout_s,
                            what="with both cameras streaming")

    def log_tail(self) -> str:
        return self.runtime.log_tail() if self.runtime is not None else ""

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.stop()
        self.cameras.close()


def as_float(value: object) -> float:
    assert isinstance(value, int | float), value
    assert not isinstance(value, bool), value
    return float(value)


def nonzero_motor_events(board: EmulatedBoard) -> list[dict[str, object]]:
    """The emulator's ``motor`` events (a track's duty went from zero to non-zero or back)
    with a non-zero duty: every moment a track started to be driven."""
    return [e for e in board.events("motor") if e.get("duty") not in (0, 0.0)]
