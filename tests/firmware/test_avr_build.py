"""The AVR build path: Debian's avr-gcc and Arduino core, flags from build_flags.txt."""

from pathlib import Path

from .conftest import AVR_BUILD, avr_dry_run, avr_flags, git_build_id


def test_elf_and_hex_within_limits(firmware_elf: Path) -> None:
    header = firmware_elf.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == 83  # EM_AVR
    assert (AVR_BUILD / "zima.hex").read_text().startswith(":")
    size = dict(ln.split() for ln in (AVR_BUILD / "size.txt").read_text().splitlines())
    assert int(size["flash_max"]) == 64 * 1024
    assert int(size["ram_max"]) == 4 * 1024
    assert 0 < int(size["flash_bytes"]) <= int(size["flash_max"])
    assert 0 < int(size["ram_bytes"]) <= int(size["ram_max"])


def test_every_flag_of_the_list_reaches_the_compiler(firmware_elf: Path) -> None:
    dry = avr_dry_run()
    ours = [ln for ln in dry if ln.startswith("avr-g++") and "/firmware/src/" in ln]
    core = [ln for ln in dry if ln.startswith("avr-g") and "/cores/arduino/" in ln]
    link = [ln for ln in dry if ln.startswith("avr-gcc") and " -o " in ln and ".elf" in ln]
    assert ours
    assert core
    assert len(link) == 1
    for line in ours:
        words = line.split()
        for group in ("board", "common", "cxx", "warnings"):
            for flag in avr_flags(group):
                assert flag in words, f"{flag} ({group}) missing from: {line}"
    for line in core:
        assert "-Werror" not in line.split(), "the Arduino core is not warning-clean"
        for flag in avr_flags("board") + avr_flags("common"):
            assert flag in line.split()
    for flag in avr_flags("link"):
        assert flag in link[0].split()


def test_build_id_is_the_git_head(firmware_elf: Path) -> None:
    build_id = git_build_id()
    expected = f"{build_id:08x}" if build_id else "0"
    dry = avr_dry_run()
    ours = [ln for ln in dry if ln.startswith("avr-g++") and "/firmware/src/" in ln]
    assert ours
    for line in ours:
        assert f"-DZIMA_BUILD_ID=0x{expected}" in line.split()
    assert (AVR_BUILD / f"build_id_{expected}").exists()
