"""Remote inference: what the network path adds, and whether the policy still succeeds.

    .venv/bin/python bench/remote_bench.py [--episodes 20] [--round-trip-ms 50]

``zima serve`` runs ``models/zima-demo.onnx`` in its own process on loopback (CPU
provider, one intra-op thread, as the robot runs it); the robot's side is the runtime's
own ``RemotePolicy``, called from a worker thread as the ``PolicyRunner`` calls it.

**Added latency.** For the demo contract's observation (4 images of 96x128 RGB, 147 kB,
and the action history): bare onnxruntime inference of the same model in this process
(``PolicyModel.infer``), then the remote round trip (``RemotePolicy.infer``: encode, the
WebSocket both ways, the server's inference, decode), interleaved, same inputs. The
figure is p99(remote) - p99(local), and p50 likewise; goal: <= 5 ms at p99.

**Held-out success.** ``zima sim eval`` on the suite's held-out seeds (``SUITE_SEED``
on) with the model file, then through the server behind a delaying TCP proxy
(tests/onboard/delay_proxy.py) adding ``--round-trip-ms`` (half each way). The
evaluation runs in lock-step, so the sim clock models the round trip itself: the remote
run's inference latency is ``--round-trip-ms`` (the round trip includes the server's
inference), so its plans start that much earlier, on frames that much older (older than
an action period: carried from the step before, as on the robot). What this checks is
the whole remote path (contract check, transport, output check, chunk queue) under a
slow link, and that the outcome
stays within the local figure's 95 % interval. Takes about 10 s plus the episodes (about
10 s each, twice).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zima.sim  # noqa: F401 -- sets MUJOCO_GL before mujoco is imported
from bench.results import record
from tests.onboard.delay_proxy import DelayProxy
from zima.contract import DEFAULT
from zima.onboard.policy import load_model
from zima.onboard.remote_policy import RemotePolicy
from zima.sim.evaluate import EvalConfig, EvalSummary, evaluate
from zima.sim.suite import SUITE_SEED

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "zima-demo.onnx"
KEY = b"remote bench key, 32 characters."
GOAL_ADDED_P99_MS = 5.0


def start_server(key_file: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zima.host.serve", str(DEMO), "--key-file", str(key_file),
         "--port", "0", "--provider", "cpu", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        raise RuntimeError(f"zima serve did not start: {line!r}")
    port = int(line.split(" on ", 1)[1].rsplit(":", 1)[1].split("/", 1)[0])
    return proc, port


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def added_latency(port: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Local inference and remote round trips (seconds), ``n`` each, interleaved."""
    local = load_model(DEMO, DEFAULT)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1, *DEFAULT.image_shape), np.uint8)  # [1, N, H, W, 3]
    history = rng.integers(0, DEFAULT.n_actions, (1, DEFAULT.action_history), np.int64)

    async def main() -> tuple[list[float], list[float]]:
        local_s: list[float] = []
        remote_s: list[float] = []
        async with RemotePolicy(f"127.0.0.1:{port}", KEY, DEFAULT, timeout_s=5.0) as remote:

            def measure() -> None:
                for i in range(n + 10):
                    start = time.perf_counter()
                    local.infer(images, history)
                    middle = time.perf_counter()
                    remote.infer(images, history)
                    end = time.perf_counter()
                    if i >= 10:  # warmed up
                        local_s.append(middle - start)
                        remote_s.append(end - middle)

            await asyncio.to_thread(measure)
        return local_s, remote_s

    local_s, remote_s = asyncio.run(main())
    return np.array(local_s), np.array(remote_s)


class ProxyThread:
    """A DelayProxy on its own event loop in a thread (evaluate() runs its own loops)."""

    def __init__(self, target_port: int, one_way_s: float) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(target_port,
                                                                             one_way_s),))

    async def _main(self, target_port: int, one_way_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with DelayProxy(target_port, delay_s=one_way_s) as proxy:
            self.port = proxy.port
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def ms(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q) * 1e3)


def success(summary: EvalSummary) -> str:
    low, high = summary.success_ci
    return (f"{summary.successes}/{len(summary.results)} ({summary.success_rate:.0%}, "
            f"95% CI {low:.0%}-{high:.0%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20,
                        help="held-out episodes, each way (default 20)")
    parser.add_argument("--scene", default="arena", help="the scene (default arena)")
    parser.add_argument("--round-trip-ms", type=float, default=50.0,
                        help="added by the proxy (default 50)")
    parser.add_argument("--requests", type=int, default=300,
                        help="round trips measured (default 300)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        key_file = Path(folder) / "key"
        key_file.write_bytes(KEY)
        proc, port = start_server(key_file)
        try:
            local_s, remote_s = added_latency(port, args.requests)
            cfg = EvalConfig(scene=args.scene, episodes=args.episodes, seed=SUITE_SEED)
            local = evaluate(DEMO, cfg)
            with ProxyThread(port, args.round_trip_ms / 2e3) as proxy:
                start = time.perf_counter()
                remote = evaluate(DEMO, dataclasses.replace(
                    cfg, server=f"127.0.0.1:{proxy.port}", key_file=key_file,
                    latency_s=max(cfg.latency_s, args.round_trip_ms / 1e3)))
                remote_wall_s = time.perf_counter() - start
        finally:
            stop_server(proc)
    added_p50 = ms(remote_s, 50) - ms(local_s, 50)
    added_p99 = ms(remote_s, 99) - ms(local_s, 99)
    rows = [
        ("local inference p50/p99", f"{ms(local_s, 50):.2f} / {ms(local_s, 99):.2f} ms", ""),
        ("remote round trip p50/p99", f"{ms(remote_s, 50):.2f} / {ms(remote_s, 99):.2f} ms",
         ""),
        ("added by the remote path p50/p99", f"{added_p50:.2f} / {added_p99:.2f} ms",
         f"p99 <= {GOAL_ADDED_P99_MS:g} ms"),
        (f"held-out success, local ({args.scene})", success(local), ""),
        (f"held-out success, remote +{args.round_trip_ms:g} ms", success(remote),
         "in the local 95% CI"),
        ("remote eval wall time", f"{remote_wall_s:.1f} s ({local.wall_s:.1f} s local)", ""),
    ]
    low, high = local.success_ci
    within = low <= remote.success_rate <= high
    width = max(len(r[0]) for r in rows)
    print(f"remote inference: models/zima-demo.onnx, {args.requests} round trips on "
          "loopback, zima serve in its own process (CPU, 1 thread)")
    for name, value, goal in rows:
        print(f"  {name:<{width}}  {value:>34}  {goal}")
    record("remote policy", "round trip added over local inference p50/p99, ms",
           f"{added_p50:.2f} / {added_p99:.2f}", goal=f"p99 <= {GOAL_ADDED_P99_MS:g} ms",
           ok=added_p99 <= GOAL_ADDED_P99_MS)
    record("remote policy", f"held-out success, remote +{args.round_trip_ms:g} ms vs local",
           f"{remote.successes}/{len(remote.results)} vs {local.successes}/{len(local.results)}",
           goal="within the local 95% CI", ok=within)


if __name__ == "__main__":
    main()
