"""``Watch``: the latest value of something, and a way to wait for the next ones.

A control loop wants the newest telemetry, not a backlog: an async iterator over a
``Watch`` yields the value current when the consumer asks, skipping values it was too
slow to see (like tokio's ``watch`` channel). ``wait_for(predicate)`` returns the first
value, current or future, for which the predicate holds. Single event loop; ``set`` is a
plain method so that loop callbacks (a port reader) can call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

__all__ = ["Watch"]

T = TypeVar("T")


class Watch(Generic[T]):
    """Holds the latest value; wakes every waiter when a new one is set."""

    def __init__(self, initial: T) -> None:
        self._value = initial
        self.version = 0  # how many values were set; a consumer can tell what it missed
        self._changed: asyncio.Future[None] | None = None
        self._closed = False

    @property
    def value(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        """Publish ``value`` and wake everyone waiting."""
        self._value = value
        self.version += 1
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def close(self) -> None:
        """No more values: iterators end, waiters get ``EOFError``."""
        self._closed = True
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def changed(self) -> None:
        """Return at the next ``set`` (``EOFError`` once closed)."""
        if self._closed:
            raise EOFError("the watch is closed")
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._changed)  # one waiter's cancellation spares the others
        if self._closed:
            raise EOFError("the watch is closed")

    async def wait_for(self, predicate: Callable[[T], bool], timeout_s: float | None = None) -> T:
        """The first value (the current one included) for which ``predicate`` holds.

        ``TimeoutError`` after ``timeout_s``; ``EOFError`` if the watch closes first.
        """
        async with asyncio.timeout(timeout_s):
            while not predicate(self._value):
                await self.changed()
            return self._value

    async def updates(self) -> AsyncIterator[T]:
        """Every value set from now on, newest first when the consumer fell behind."""
        seen = self.version
        while True:
            if self.version == seen:
                try:
                    await self.changed()
                except EOFError:
                    return
            seen = self.version
            yield self._value
