"""``zima serve``: the policy server, spoken to by a raw client on loopback.

A real server (the ``python -m zima.host.serve`` process, or ``PolicyServer`` in this
process) and a client built from the wire codec alone (aiohttp's WebSocket, no
``RemotePolicy``), so the server is judged by what it answers to any client: the
handshake, the model's output, and refusals of the wrong key, hostile frames and slow
handshakes, after which it still serves the next robot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.onboard.onnx_models import build_model
from zima.contract import DEFAULT, Contract
from zima.host.serve import PolicyServer, choose_providers, run
from zima.onboard import remote_protocol as wire
from zima.onboard.install import make_self_signed
from zima.onboard.policy import load_model, output_shape
from zima.tls import server_tls_context

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "zima-demo.onnx"
KEY = b"the serve tests' shared key, 32+"


def run_async(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    async def guarded() -> None:
        async with asyncio.timeout(60):
            await main()

    asyncio.run(guarded())


async def receive(
    ws: aiohttp.ClientWebSocketResponse, shapes: wire.Shapes | None = None
) -> wire.Message:
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    return wire.decode(msg.data, shapes)


async def handshake(ws: aiohttp.ClientWebSocketResponse, key: bytes = KEY) -> wire.Message:
    """Answer the challenge with ``key``; the server's answer (a checked welcome)."""
    challenge = await receive(ws)
    assert isinstance(challenge, wire.Challenge)
    auth = wire.answer_challenge(key, challenge)
    await ws.send_bytes(wire.encode(auth))
    answer = await receive(ws)
    if isinstance(answer, wire.Welcome):
        assert wire.welcome_holds_key(key, challenge, auth, answer)
    return answer


@contextlib.asynccontextmanager
async def serving(path: Path, **kw: Any) -> AsyncIterator[PolicyServer]:
    model = await asyncio.to_thread(load_model, path, None)
    async with PolicyServer(model, KEY, port=0, **kw) as server:
        yield server


