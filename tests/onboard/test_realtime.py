"""The runtime's real-time settings (zima.onboard.realtime): read from ``[realtime]``,
applied to the process as the runtime starts, undone as it stops, and a setting the
system refuses is a warning, not a failure."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zima.onboard import realtime
from zima.onboard.config import ConfigError, RuntimeConfig, load_config
from zima.onboard.realtime import RealtimeConfig


def test_the_table_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "onboard.toml"
    path.write_text("[realtime]\nswitch_interval_s = 0.001\ngc_freeze = false\n"
                    "fifo_priority = 5\n")
    config = load_config(path)
    assert config.realtime == RealtimeConfig(switch_interval_s=0.001, gc_freeze=False,
                                             fifo_priority=5)
    assert RuntimeConfig().realtime == RealtimeConfig()
    for text, key in (("switch_interval_s = 0.0", "switch_interval_s"),
                      ("fifo_priority = 100", "fifo_priority"),
                      ("gc_freeze = 1", "gc_freeze")):
        path.write_text(f"[realtime]\n{text}\n")
        with pytest.raises(ConfigError, match=key):
            load_config(path)


def test_applied_at_start_and_undone_at_stop() -> None:
    before = sys.getswitchinterval()
    config = RealtimeConfig(switch_interval_s=0.0007, gc_freeze=True)
    try:
        assert realtime.apply(config) == []
        assert sys.getswitchinterval() == pytest.approx(0.0007)
        assert realtime.after_start(config) == []
        assert gc.get_freeze_count() > 1000  # the interpreter's own objects, at least
    finally:
        realtime.restore(before)
    assert sys.getswitchinterval() == pytest.approx(before)
    assert gc.get_freeze_count() == 0


def test_sched_fifo_where_allowed_and_a_warning_where_not(tmp_path: Path) -> None:
    """Where the kernel allows it (root with CAP_SYS_NICE) the loop's thread gets
    SCHED_FIFO; as an unprivileged user (RLIMIT_RTPRIO 0: what the systemd unit's
    LimitRTPRIO lifts) it is refused with the reason, and the rest still applies."""
    script = ("import os, sys\n"
              "from zima.onboard import realtime\n"
              "config = realtime.RealtimeConfig(fifo_priority=10, gc_freeze=False)\n"
              "print(realtime.apply(config), realtime.after_start(config),\n"
              "      os.sched_getscheduler(0) == os.SCHED_FIFO, sys.getswitchinterval())\n"
              "realtime.restore(0.005)\n"
              "print(os.sched_getscheduler(0) == os.SCHED_OTHER)\n")
    as_root = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             check=True, timeout=60)
    if os.geteuid() == 0 and "SCHED_FIFO" not in as_root.stdout:  # a root with CAP_SYS_NICE
        assert as_root.stdout.split() == ["[]", "[]", "True", "0.0005", "True"]
    else:  # a container's root without CAP_SYS_NICE, or a user: refused, said, went on
        assert "SCHED_FIFO priority 10" in as_root.stdout
        assert as_root.stdout.split()[-3:] == ["False", "0.0005", "True"]
    if os.geteuid() != 0:
        return  # the case without the capability needs root to drop it
    # Root without CAP_SYS_NICE (its bounding set dropped): what a service user is
    # without the unit's LimitRTPRIO, and what a container's root is.
    unprivileged = subprocess.run(
        ["setpriv", "--bounding-set=-sys_nice", sys.executable, "-c", script],
        capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path)
    out = unprivileged.stdout
    assert "SCHED_FIFO priority 10" in out
    assert "CAP_SYS_NICE" in out
    assert out.split()[-3:] == ["False", "0.0005", "True"]
    assert "running without it" in unprivileged.stderr


@pytest.mark.parametrize("spin_s", [0.0, 0.001, 0.003])
def test_sleep_until_never_returns_early_and_lets_other_tasks_run(spin_s: float) -> None:
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        other = loop.call_later(0.002, seen.append, "other task")
        for delay_s in (0.0, 0.0004, 0.0013, 0.0102):
            deadline = loop.time() + delay_s
            await realtime.sleep_until(loop, deadline, spin_s)
            assert loop.time() >= deadline
        await realtime.sleep_until(loop, loop.time() - 1.0, spin_s)  # already past: at once
        other.cancel()
        return seen

    assert asyncio.run(scenario()) == ["other task"]  # ran during the 10 ms wait


def test_the_spin_is_bounded() -> None:
    with pytest.raises(ValueError, match="tick_spin_s"):
        RealtimeConfig(tick_spin_s=0.01)
    assert RealtimeConfig().tick_spin_s == 0.001
