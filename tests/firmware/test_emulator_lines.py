"""zima-emu's control lines (cJSON): any line in, one JSON answer out, the emulator goes on.

Raw lines on the emulator's stdin, as a hostile or careless program could write them (the
``EmulatedBoard`` handle only ever writes well-formed ones).
"""

import json
import queue
import subprocess
import threading
from pathlib import Path

from zima.emulator import EmulatorConfig

GUARD_S = 10.0  # hang guard of every answer


def test_bad_lines_are_answered_and_ids_echoed_whole(
        firmware_elf: Path, emulator_binary: Path, tmp_path: Path) -> None:
    config = EmulatorConfig(firmware=firmware_elf, binary=emulator_binary, state_hz=0)
    proc = subprocess.Popen(config.argv(tmp_path / "pty"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, bufsize=1)
    assert proc.stdin is not None
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def answer() -> dict[str, object]:
        """The next JSON line (simavr's loader prints two lines of its own first)."""
        while not (line := lines.get(timeout=GUARD_S)).startswith("{"):
            pass
        parsed = json.loads(line)
        assert isinstance(parsed, dict)
        return parsed

    def ask(line: str) -> dict[str, object]:
        assert proc.stdin is not None
        proc.stdin.write(line + "\n")
        return answer()

    try:
        assert answer()["event"] == "ready"
        assert ask("not json")["event"] == "error"
        assert ask('{"cmd": "state"} trailing')["event"] == "error"
        assert ask("[1, 2]") == {"event": "error", "message": "expected a JSON object"}
        assert ask('{"id": 3}') == {"event": "error", "id": 3, "message": 'missing "cmd"'}
        quoted = 'a "quoted" \\ id'
        ok = ask(json.dumps({"cmd": "battery", "mv": 11000, "id": quoted}))
        assert ok == {"event": "ok", "id": quoted, "cmd": "battery"}
        refused = ask('{"cmd": "battery", "mv": 1e999, "id": 4}')
        assert refused["id"] == 4
        assert "'mv' must be a number" in str(refused["message"])
        assert ask('{"cmd": "dance", "id": [1]}') == {"event": "error",
                                                       "message": 'unknown cmd "dance"'}
        proc.stdin.write('{"cmd": "wheels", "left_ticks": 5, "right_ticks": -5}\n')  # no id,
        state = ask('{"cmd": "state", "id": 5}')  # so no answer: the next one is the state's
        assert (state["event"], state["id"], state["wheels_external"]) == ("state", 5, True)
        assert state["battery_mv"] == 11000.0
        assert ask('{"cmd": "quit", "id": 6}') == {"event": "ok", "id": 6, "cmd": "quit"}
        assert proc.wait(GUARD_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        reader.join(GUARD_S)
        proc.stdout.close()
