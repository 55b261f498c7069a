"""Signing in to the web console from a program (tests, scripts), as its login form does.

The token goes in the body of ``POST /login``, never in a URL; the session cookie comes
back and the session's cookie jar sends it with every later request::

    async with console_session(url, token) as http:           # url: "http://127.0.0.1:8080"
        async with http.ws_connect(url + "/ws") as ws: ...
        async with http.get(url + "/camera/forward") as stream: ...

``ssl``: an ``ssl.SSLContext`` trusting the console's certificate (or ``False`` to skip
the check, for a test's self-signed one).
"""

from __future__ import annotations

import contextlib
import ssl as ssl_module
from collections.abc import AsyncIterator

import aiohttp

__all__ = ["SignInError", "console_session", "sign_in"]


class SignInError(Exception):
    """The console refused the sign-in; ``status`` is its HTTP status (403, 429...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def sign_in(http: aiohttp.ClientSession, url: str, token: str) -> None:
    """Sign ``http`` in to the console at ``url``; ``SignInError`` if refused."""
    async with http.post(url.rstrip("/") + "/login", data={"token": token},
                         allow_redirects=False) as response:
        if response.status != 303:
            raise SignInError(response.status,
                              f"console sign-in refused: HTTP {response.status}")


@contextlib.asynccontextmanager
async def console_session(
    url: str, token: str, *, ssl: ssl_module.SSLContext | bool = True
) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session signed in to the console at ``url``."""
    # unsafe=True: keep cookies of an IP address (the robot is often reached by one).
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar,
                                     connector=aiohttp.TCPConnector(ssl=ssl)) as http:
        await sign_in(http, url, token)
        yield http
