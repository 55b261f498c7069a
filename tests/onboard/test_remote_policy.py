"""The remote backend: the runner planning through a real ``zima serve`` on loopback.

The server is the real one (``zima.host.serve.PolicyServer`` in this process, or the
``python -m zima.host.serve`` process where a test kills it), the network in between a
small delaying proxy (tests/onboard/delay_proxy.py: delay, jitter, loss, stall, cut).
The runner ticks in lock-step on a stepped clock (sim time: the network costs wall time
only), so the actions are exact; what depends on the wall clock (a timeout, a reconnect)
is awaited with generous bounds, never asserted as a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.contract import DEFAULT, Action, Contract
from zima.emulator import EmulatedBoard
from zima.host.serve import PolicyServer
from zima.onboard import remote_protocol as wire
from zima.onboard.config import ConfigError, config_from_table
from zima.onboard.fusion import FrameFusion
from zima.onboard.link_config import LinkConfig
from zima.onboard.policy import ContractMismatchError, load_model
from zima.onboard.policy_runner import PolicyConfig, PolicyRunner
from zima.onboard.remote_policy import RemoteAuthError
from zima.onboard.safety import DriveMode

from .delay_proxy import DelayProxy
from .helpers import until_mcu
from .lockstep import SteppedClock, expected_history_actions, lock_step
from .onnx_models import build_model

KEY = b"a shared key of 32 characters..."
GUARD_S = 60.0
ROOT = Path(__file__).resolve().parents[2]


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def guarded() -> None:
        async with asyncio.timeout(GUARD_S):
            await main()

    asyncio.run(guarded())


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait (wall clock, generously bounded) until ``condition()``."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.key"
    path.write_bytes(KEY + b"\n")
    return path


@contextlib.asynccontextmanager
async def serving(path: Path, key: bytes = KEY, port: int = 0,
                  contract: Contract | None = None) -> AsyncIterator[PolicyServer]:
    model = await asyncio.to_thread(load_model, path, contract)
    async with PolicyServer(model, key, port=port) as server:
        yield server


def remote_config(port: int, key_file: Path, **kw: Any) -> PolicyConfig:
    return PolicyConfig(backend="remote", server=f"127.0.0.1:{port}", key_file=key_file,
                        temperature=0.0, **kw)


# ---- planning through the server -----------------------------------------------------


def test_the_remote_backend_plans_as_the_local_one(tmp_path: Path, key_file: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)

    async def main() -> None:
        async with serving(path) as server:
            clock, fusion = SteppedClock(), FrameFusion(DEFAULT)
            config = remote_config(server.port, key_file, execute_k=2)
            async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
                assert runner.model_sha256 == load_model(path, DEFAULT).sha256
                steps = await lock_step(runner, fusion, clock, 13)
                assert [int(s.action) for s in steps] == expected_history_actions(2, 13)
                assert all(s.reason is None for s in steps[1:])
                st_ = runner.status
                assert (st_.backend, st_.connected, st_.losses, st_.reconnects) == (
                    "remote", True, 0, 0)
                assert st_.round_trip_s is not None
                assert st_.round_trip_p99_s is not None
                assert server.requests >= 2 + 6  # the warm-up's, then one per chunk

    run(main)


def test_delay_jitter_and_loss_cost_time_not_actions(tmp_path: Path, key_file: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)

    async def main() -> None:
        async with serving(path) as server, DelayProxy(
                server.port, delay_s=0.01, jitter_s=0.01, loss=0.2, loss_penalty_s=0.05,
                seed=1) as proxy:
            clock, fusion = SteppedClock(), FrameFusion(DEFAULT)
            config = remote_config(proxy.port, key_file, execute_k=1, request_timeout_s=5.0)
            async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
                steps = await lock_step(runner, fusion, clock, 16)
                assert [int(s.action) for s in steps] == expected_history_actions(1, 16)
                st_ = runner.status
                assert st_.losses == 0
                assert st_.round_trip_p99_s is not None
                assert st_.round_trip_p99_s >= 0.02  # both ways through the proxy
            assert proxy.lost > 0  # the loss did happen, and was survived

    run(main)


def test_the_lead_covers_the_round_trip(tmp_path: Path, key_file: Path) -> None:
    """The runner's latency is the round trip: on a stepped clock, model it as 0.25 s and
    the next plan starts 3 action periods ahead, as for a local model that slow."""
    path = build_model(tmp_path / "p.onnx", DEFAULT)

    async def main() -> None:
        async with serving(path) as server:
            clock, fusion = SteppedClock(inference_s=0.25), FrameFusion(DEFAULT)
            config = remote_config(server.port, key_file, latency_margin=1.0)
            async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
                steps = await lock_step(runner, fusion, clock, 12)
                assert runner.status.lead_s == pytest.approx(0.3)
                assert runner.status.dry_ticks == 0
                assert [int(s.action) for s in steps] == [0, 0, 0, 1, 3, 1, 3, 0, 2, 0, 2, 3]

    run(main)


# ---- losing the server ------------------------------------------------------------------


def test_a_stalled_link_times_out_stops_and_recovers(tmp_path: Path, key_file: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)

    async def main() -> None:
        async with serving(path) as server, DelayProxy(server.port) as proxy:
            clock, fusion = SteppedClock(), FrameFusion(DEFAULT)
            config = remote_config(proxy.port, key_file, execute_k=1, request_timeout_s=0.2,
                                   reconnect_max_s=0.2)
            async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
                steps = await lock_step(runner, fusion, clock, 3)
                assert all(s.reason is None for s in steps[1:])
                proxy.stall()
                steps = await lock_step(runner, fusion, clock, 3)  # waits out the timeout
                assert steps[0].reason is None  # the action queued before the stall
                assert steps[1].action is Action.STOP
                assert steps[1].reason is not None
                assert steps[1].reason.startswith("remote policy lost: no answer from")
                assert "within 0.2 s" in steps[1].reason
                assert steps[2].reason is not None
                assert "not connected" in steps[2].reason
                assert (runner.status.connected, runner.status.losses) == (False, 1)
                proxy.resume()
                await until(lambda: bool(runner.status.connected))
                steps = await lock_step(runner, fusion, clock, 4)
                assert steps[-1].reason is None
                assert (runner.status.reconnects, runner.status.remote_error) == (1, None)

    run(main)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_serve(model: Path, key_file: Path, port: int) -> subprocess.Popen[str]:
    """``python -m zima.host.serve`` on ``port``, once it says it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zima.host.serve", str(model), "--key-file", str(key_file),
         "--port", str(port), "--provider", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("serving "), line
    return proc


