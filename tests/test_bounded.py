"""zima.bounded: any bytes give a value or an InputError, never another exception."""

import json
import tomllib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zima.bounded import InputError, parse_json_bounded, parse_toml_bounded, printable_id

JSON_SCALARS = (st.none() | st.booleans() | st.integers(-(10**30), 10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=30)


def assert_reason(exc: InputError) -> None:
    """A refusal says why, in one bounded line."""
    assert 0 < len(str(exc)) < 400


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(JSON_VALUES, st.integers(0, 6))
def test_json_within_the_bounds_parses_as_json_loads_does_and_deeper_is_refused(
    value: object, max_depth: int
) -> None:
    raw = json.dumps(value).encode()
    if depth(value) <= max_depth:
        assert parse_json_bounded(raw, max_bytes=len(raw), max_depth=max_depth) == value
    else:
        with pytest.raises(InputError, match="nested deeper"):
            parse_json_bounded(raw, max_bytes=len(raw), max_depth=max_depth)


@given(st.binary(max_size=300) | st.integers(0, 20_000).map(lambda n: b"[" * n)
       | JSON_VALUES.map(lambda v: json.dumps(v).encode()).flatmap(
           lambda raw: st.integers(0, len(raw)).map(lambda i: raw[:i] + b"{[\"\\" + raw[i:])))
@example(b"[" * 3000)
@example(b'{"a": NaN}')
@example(b"[1e999]")
@example(b"-Infinity")
@example(b'{"a": 1, "a": 2}')
@example(b'"\xff"')
@example(b'"' + b'\\"' * 5000)
@example(b"1" * 5000)
def test_any_bytes_give_json_or_a_refusal(raw: bytes) -> None:
    try:
        parse_json_bounded(raw, max_bytes=16_384, max_depth=8)
    except InputError as exc:
        assert_reason(exc)


@pytest.mark.parametrize(("raw", "reason"), [
    (b"x" * 10_001, "JSON of 10001 bytes is over the limit of 10000"),
    (b"[" * 3000, "nested deeper than 8"),
    (b"\xff{}", "not UTF-8"),
    (b'{"v": NaN}', "NaN"),
    (b"[1e999]", "out of range"),
    (b'{"a": 1, "a": 2}', "key 'a' twice"),
    (b"{oops", "not JSON"),
])
def test_each_refusal_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        parse_json_bounded(raw, max_bytes=10_000, max_depth=8)


TOML_TEXT = st.text(alphabet=st.sampled_from(list('ab =.[]{}"\'#\n,1\\')), max_size=80)


@given(st.binary(max_size=300) | TOML_TEXT.map(str.encode)
       | st.integers(0, 20_000).map(lambda n: b"a = " + b"[" * n)
       | st.integers(0, 5_000).map(lambda n: b"a = " + b"{b=" * n)
       | st.integers(0, 3_000).map(lambda n: ".".join(["k"] * n).encode() + b" = 1"))
@example(b"x = " + b"9" * 5000)
@example(b'x = """[[[[[[[[[[[""""\ny = [1]')
def test_any_bytes_give_toml_or_a_refusal(raw: bytes) -> None:
    try:
        table = parse_toml_bounded(raw, max_bytes=65_536, max_depth=8)
    except InputError as exc:
        assert_reason(exc)
    else:
        assert table == tomllib.loads(raw.decode())


def test_brackets_in_toml_strings_and_comments_do_not_count() -> None:
    raw = b'a = "[[[[[[[[[[[[" # {{{{{{{{{{{\nb = \'\'\'[[[[[[[[[[\'\'\'\n[[cameras]]\nc = [[1]]\n'
    assert parse_toml_bounded(raw, max_bytes=1000, max_depth=4)["b"] == "[" * 10
    with pytest.raises(InputError, match="nested deeper than 3"):  # cameras [ { c [ [
        parse_toml_bounded(raw, max_bytes=1000, max_depth=3)
    assert parse_toml_bounded(b"a.b.c.d = 1", max_bytes=1000, max_depth=3)
    with pytest.raises(InputError, match="nested deeper than 3"):
        parse_toml_bounded(b"[a.b]\nc.d.e = 1", max_bytes=1000, max_depth=3)


@pytest.mark.parametrize(("value", "ok"), [
    ("r-1", True), ("x" * 64, True), ("x" * 65, False), ("", False), ("a\nb", False),
    ("\x1b[31m", False), ("\ud800", False), (7, False), (None, False), ("zürich 7", True)])
def test_printable_id(value: object, ok: bool) -> None:
    assert printable_id(value) == (value if ok else None)
