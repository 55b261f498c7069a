"""A run's temporary folder and child processes, neither of which may outlive the run.

`zima sim run` starts Mosquitto and the emulated board as child processes and keeps their
files in temporary folders. Killed with SIGKILL it runs no clean-up of its own, so:

- each child it starts asks the kernel to kill it when its parent dies
  (:func:`die_with_parent`, a ``Popen`` ``preexec_fn``: Linux ``PR_SET_PDEATHSIG``; the
  emulator also quits on its stdin's end of file);
- the run's files live in one :class:`RunFolder`, ``<tmp>/zima-sim-<random>/``, whose
  ``owner`` file names the process that made it (pid and start time, so a reused pid is
  no owner). Folders a child made for itself (the emulator's) are recorded in it
  (:meth:`RunFolder.adopt`). The next run's :meth:`RunFolder.create` removes every run
  folder whose owner is gone, with the folders recorded in it (:func:`remove_stale`).

Only folders of this user whose names start with ``zima-`` are ever removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = ["PREFIX", "RunFolder", "die_with_parent", "remove_stale"]

PREFIX: Final = "zima-sim-"
OWNER: Final = "owner"  # "<pid> <start time>" of the process that made the folder
ADOPTED: Final = "adopted"  # folders removed with this one, one path a line
_PR_SET_PDEATHSIG: Final = 1  # linux/prctl.h


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the parent dies (None
    where the system has no such rule). The rule follows the thread that starts the
    child: start children from a thread that lives as long as the run (the event loop's)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def preexec() -> None:  # in the child, between fork and exec
        if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(127)  # no rule, or the parent died before it was set: do not start

    return preexec


def _identity(pid: int) -> str | None:
    """The process's start time (clock ticks since boot; "" where there is no /proc),
    None when no live process has ``pid`` (a zombie is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return ""
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
    return None if fields[0] in ("Z", "X") else fields[19]  # field 22: starttime


def _removable(path: Path) -> bool:
    """A folder of ours named zima-*, not a link (never follow a planted one)."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return (path.name.startswith("zima-") and not path.is_symlink() and path.is_dir()
            and st.st_uid == os.getuid())


def _owner_alive(folder: Path) -> bool:
    try:
        pid_text, _, ident = (folder / OWNER).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return False  # no owner written (killed while creating): a leftover too
    now = _identity(pid)
    return now is not None and (now == ident or "" in (now, ident))


def remove_stale(parent: Path | None = None) -> list[Path]:
    """Remove the run folders in ``parent`` (the system's temp folder) whose owner process
    is gone, and the folders recorded in them; the paths removed."""
    parent = Path(parent or tempfile.gettempdir())
    removed: list[Path] = []
    for folder in sorted(parent.glob(f"{PREFIX}*")):
        if not _removable(folder) or _owner_alive(folder):
            continue
        with contextlib.suppress(OSError):
            for line in (folder / ADOPTED).read_text().splitlines():
                adopted = Path(line)
                if _removable(adopted):
                    shutil.rmtree(adopted, ignore_errors=True)
                    removed.append(adopted)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class RunFolder:
    """One run's temporary folder (see the module docstring); ``close()`` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.removed_stale: list[Path] = []  # leftovers of earlier runs removed on create

    @classmethod
    def create(cls, parent: Path | None = None) -> RunFolder:
        """Remove stale run folders, then make this run's, owned by this process."""
        removed = remove_stale(parent)
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        (path / OWNER).write_text(f"{os.getpid()} {_identity(os.getpid()) or ''}\n")
        folder = cls(path)
        folder.removed_stale = removed
        return folder

    def adopt(self, path: Path) -> None:
        """Record ``path`` (a ``zima-*`` folder a child made) to be removed with this one."""
        with (self.path / ADOPTED).open("a") as f:
            f.write(f"{path.resolve()}\n")

    def close(self) -> None:
        """Remove the folder and the folders it adopted that still exist."""
        with contextlib.suppress(OSError):
            for line in (self.path / ADOPTED).read_text().splitlines():
                if _removable(Path(line)):
                    shutil.rmtree(line, ignore_errors=True)
        shutil.rmtree(self.path, ignore_errors=True)
