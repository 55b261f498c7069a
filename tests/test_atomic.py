"""write_atomic: the final name holds a whole file or nothing."""

from pathlib import Path
from typing import BinaryIO

import pytest

from zima import atomic
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


def test_the_folder_is_fsynced_after_the_rename_and_a_failure_there_only_logs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    synced: list[Path] = []

    def fsync_file(path: Path) -> None:
        synced.append(path)
        if path.is_dir():
            raise OSError(22, "Invalid argument")  # a file system that cannot fsync a folder

    monkeypatch.setattr(atomic, "fsync_file", fsync_file)
    path = write_atomic(tmp_path / "f.bin", lambda f: f.write(b"zima"))
    assert synced == [tmp_path]
    assert path.read_bytes() == b"zima"
    assert "could not fsync the folder" in caplog.text
    assert not atomic.fsync_directory(tmp_path)
