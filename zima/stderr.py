"""What a command-line front end says on stderr, flushed at once: a progress line shows
while the long step after it runs, and a refusal stands before the exit."""

from __future__ import annotations

import sys

__all__ = ["fail", "say"]

EXIT_REFUSED = 2  # the command line or its input was refused (argparse's status too)


def say(text: str) -> None:
    """Write ``text`` to stderr now; no newline added (a progress line redraws with ``\\r``)."""
    sys.stderr.write(text)
    sys.stderr.flush()


def fail(tool: str, message: str) -> int:
    """Say ``<tool>: <message>``; the exit status of a refused command (2)."""
    say(f"{tool}: {message}\n")
    return EXIT_REFUSED
