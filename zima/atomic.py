"""Durable files: a crash or a full disk never leaves a half file under the final name, and
a power loss never takes back a file once it was published.

One rule everywhere a file is published: write it under a temporary name, fsync it, rename
it into place, then fsync its folder (the rename is an entry of the folder: without that
fsync a power loss can undo it). :func:`write_atomic` does all four; writers that publish
files of their own (the episode writer) call :func:`fsync_file` and
:func:`fsync_directory`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["fsync_directory", "fsync_file", "write_atomic"]

log = logging.getLogger(__name__)


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to the disk (``OSError`` if that fails)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(directory: Path) -> bool:
    """Make the renames into ``directory`` survive a power loss. A failure (a file system
    that cannot fsync a folder) is logged and costs only that: the files are in place.
    True when it worked."""
    try:
        fsync_file(directory)
    except OSError as exc:
        log.warning("could not fsync the folder %s: %s", directory, exc)
        return False
    return True


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` on a temporary file beside ``path``, fsync it, rename it into place,
    fsync the folder.

    The folder is created when missing; the file ends up with ordinary 0644 permissions.
    On any error the temporary file is removed and the error propagates.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o644)  # mkstemp makes it 0600; the final file is an ordinary one
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    return path