def stop_serve(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def test_the_server_killed_mid_run_stops_the_robot_then_it_recovers(
        tmp_path: Path, key_file: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    port = free_port()

    async def main() -> None:
        proc = await asyncio.to_thread(start_serve, path, key_file, port)
        try:
            clock, fusion = SteppedClock(), FrameFusion(DEFAULT)
            config = remote_config(port, key_file, execute_k=4, request_timeout_s=0.3,
                                   reconnect_max_s=0.3)
            async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
                steps = await lock_step(runner, fusion, clock, 3)  # a chunk of 4 running
                assert all(s.reason is None for s in steps[1:])
                killed_s = time.monotonic()
                await asyncio.to_thread(stop_serve, proc)
                await until(lambda: not runner.status.connected)
                noticed_s = time.monotonic() - killed_s
                assert noticed_s < 5.0  # generous: the socket closes at once
                (step,) = await lock_step(runner, fusion, clock, 1)
                assert step.action is Action.STOP  # the queued rest of the chunk dropped
                assert step.reason is not None
                assert step.reason.startswith("remote policy lost: ")
                steps = await lock_step(runner, fusion, clock, 3)
                assert all(s.action is Action.STOP and s.reason is not None
                           and "not connected" in s.reason for s in steps)
                proc = await asyncio.to_thread(start_serve, path, key_file, port)
                await until(lambda: bool(runner.status.connected))
                steps = await lock_step(runner, fusion, clock, 6)
                assert [s.reason for s in steps[1:]] == [None] * 5
                st_ = runner.status
                assert (st_.backend, st_.losses, st_.reconnects) == ("remote", 1, 1)
        finally:
            await asyncio.to_thread(stop_serve, proc)

    run(main)


def test_the_fallback_model_takes_over_while_the_server_is_away(
        tmp_path: Path, key_file: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    table = np.zeros((DEFAULT.chunk_len, DEFAULT.n_actions), np.float32)
    table[:, int(Action.LEFT)] = 10.0
    fallback = build_model(tmp_path / "fallback.onnx", DEFAULT, kind="table", table=table)

    async def main() -> None:
        async with serving(path) as server, DelayProxy(server.port) as proxy:
            clock, fusion = SteppedClock(), FrameFusion(DEFAULT)
            config = remote_config(proxy.port, key_file, execute_k=1, fallback_model=fallback,
                                   reconnect_max_s=0.2)
            async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
                steps = await lock_step(runner, fusion, clock, 3)
                assert [int(s.action) for s in steps] == expected_history_actions(1, 3)
                proxy.target_port = free_port()  # nothing listens: reconnection fails
                proxy.cut()
                await until(lambda: not runner.status.connected)
                assert runner.status.backend == "fallback"
                assert runner.model_sha256 == load_model(fallback, DEFAULT).sha256
                steps = await lock_step(runner, fusion, clock, 4)
                assert steps[0].reason is not None  # the loss: a STOP while it plans
                assert [s.action for s in steps[1:]] == [Action.LEFT] * 3
                assert all(s.reason is None for s in steps[1:])
                proxy.target_port = server.port
                await until(lambda: bool(runner.status.connected))
                assert runner.status.backend == "remote"
                steps = await lock_step(runner, fusion, clock, 3)
                assert Action.LEFT not in {s.action for s in steps[1:]}  # history model again

    run(main)


# ---- refusals -----------------------------------------------------------------------------


def test_a_server_with_another_contract_is_refused(tmp_path: Path, key_file: Path) -> None:
    other = dataclasses.replace(DEFAULT, chunk_len=DEFAULT.chunk_len + 2)
    path = build_model(tmp_path / "other.onnx", other)

    async def main() -> None:
        async with serving(path) as server:
            config = remote_config(server.port, key_file)
            with pytest.raises(ContractMismatchError, match="chunk_len") as info:
                async with PolicyRunner(config, DEFAULT, FrameFusion(DEFAULT)):
                    pass
            assert any("chunk_len" in m for m in info.value.mismatches)

    run(main)


def test_a_reload_onto_a_wrong_contract_keeps_the_old_server(tmp_path: Path,
                                                             key_file: Path) -> None:
    good = build_model(tmp_path / "p.onnx", DEFAULT)
    other = dataclasses.replace(DEFAULT, action_history=DEFAULT.action_history + 1)
    bad = build_model(tmp_path / "other.onnx", other)

    async def main() -> None:
        async with serving(good) as server, serving(bad) as wrong, DelayProxy(
                server.port) as proxy:
            clock, fusion = SteppedClock(), FrameFusion(DEFAULT)
            config = remote_config(proxy.port, key_file, execute_k=1)
            async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
                sha = runner.model_sha256
                proxy.target_port = wrong.port  # new connections reach the wrong model
                with pytest.raises(ContractMismatchError, match="action_history"):
                    await runner.reload()
                st_ = runner.status
                assert (st_.model_sha256, st_.reload_failures, st_.connected) == (sha, 1, True)
                assert st_.reload_error is not None
                steps = await lock_step(runner, fusion, clock, 5)
                assert [int(s.action) for s in steps] == expected_history_actions(1, 5)
                proxy.target_port = server.port
                assert await runner.reload() == sha
                assert runner.status.reloads == 1

    run(main)


def test_a_wrong_key_is_refused_at_either_end(tmp_path: Path, key_file: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)

    async def main() -> None:
        async with serving(path, key=b"another key, also long enough") as server:
            config = remote_config(server.port, key_file)
            with pytest.raises(RemoteAuthError, match="wrong key"):
                async with PolicyRunner(config, DEFAULT, FrameFusion(DEFAULT)):
                    pass
            assert server.refusals == 1

    run(main)


def test_a_server_that_cannot_prove_the_key_is_refused(tmp_path: Path, key_file: Path) -> None:
    """A server that accepts anyone (it does not hold the key) cannot fake its proof."""

    async def impostor(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(wire.encode(wire.Challenge(b"\0" * 32)))
        await ws.receive()
        await ws.send_bytes(wire.encode(wire.Welcome("0" * 64, DEFAULT.to_json(), "1" * 64,
                                                     "logits", "CPUExecutionProvider")))
        await ws.receive()
        return ws

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/policy", impostor)
        runner_ = web.AppRunner(app)
        await runner_.setup()
        site = web.TCPSite(runner_, "127.0.0.1", 0)
        await site.start()
        port = runner_.addresses[0][1]
        try:
            with pytest.raises(RemoteAuthError, match="does not hold the key"):
                async with PolicyRunner(remote_config(port, key_file), DEFAULT,
                                        FrameFusion(DEFAULT)):
                    pass
        finally:
            await runner_.cleanup()

    run(main)


def test_an_unreachable_server_at_start_is_not_fatal(tmp_path: Path, key_file: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    port = free_port()

    async def main() -> None:
        clock, fusion = SteppedClock(), FrameFusion(DEFAULT)
        config = remote_config(port, key_file, reconnect_max_s=0.2)
        async with PolicyRunner(config, DEFAULT, fusion, clock=clock) as runner:
            (step,) = await lock_step(runner, fusion, clock, 1)
            assert step.action is Action.STOP
            assert step.reason is not None
            assert "not connected" in step.reason
            assert runner.status.remote_error is not None
            async with serving(path, port=port):
                await until(lambda: bool(runner.status.connected))
                steps = await lock_step(runner, fusion, clock, 3)
                assert steps[-1].reason is None
                assert runner.status.reconnects == 0  # the first connection

    run(main)


# ---- configuration ----------------------------------------------------------------------


def test_the_remote_backend_is_configured_in_policy(tmp_path: Path) -> None:
    config = config_from_table({"policy": {
        "backend": "remote", "server": "gpu-box:8765", "key_file": "policy.key",
        "fallback_model": "small.onnx", "request_timeout_s": 0.3}}, tmp_path)
    policy = config.policy
    assert (policy.backend, policy.server, policy.request_timeout_s) == (
        "remote", "gpu-box:8765", 0.3)
    assert policy.key_file == tmp_path / "policy.key"
    assert policy.fallback_model == tmp_path / "small.onnx"
    for bad, match in [({"backend": "remote"}, "needs server"),
                       ({"backend": "cloud"}, "backend"),
                       ({"backend": "remote", "server": "gpu-box", "key_file": "k"}, "host:port"),
                       ({"request_timeout_s": 0}, "request_timeout_s")]:
        with pytest.raises(ConfigError, match=match):
            config_from_table({"policy": bad}, tmp_path)


# ---- the wire format ----------------------------------------------------------------------

SHAPES = wire.Shapes.of(DEFAULT, (DEFAULT.chunk_len, DEFAULT.n_actions))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_decode_to_a_message_or_a_protocol_error(frame: bytes) -> None:
    for shapes in (None, SHAPES):
        try:
            message = wire.decode(frame, shapes)
        except wire.ProtocolError:
            continue
        assert isinstance(message, wire.Challenge | wire.Auth | wire.Welcome | wire.Infer
                          | wire.Out | wire.Fail | wire.Refused)


header_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3), max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["t", "id", "v", "nonce", "mac", "reason", "sha256",
                                        "output", "provider", "x"]), header_values, max_size=6),
       st.binary(max_size=64))
def test_well_formed_json_headers_decode_or_are_refused(header: dict[str, Any],
                                                        payload: bytes) -> None:
    text = json.dumps(header).encode()
    frame = len(text).to_bytes(2, "little") + text + payload
    with contextlib.suppress(wire.ProtocolError):
        wire.decode(frame, SHAPES)


def test_every_message_survives_its_round_trip() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, DEFAULT.image_shape, np.uint8)
    history = np.array([0, 3, 1, 2], np.int64)
    output = rng.normal(size=SHAPES.output).astype(np.float32)
    simple: list[wire.Message] = [
        wire.Challenge(b"\1" * 32), wire.Auth(b"\2" * 32, "a" * 64),
        wire.Welcome("b" * 64, DEFAULT.to_json(), "c" * 64, "logits", "CPUExecutionProvider"),
        wire.Fail(7, "inference failed: x"), wire.Refused("wrong key")]
    for message in simple:
        assert wire.decode(wire.encode(message), SHAPES) == message
    infer = wire.decode(wire.encode(wire.Infer(3, images, history)), SHAPES)
    assert isinstance(infer, wire.Infer)
    assert infer.id == 3
    assert np.array_equal(infer.images, images)
    assert np.array_equal(infer.history, history)
    out = wire.decode(wire.encode(wire.Out(4, output)), SHAPES)
    assert isinstance(out, wire.Out)
    assert np.array_equal(out.output, output)
    with pytest.raises(wire.ProtocolError, match="before the handshake"):
        wire.decode(wire.encode(wire.Out(4, output)))
    with pytest.raises(wire.ProtocolError, match="payload of"):
        wire.decode(wire.encode(wire.Out(4, output))[:-1], SHAPES)


