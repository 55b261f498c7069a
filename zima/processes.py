"""Ending a child process: politely (SIGTERM), then firmly (SIGKILL)."""

from __future__ import annotations

import subprocess

__all__ = ["terminate"]


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM ``process`` if it still runs, SIGKILL it after ``timeout_s``; its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
