"""``zima serve MODEL.onnx``: the policy on another computer, for robots that cannot run it.

    zima serve policy.onnx --key-file policy.key                      # ws://127.0.0.1:8765
    zima serve policy.onnx --key-file policy.key --host 0.0.0.0 \\
        --tls-cert serve.crt --tls-key serve.key                      # wss:// on the LAN

The robot's ``[policy] backend = "remote"`` (:mod:`zima.onboard.remote_policy`) connects,
both ends prove they hold the shared key, the server states the model's contract and
sha256, and the robot sends observations and gets the model's raw output back: its own
runner checks the output, chooses the actions and keeps the chunk queue, exactly as with
a local model. The wire format is :mod:`zima.onboard.remote_protocol`.

**Transport: aiohttp WebSockets, binary frames.** One persistent connection per robot (no
per-request handshake), message-framed (no hand-rolled length framing on a socket),
``max_msg_size`` bounds what either end reads, TLS through the standard ``ssl`` module,
ping/pong heartbeats that notice a dead peer, and aiohttp is already what the robot's web
console runs on (no new dependency on the robot). Images travel as raw uint8.

The model is loaded and verified by :func:`~zima.onboard.policy.load_model` for the
contract it carries (its shipped samples run, its outputs checked): onnxruntime's CUDA
provider where one is present, the CPU otherwise (``--provider``). Inference runs on one
worker thread, one request at a time across all robots; each connection answers its
requests in order. Failure rule: a connection that breaks the protocol, sends the wrong
key or does not authenticate within ``AUTH_TIMEOUT_S`` is refused with a reason and
closed; nothing a client sends can stop the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

import numpy as np

from zima.onboard.remote_protocol import (
    PATH,
    Auth,
    Fail,
    Infer,
    Out,
    ProtocolError,
    Refused,
    Shapes,
    auth_holds_key,
    decode,
    encode,
    make_welcome,
    max_frame_bytes,
    new_challenge,
    read_key,
)
from zima.tls import server_tls_context

if TYPE_CHECKING:
    from aiohttp import web

    from zima.onboard.policy import PolicyModel

__all__ = ["AUTH_TIMEOUT_S", "PolicyServer", "add_arguments", "choose_providers", "run"]

log = logging.getLogger("zima.host.serve")

AUTH_TIMEOUT_S: Final = 5.0  # a connection must authenticate within this
MAX_CONNECTIONS: Final = 8  # robots served at once; more are answered 503
HEARTBEAT_S: Final = 5.0  # WebSocket ping interval: a silent peer is dropped after ~1.5x


def choose_providers(choice: str = "auto") -> list[str]:
    """onnxruntime execution providers for ``choice``: "cpu", "cuda", or "auto" (CUDA
    where onnxruntime has it, else the CPU). ``ValueError`` for "cuda" without it."""
    import onnxruntime as ort  # type: ignore[import-untyped]  # noqa: PLC0415 -- heavy

    available = ort.get_available_providers()
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if choice == "cuda":
        raise ValueError(f"onnxruntime has no CUDA provider here (it has {available}): "
                         "install onnxruntime-gpu")
    return ["CPUExecutionProvider"]


class PolicyServer:
    """Serves ``model`` to clients holding ``key`` (module doc). An async context manager:
    listening once entered (``port`` is the bound port: pass 0 for any free one)."""

    def __init__(self, model: PolicyModel, key: bytes, *, host: str = "127.0.0.1",
                 port: int = 8765, tls: ssl.SSLContext | None = None,
                 max_connections: int = MAX_CONNECTIONS,
                 auth_timeout_s: float = AUTH_TIMEOUT_S) -> None:
        self.model, self._key = model, key
        self.auth_timeout_s = auth_timeout_s
        self.host, self.port, self.tls = host, port, tls
        self.max_connections = max_connections
        self.shapes = Shapes.of(model.contract, _output_shape(model))
        self.contract_json = model.contract.to_json()
        self.connections = 0  # open now
        self.requests = 0  # answered, in all
        self.refusals = 0  # connections refused (key, protocol, timeout, too many)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="serve")
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self.tls is not None else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{PATH}"

    async def __aenter__(self) -> Self:
        from aiohttp import web  # noqa: PLC0415

        app = web.Application()
        app.router.add_get(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls)
        await site.start()
        if self.port == 0:  # any free one: the one bound
            self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._executor.shutdown(wait=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import WSMsgType, web  # noqa: PLC0415

        if self.connections >= self.max_connections:
            self.refusals += 1
            return web.Response(status=503, text="too many connections")
        ws = web.WebSocketResponse(max_msg_size=max_frame_bytes(self.shapes), compress=False,
                                   heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        peer = request.remote
        self.connections += 1
        try:
            if await self._authenticate(ws, peer):
                log.info("%s: connected", peer)
                async for msg in ws:
                    if msg.type != WSMsgType.BINARY:
                        await self._refuse(ws, peer, f"{msg.type.name} frame; binary only")
                        break
                    try:
                        message = decode(msg.data, self.shapes)
                    except ProtocolError as exc:
                        await self._refuse(ws, peer, str(exc))
                        break
                    if not isinstance(message, Infer):
                        await self._refuse(ws, peer, f"unexpected {type(message).__name__}")
                        break
                    await ws.send_bytes(encode(await self._infer(message)))
                log.info("%s: disconnected", peer)
        finally:
            self.connections -= 1
            await ws.close()
        return ws

    async def _authenticate(self, ws: web.WebSocketResponse, peer: str | None) -> bool:
        from aiohttp import WSMsgType  # noqa: PLC0415

        challenge = new_challenge()
        await ws.send_bytes(encode(challenge))
        try:
            msg = await asyncio.wait_for(ws.receive(), self.auth_timeout_s)
        except TimeoutError:
            await self._refuse(ws, peer, f"no authentication within {self.auth_timeout_s:g} s")
            return False
        if msg.type != WSMsgType.BINARY:
            await self._refuse(ws, peer, "expected the auth frame")
            return False
        try:
            auth = decode(msg.data)
        except ProtocolError as exc:
            await self._refuse(ws, peer, str(exc))
            return False
        if not isinstance(auth, Auth):
            await self._refuse(ws, peer, f"expected auth, got {type(auth).__name__}")
            return False
        if not auth_holds_key(self._key, challenge, auth):
            await self._refuse(ws, peer, "wrong key")
            return False
        from zima.onboard.policy import LOGITS_OUTPUT  # noqa: PLC0415

        welcome = make_welcome(self._key, challenge, auth, contract_json=self.contract_json,
                               sha256=self.model.sha256, output=LOGITS_OUTPUT,
                               provider=self.model.provider)
        await ws.send_bytes(encode(welcome))
        return True

    async def _refuse(self, ws: web.WebSocketResponse, peer: str | None, reason: str) -> None:
        self.refusals += 1
        log.warning("%s: refused: %s", peer, reason)
        if not ws.closed:
            with contextlib.suppress(ConnectionError):  # gone already: nothing to tell
                await ws.send_bytes(encode(Refused(reason)))

    async def _infer(self, message: Infer) -> Out | Fail:
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(
                self._executor, self.model.infer, message.images[None],
                message.history[None])  # [chunk_len, n_actions]
        except Exception as exc:  # onnxruntime's errors share no other base
            log.exception("inference failed")
            return Fail(message.id, f"inference failed: {exc}")
        self.requests += 1
        return Out(message.id, np.asarray(out, np.float32))


def _output_shape(model: PolicyModel) -> tuple[int, ...]:
    from zima.onboard.policy import output_shape  # noqa: PLC0415

    return output_shape(model.contract)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the policy's ONNX file")
    parser.add_argument("--key-file", type=Path, required=True,
                        help="the shared key (one line, 16+ characters; the robot's "
                             "[policy] key_file holds the same)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0: the network)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765)")
    parser.add_argument("--tls-cert", "--cert", type=Path,
                        help="TLS certificate (PEM): serve wss://")
    parser.add_argument("--tls-key", "--key", type=Path, help="TLS private key (PEM)")
    parser.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto",
                        help="onnxruntime provider (default auto: CUDA where present)")
    parser.add_argument("--threads", type=int, default=0,
                        help="onnxruntime intra-op threads (default 0: onnxruntime's choice)")


def run(args: argparse.Namespace) -> int:
    from zima.onboard.policy import ModelError, load_model  # noqa: PLC0415 -- onnxruntime

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        key = read_key(args.key_file.read_text(encoding="utf-8"))
        if (args.tls_cert is None) != (args.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together")
        tls = None if args.tls_cert is None else server_tls_context(args.tls_cert, args.tls_key)
        providers = choose_providers(args.provider)
        model = load_model(args.model, None, args.threads, providers)
    except OSError as exc:
        print(f"error: {args.key_file}: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return 2
    except ModelError as exc:
        print(f"error: the model is refused: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return asyncio.run(_serve(model, key, args.host, args.port, tls))


async def _serve(model: PolicyModel, key: bytes, host: str, port: int,
                 tls: ssl.SSLContext | None) -> int:
    try:
        async with PolicyServer(model, key, host=host, port=port, tls=tls) as server:
            c = model.contract
            print(f"serving {model.path} (sha256 {model.sha256}) on {server.url}\n"  # noqa: T201
                  f"  output logits {list(server.shapes.output)}, provider "
                  f"{model.provider}, warm-up inference {model.warmup_latency_s * 1e3:.2f} ms\n"
                  f"  contract: cameras {list(c.cameras)}, images {list(c.image_shape)}, "
                  f"action history {c.action_history}, chunk {c.chunk_len}", flush=True)
            await asyncio.Event().wait()  # until interrupted
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m zima.host.serve``: the same as ``zima serve``."""
    parser = argparse.ArgumentParser(prog="zima serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