@given(st.text(max_size=40))
def test_server_addresses_parse_or_are_refused(text: str) -> None:
    try:
        host, port = wire.parse_server(text)
    except ValueError:
        return
    assert host
    assert 0 < port < 65536


def test_server_addresses() -> None:
    assert wire.parse_server("gpu-box:8765") == ("gpu-box", 8765)
    assert wire.parse_server("[::1]:9000") == ("::1", 9000)
    for bad in ("gpu-box", ":80", "host:0", "host:99999", "a/b:80", "host:8o"):
        with pytest.raises(ValueError, match="server"):
            wire.parse_server(bad)


# ---- evaluation through the server ---------------------------------------------------------


@pytest.mark.sim  # MuJoCo episodes, though it takes no simulator fixture
def test_sim_eval_through_the_server_matches_the_local_run(
        tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``zima sim eval --server``: the same seeded episodes give the same results through
    the network as from the file (lock-step: the network costs wall time only)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import argparse  # noqa: PLC0415

    from zima.sim import cli  # noqa: PLC0415 -- MuJoCo, after MUJOCO_GL
    from zima.sim.env import EnvConfig  # noqa: PLC0415
    from zima.sim.evaluate import EvalConfig, evaluate  # noqa: PLC0415

    path = build_model(tmp_path / "p.onnx", DEFAULT)  # the history model, sampled
    cfg = EvalConfig(episodes=2, seed=3, temperature=1.0, env=EnvConfig(time_limit_s=2.0))
    local = evaluate(path, cfg)
    port = free_port()
    proc = start_serve(path, key_file, port)
    try:
        remote = evaluate(Path("remote"), dataclasses.replace(
            cfg, server=f"127.0.0.1:{port}", key_file=key_file))
        assert remote.results == local.results
        assert remote.model_sha256 == local.model_sha256
        parser = argparse.ArgumentParser()
        cli.add_arguments(parser)
        argv = ["eval", "--server", f"127.0.0.1:{port}", "--key-file", str(key_file),
                "--episodes", "1", "--time-limit", "1"]
        assert cli.run(parser.parse_args(argv)) == 0
        assert f"server 127.0.0.1:{port} (sha256 {local.model_sha256[:12]})" in (
            capsys.readouterr().out)
        assert cli.run(parser.parse_args(["eval", "--server", f"127.0.0.1:{port}"])) == 2
        bad_key = tmp_path / "bad.key"
        bad_key.write_text("not the server's key at all\n")
        argv[4] = str(bad_key)
        assert cli.run(parser.parse_args(argv)) == 1
        assert "wrong key" in capsys.readouterr().err
    finally:
        stop_serve(proc)


# ---- the runtime through a server ------------------------------------------------------


def test_the_runtime_drives_through_a_remote_server_and_says_so(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path, key_file: Path
) -> None:
    """A robot with no model file of its own: the server's FORWARD policy drives the real
    firmware, telemetry/policy names the backend, and losing the server stops the robot."""
    from .test_runtime import (  # noqa: PLC0415 - the runtime's fixtures, hardware tier
        FORWARD_TARGETS,
        ask_mode,
        constant_policy,
        running,
        runtime_config,
        targets,
    )

    model = constant_policy(tmp_path / "served.onnx", Action.FORWARD)

    async def main() -> None:
        async with serving(model) as server:
            # A request timeout with room for a loaded test machine's stalls: the server's
            # loss below is seen when its connection closes, not by a timeout.
            policy = remote_config(server.port, key_file, model_path=tmp_path / "none.onnx",
                                   request_timeout_s=2.0)
            async with running(runtime_config(tmp_path, link_config, policy=policy)) as rt:
                await ask_mode(rt, DriveMode.AUTONOMOUS)
                await until_mcu(rt.link, FORWARD_TARGETS, 3000)
                record = rt.telemetry_record("policy")
                assert record is not None
                assert (record["backend"], record["connected"], record["model_path"]) == (
                    "remote", True, f"127.0.0.1:{server.port}")
                assert record["model_hash"] == load_model(model, DEFAULT).sha256
                assert isinstance(record["round_trip_ms"], float)
                await server.__aexit__(None, None, None)  # the server goes away
                await until(lambda: "remote policy" in str(getattr(rt.last_decision,
                                                                   "reason", None)))
                await until_mcu(rt.link, targets(0, 0), 3000)  # the STOP reaches the MCU

    run(main)
