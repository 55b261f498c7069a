"""A flood of wrong console logins, from its own process (so it shares no event loop or
GIL with the runtime it hits)::

    python -m tests.onboard.login_flood URL COUNT CONCURRENCY [LOCAL_ADDRESS]

prints one JSON line: how many answers had each HTTP status ("closed": the connection
was closed unanswered), and how long it took.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time

import aiohttp


async def flood(url: str, count: int, concurrency: int,
                local_address: str | None = None) -> dict[str, object]:
    statuses: collections.Counter[str] = collections.Counter()
    left = iter(range(count))
    connector = aiohttp.TCPConnector(
        limit=concurrency, local_addr=None if local_address is None else (local_address, 0))

    async def worker(http: aiohttp.ClientSession) -> None:
        for i in left:
            try:
                async with http.post(f"{url}/login", data={"token": f"wrong-{i}"},
                                     allow_redirects=False) as response:
                    await response.read()
                    statuses[str(response.status)] += 1
            except aiohttp.ClientConnectionError:
                statuses["closed"] += 1

    start = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    return {"statuses": dict(sorted(statuses.items())),
            "seconds": round(time.monotonic() - start, 3)}


if __name__ == "__main__":
    url, count, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    local = sys.argv[4] if len(sys.argv) > 4 else None
    print(json.dumps(asyncio.run(flood(url, count, concurrency, local))))  # noqa: T201