async def closed(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """The server closed ``ws`` (after what it had to say)."""
    while True:
        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
            return True


def test_the_served_demo_model_answers_as_it_does_locally(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    with subprocess.Popen(
        [sys.executable, "-m", "zima.host.serve", str(DEMO), "--key-file", str(key_file),
         "--port", "0", "--provider", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            local = load_model(DEMO, DEFAULT)
            assert first.startswith(f"serving {DEMO} (sha256 {local.sha256}) on ws://127.0.0.1:")
            assert "provider CPUExecutionProvider" in proc.stdout.readline()
            assert "contract: cameras" in proc.stdout.readline()
            url = first.split(" on ", 1)[1].strip()
            rng = np.random.default_rng(1)
            images = rng.integers(0, 256, DEFAULT.image_shape, np.uint8)
            history = np.array([1, 0, 2, 3], np.int64)

            async def main() -> None:
                async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                    welcome = await handshake(ws)
                    assert isinstance(welcome, wire.Welcome)
                    assert welcome.sha256 == local.sha256
                    assert Contract.from_json(welcome.contract_json) == local.contract
                    shapes = wire.Shapes.of(DEFAULT, output_shape(DEFAULT))
                    for id_ in (5, 6):
                        await ws.send_bytes(wire.encode(wire.Infer(id_, images, history)))
                        out = await receive(ws, shapes)
                        assert isinstance(out, wire.Out)
                        assert out.id == id_
                        expected = local.infer(images[None], history[None])
                        np.testing.assert_allclose(out.output, expected, rtol=1e-5, atol=1e-5)

            run_async(main)
        finally:
            proc.kill()  # leaving the with: waits for it, closes its stdout


def test_a_wrong_key_is_refused_and_the_next_robot_served(tmp_path: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)

    async def main() -> None:
        async with serving(path) as server, aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url) as ws:
                answer = await handshake(ws, b"not the key but long enough")
                assert answer == wire.Refused("wrong key")
                assert await closed(ws)
            async with session.ws_connect(server.url) as ws:
                assert isinstance(await handshake(ws), wire.Welcome)
            assert (server.refusals, server.connections) == (1, 0)

    run_async(main)


@pytest.mark.parametrize("attack", ["garbage", "text", "infer before auth", "auth twice",
                                    "short infer", "oversized"])
def test_hostile_frames_are_refused_and_the_server_keeps_serving(tmp_path: Path,
                                                                 attack: str) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    shapes = wire.Shapes.of(DEFAULT, output_shape(DEFAULT))
    images = np.zeros(DEFAULT.image_shape, np.uint8)
    history = np.zeros(DEFAULT.action_history, np.int64)

    async def main() -> None:
        async with serving(path) as server, aiohttp.ClientSession() as session:
            async with session.ws_connect(server.url) as ws:
                if attack == "infer before auth":
                    await receive(ws)
                    await ws.send_bytes(wire.encode(wire.Infer(0, images, history)))
                    answer = await receive(ws)
                    assert isinstance(answer, wire.Refused)
                    assert "before the handshake" in answer.reason
                else:
                    assert isinstance(await handshake(ws), wire.Welcome)
                    frame = {"garbage": b"\xff\x00{{{" * 50,
                             "auth twice": wire.encode(wire.Auth(b"\0" * 32, "0" * 64)),
                             "short infer": wire.encode(wire.Infer(0, images, history))[:-1],
                             "oversized": b"\0" * (shapes.infer_bytes + 4096)}.get(attack)
                    if frame is None:
                        await ws.send_str("hello")
                    else:
                        await ws.send_bytes(frame)
                    if attack != "oversized":  # that one is closed by aiohttp (1009)
                        answer = await receive(ws, shapes)
                        assert isinstance(answer, wire.Refused)
                assert await closed(ws)
            async with session.ws_connect(server.url) as ws:  # the next robot
                assert isinstance(await handshake(ws), wire.Welcome)
                await ws.send_bytes(wire.encode(wire.Infer(1, images, history)))
                assert isinstance(await receive(ws, shapes), wire.Out)

    run_async(main)


def test_a_silent_client_is_dropped(tmp_path: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)

    async def main() -> None:
        async with serving(path, auth_timeout_s=0.2) as server, \
                aiohttp.ClientSession() as session, session.ws_connect(server.url) as ws:
            assert isinstance(await receive(ws), wire.Challenge)
            answer = await receive(ws)
            assert answer == wire.Refused("no authentication within 0.2 s")
            assert await closed(ws)

    run_async(main)


def test_tls_serves_wss_to_a_robot_that_trusts_the_certificate(tmp_path: Path) -> None:
    path = build_model(tmp_path / "p.onnx", DEFAULT)
    cert, key = tmp_path / "serve.crt", tmp_path / "serve.key"
    make_self_signed(cert, key, ["127.0.0.1", "localhost"])

    async def main() -> None:
        async with serving(path, tls=server_tls_context(cert, key)) as server, \
                aiohttp.ClientSession() as session:
            assert server.url.startswith("wss://")
            trusted = ssl.create_default_context(cafile=cert)
            async with session.ws_connect(server.url, ssl=trusted) as ws:
                assert isinstance(await handshake(ws), wire.Welcome)
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.ws_connect(server.url)  # the system's CAs do not know it
            with pytest.raises(aiohttp.ClientError):
                await session.ws_connect(server.url.replace("wss://", "ws://"))

    run_async(main)


def test_serve_refuses_what_it_cannot_use(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          ) -> None:
    import argparse  # noqa: PLC0415

    def args(**kw: Any) -> argparse.Namespace:
        base = {"model": DEMO, "key_file": tmp_path / "key", "host": "127.0.0.1", "port": 0,
                "tls_cert": None, "tls_key": None, "provider": "cpu", "threads": 1}
        return argparse.Namespace(**(base | kw))

    assert run(args()) == 2  # no key file
    assert "error:" in capsys.readouterr().err
    (tmp_path / "key").write_text("short\n")
    assert run(args()) == 2
    assert "at least 16" in capsys.readouterr().err
    (tmp_path / "key").write_bytes(KEY)
    no_contract = build_model(tmp_path / "nc.onnx", DEFAULT, metadata="")
    assert run(args(model=no_contract)) == 1
    assert "no contract" in capsys.readouterr().err
    assert run(args(tls_cert=tmp_path / "c.pem")) == 2
    assert "go together" in capsys.readouterr().err
    if "CUDAExecutionProvider" not in choose_providers("auto"):
        with pytest.raises(ValueError, match="no CUDA provider"):
            choose_providers("cuda")
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
