"""Fixtures of the onboard tests: the emulated board (``board``, ``board_config``,
``link_config``) now lives in tests/conftest.py, shared with tests/host; the web console's
browser (``browser``, ``page``) is here, its helpers in tests/onboard/browser.py, and
``robot_config``: the runtime's test configuration on a started emulated board.

The builds are fixtures of tests/conftest.py (the same make fragments as CI). The board's
UART is symlinked at ``tmp_path/zima-mcu``, as udev links /dev/zima-mcu on the robot.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains

from zima.emulator import EmulatedBoard
from zima.onboard.config import RuntimeConfig
from zima.onboard.link_config import LinkConfig

from .browser import new_browser
from .test_runtime import runtime_config


@pytest.fixture
def robot_config(board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path) -> RuntimeConfig:
    """``runtime_config`` (tests/onboard/test_runtime.py) with ``board`` started."""
    return runtime_config(tmp_path, link_config)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One Chromium for a test module (starting one takes seconds)."""
    with new_browser() as driver:  # quits on leaving
        yield driver


@pytest.fixture
def page(browser: WebDriver) -> WebDriver:
    """The module's browser on a blank page: signed out, no keys held, no requests logged."""
    browser.get("about:blank")
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every port's
    ActionChains(browser).reset_actions()
    browser.get_log("performance")  # type: ignore[no-untyped-call]  # drop earlier requests
    return browser
