"""The operator's web console, served by the onboard runtime (see :mod:`.server`)."""

from zima.onboard.web.server import WebConfig, WebConsole, WebConsoleError, read_token

__all__ = ["WebConfig", "WebConsole", "WebConsoleError", "read_token"]
