"""`zima sim run` killed with SIGKILL: its children (Mosquitto, the emulated board) die with
it, and the next start removes the temporary folders it left. The real command in a child
process, its temporary folders under this test's own TMPDIR."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.onboard.test_runtime import constant_policy
from zima.contract import Action
from zima.emulator import find_binary, find_firmware
from zima.mosquitto import find_mosquitto
from zima.sim.run_folder import PREFIX, RunFolder, remove_stale

ZIMA = Path(sys.executable).parent / "zima"


def children(pid: int) -> dict[int, str]:
    """pid -> command name of the live processes whose parent is ``pid``."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        comm = text[text.index("(") + 1:text.rindex(")")]
        state, ppid = text.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found[int(stat.parent.name)] = comm
    return found


def alive(pid: int) -> bool:
    """A process that is neither gone nor a zombie (a dead child not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[0] for p in tmp.iterdir() if p.name.startswith("zima-"))


def sim_run(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TMPDIR": str(tmp), "MUJOCO_GL": "egl"}
    return subprocess.Popen([str(ZIMA), "sim", "run", "--episodes", "1", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> str:
    """Its output up to the line holding ``marker`` (fails on exit or timeout)."""
    assert proc.stdout is not None
    seen, deadline = "", time.monotonic() + timeout_s
    while marker not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            pytest.fail(f"no {marker!r} within {timeout_s} s; output:\n{seen}")
        seen += line
    return seen


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_killed_sim_run_leaves_no_process_and_the_next_start_removes_its_files(
        firmware_elf: Path, emulator_binary: Path, tmp_path: Path) -> None:
    assert (firmware_elf, emulator_binary) == (find_firmware(), find_binary())  # built
    assert find_mosquitto() is not None
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    model = constant_policy(tmp_path / "forward.onnx", Action.FORWARD)
    with sim_run(tmp, "--model", str(model), "--out", str(tmp_path / "out"),
                 "--time-limit", "60") as run:
        try:
            read_until(run, "running 1 episodes", timeout_s=90)
            kids = children(run.pid)
            assert sorted(kids.values()) == ["mosquitto", "zima-emu"]
            assert leftovers(tmp) == ["zima-emu", "zima-sim"]
        finally:
            run.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5.0  # Mosquitto at once (the kernel), the emulator on EOF
    while (living := [kids[p] for p in kids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert living == []
    assert leftovers(tmp) == ["zima-emu", "zima-sim"]  # nothing could clean up: SIGKILL

    with sim_run(tmp, "--model", str(tmp_path / "none.onnx")) as again:  # starts, fails
        output, _ = again.communicate(timeout=60)
    assert again.returncode == 1, output
    assert "removed what an earlier run left behind" in output
    assert "no policy model" in output
    assert leftovers(tmp) == []


def test_only_folders_of_dead_owners_are_removed(tmp_path: Path) -> None:
    ours = RunFolder.create(tmp_path)
    adopted = tmp_path / "zima-emu-x"
    adopted.mkdir()
    ours.adopt(adopted)
    assert remove_stale(tmp_path) == []  # our own: alive
    dead = tmp_path / f"{PREFIX}dead"
    dead.mkdir()
    (dead / "owner").write_text(f"{os.getpid()} 1\n")  # our pid, another start time: reused
    (dead / "adopted").write_text(f"{adopted}\n/etc\n{tmp_path / 'not-zima'}\n")
    (tmp_path / "not-zima").mkdir()
    half = tmp_path / f"{PREFIX}half"  # killed before it wrote its owner
    half.mkdir()
    assert sorted(remove_stale(tmp_path)) == sorted([adopted, dead, half])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["not-zima", ours.path.name])
    ours.close()
    assert [p.name for p in tmp_path.iterdir()] == ["not-zima"]
