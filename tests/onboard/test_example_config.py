"""The annotated sample config says "the values shown are the defaults unless marked
'example'": every key it shows is held to the code's dataclass defaults, read both from the
sample's text and through the runtime's own loader (a sample that claimed
``temperature = 0.0`` while the runtime sampled at 1.0 misled its readers)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from zima.onboard.config import RuntimeConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "onboard" / "onboard.example.toml"
_HEADER = re.compile(r"^\s*(\[\[?)\s*([\w.]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z_]\w*)\s*=")


@dataclass(frozen=True)
class Line:
    """One ``key = value`` line of the sample."""

    number: int
    section: str  # "" (top level), "policy", "cameras", "mqtt.rates_hz", ...
    index: int  # which [[cameras]] table (0 elsewhere)
    key: str
    example: bool  # its comment says "example": not a default

    def __str__(self) -> str:
        where = f"{self.section}[{self.index}]." if self.section == "cameras" else (
            f"{self.section}." if self.section else "")
        return f"line {self.number}: {where}{self.key}"


def sample_lines(text: str) -> list[Line]:
    lines: list[Line] = []
    section, counts = "", {"cameras": -1}
    for number, raw in enumerate(text.splitlines(), 1):
        code, _, comment = raw.partition("#")  # no value of the sample holds a '#'
        if header := _HEADER.match(code):
            section = header.group(2)
            if header.group(1) == "[[":
                counts[section] = counts.get(section, -1) + 1
        elif key := _KEY.match(code):
            lines.append(Line(number, section, max(counts.get(section, 0), 0), key.group(1),
                              "example" in comment.lower()))
    return lines


def value_in(config: RuntimeConfig, line: Line) -> object:
    """The value ``line`` sets, looked up in ``config`` (as TOML would write it)."""
    if line.section == "":
        value: object = getattr(config, line.key)
    elif line.section == "cameras":
        value = getattr(config.cameras[line.index], line.key)
    elif line.section == "mqtt.rates_hz":
        value = config.mqtt.broker.rates_hz[line.key]
    elif line.section == "mqtt":
        holder = config.mqtt if line.key in ("enabled", "password_file") else config.mqtt.broker
        value = getattr(holder, line.key)
    else:
        value = getattr(getattr(config, line.section), line.key)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def value_of(table: dict[str, object], line: Line) -> object:
    """The value written on ``line`` of the sample, parsed by tomllib."""
    node: object = table
    for part in line.section.split(".") if line.section else []:
        assert isinstance(node, dict)
        node = node[part]
        if isinstance(node, list):
            node = node[line.index]
    assert isinstance(node, dict)
    return node[line.key]


TEXT = EXAMPLE.read_text()
LINES = sample_lines(TEXT)


def test_the_sample_shows_each_part_of_the_config() -> None:
    sections = {line.section for line in LINES}
    assert sections == {"", "link", "cameras", "fusion", "policy", "safety", "mqtt",
                        "mqtt.rates_hz", "recorder", "web", "realtime"}
    assert {line.index for line in LINES if line.section == "cameras"} == {0, 1}
    assert sum(line.example for line in LINES) >= 2  # the password and token files


@pytest.mark.parametrize("line", [line for line in LINES if not line.example], ids=str)
def test_every_value_shown_is_the_code_default(line: Line) -> None:
    shown = value_of(tomllib.loads(TEXT), line)
    default = value_in(RuntimeConfig(), line)
    assert shown == default, f"{EXAMPLE.name} {line} shows {shown!r}; the default is {default!r}"


def test_the_sample_loads_with_the_runtimes_loader_to_the_defaults_and_its_examples() -> None:
    config, table = load_config(EXAMPLE), tomllib.loads(TEXT)
    for line in LINES:
        expected = value_of(table, line) if line.example else value_in(RuntimeConfig(), line)
        assert value_in(config, line) == expected, str(line)
