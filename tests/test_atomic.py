"""write_atomic: the final name holds a whole file or nothing."""

from pathlib import Path
from typing import BinaryIO

import pytest

from zima.atomic import write_atomic


def test_writes_the_file_with_ordinary_permissions(tmp_path: Path) -> None:
    path = write_atomic(tmp_path / "new" / "f.bin", lambda f: f.write(b"zima"))
    assert path.read_bytes() == b"zima"
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def fail(f: BinaryIO) -> None:
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
