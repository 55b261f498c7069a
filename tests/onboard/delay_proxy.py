"""A TCP proxy on loopback that delays, jitters, stalls and cuts: the network in between.

    async with DelayProxy(server_port, delay_s=0.025, jitter_s=0.005, loss=0.05) as proxy:
        client connects to 127.0.0.1:{proxy.port}

Every chunk of bytes read from either side is written to the other ``delay_s + U(0,
jitter_s)`` later (one way: a round trip adds twice that), in order. ``loss`` is the chance
that a chunk is held ``loss_penalty_s`` longer: what a lost packet looks like above TCP
(its retransmission). ``stall()`` holds everything until ``resume()`` (a link that
silently stops delivering); ``cut()`` closes every connection (a link that breaks);
``target_port`` may be changed: new connections go there. Seeded: the same seed gives
the same delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from types import TracebackType
from typing import Self


class DelayProxy:
    def __init__(self, target_port: int, *, delay_s: float = 0.0, jitter_s: float = 0.0,
                 loss: float = 0.0, loss_penalty_s: float = 0.2, seed: int = 0) -> None:
        self.target_port = target_port
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self.loss, self.loss_penalty_s = loss, loss_penalty_s
        self._rng = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0
        self.chunks = 0  # chunks forwarded, both ways
        self.lost = 0  # chunks held for loss_penalty_s

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._writers |= {client_w, server_w}
        for reader, writer in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pump(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.create_task(self._send(queue, writer))
        last_s = 0.0
        try:
            while chunk := await reader.read(65536):
                due_s = loop.time() + self.delay_s + self._rng.uniform(0.0, self.jitter_s)
                if self.loss and self._rng.random() < self.loss:
                    due_s += self.loss_penalty_s
                    self.lost += 1
                last_s = max(last_s, due_s)  # TCP keeps the order
                queue.put_nowait((last_s, chunk))
            queue.put_nowait((last_s, b""))  # end of stream
            await sender
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(Exception):
                writer.transport.abort()

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes]],
                    writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):  # the other side is gone: nothing to deliver
            while True:
                due_s, chunk = await queue.get()
                await asyncio.sleep(max(0.0, due_s - loop.time()))
                await self._flowing.wait()
                if not chunk:
                    writer.write_eof()
                    return
                writer.write(chunk)
                self.chunks += 1
                await writer.drain()
