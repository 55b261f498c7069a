"""The web console's test browser and console, shared by its end-to-end tests.

Headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium)
against a ``WebConsole`` on a free loopback port. Selenium is synchronous: its calls run in
a thread (``browse``) so the runtime's loop keeps ticking. The fixtures (``browser``,
``page``) are tests/onboard/conftest.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from zima.onboard.runtime import Runtime
from zima.onboard.safety import DriveMode
from zima.onboard.web import WebConfig, WebConsole

T = TypeVar("T")
TOKEN = "correct-horse-battery-staple"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 20.0  # hang guard of the browser-side waits (a cold Chromium on a loaded CI box is slow)


def new_browser() -> WebDriver:
    """Headless Chromium whose timers run on in the background (the page's drive and
    heartbeat intervals), that logs every request (DevTools' performance log) and takes a
    test's self-signed certificate."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    options.set_capability("acceptInsecureCerts", value=True)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


async def browse(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


async def until(predicate: Callable[[], bool], guard_s: float = WAIT_S) -> None:
    async with asyncio.timeout(guard_s):
        while not predicate():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def console(runtime: Runtime, *, clock: Callable[[], float] | None = None,
                  **changes: Any) -> AsyncIterator[tuple[str, WebConsole]]:
    """The console on a free loopback port around ``runtime`` (``changes`` to its
    ``WebConfig``, ``clock`` in place of the wall clock); yields its URL and itself once
    Safety has seen the link (driving modes are allowed)."""
    config = WebConfig(enabled=True, host="127.0.0.1", port=0, **changes)
    extra = {} if clock is None else {"clock": clock}
    async with WebConsole(runtime, config, TOKEN, **extra) as web:
        await until(runtime.alive)
        try:
            yield f"{'https' if config.tls else 'http'}://127.0.0.1:{web.port}", web
        except Exception as exc:  # say what the robot was doing when a check failed
            exc.add_note(f"last decision: {runtime.last_decision}")
            raise


def type_token(driver: WebDriver, url: str, token: str) -> None:
    """Through the login form, as an operator does."""
    driver.get(url + "/")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "signin").click()


def sign_in(driver: WebDriver, url: str) -> None:
    """With the right token; then wait for the first status."""
    type_token(driver, url, TOKEN)
    wait_text(driver, "mode", lambda text: text in {m.value for m in DriveMode})


def text_of(driver: WebDriver, element_id: str) -> str | None:
    """The element's rendered text, None when the page has no such element. Read in one
    script, not through an element handle: a handle found just before the page is replaced
    (a form submission loads a new document) goes stale before its text is read."""
    text = driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : null;",
        element_id)
    return None if text is None else str(text).strip()


def wait_text(driver: WebDriver, element_id: str, predicate: Callable[[str], bool]) -> str:
    """The element's text once ``predicate`` holds for it."""
    found: list[str] = []

    def check(d: WebDriver) -> bool:
        text = text_of(d, element_id)
        found[:] = [text or ""]
        return text is not None and predicate(text)

    WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,)).until(
        check, f"#{element_id} text: {found}")
    return found[0]


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the page asked for (documents, scripts, images, sockets, fetches) since
    the last call."""
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[no-untyped-call]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.append(message["params"]["url"])
    return urls
