"""Properties of the jsonl reader and writer (hypothesis): any bytes give records or one
``file:line`` JsonlError, a bad line is reported at its own line, and JSON objects round-trip.

Examples a property: the hypothesis profile (conftest: 200 in CI, 100 otherwise).
"""

import json
import os

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from realm_jax.errors import USER_ERRORS, JsonlError
from realm_jax.utils.jsonl import iter_jsonl, read_jsonl, write_jsonl
from tests import strategies

json_values = strategies.json_values(12, 4, 12)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
# Objects holding the field every line of a file must have, so only the bad line is bad.
with_question = st.builds(lambda o, q: {**o, "question": q}, objects, json_values)


class Line(bytes):
    """A long line that reports itself in a few words."""

    def __repr__(self) -> str:
        return f"Line({len(self)} bytes: {bytes(self[:24])!r}...)"


def _huge_number(digits: int) -> bytes:
    return Line(b'{"question": 1, "n": ' + b"7" * digits + b"}")


def _deep(depth: int) -> bytes:
    return Line(b'{"question": ' + b"[" * depth + b"]" * depth + b"}")


no_newline = st.binary(max_size=12).map(lambda b: b.replace(b"\n", b""))
# Lines that no reader may accept: each yields JsonlError at its own line number.
bad_lines = st.one_of(
    # not UTF-8: 0xff never occurs in UTF-8; an encoded surrogate is rejected by Python's codec
    st.tuples(no_newline, st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"]), no_newline).map(
        b"".join
    ),
    # escaped lone surrogates decode to strings that cannot be encoded again
    st.sampled_from([b'{"question": "\\ud800"}', b'{"question": "a", "\\uDC00": 1}',
                     b'{"question": ["x\\udbff"]}']),
    st.integers(4301, 6000).map(_huge_number),  # past Python's int digits limit
    st.integers(5_000, 200_000).map(_deep),  # past the decoder's recursion limit
    json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    objects.map(lambda o: json.dumps(o).encode()[:-1]),  # unclosed
    objects.map(lambda o: json.dumps({k: v for k, v in o.items() if k != "question"}).encode()),
    st.sampled_from([b"\x00", b'{"question": "\x00"}', b"{} {}", b"\xef\xbb\xbf{}", b"NaN", b"{"]),
)
good_lines = st.one_of(
    with_question.map(lambda o: json.dumps(o).encode()),
    with_question.map(lambda o: json.dumps(o, ensure_ascii=False).encode()),
)
blank_lines = st.sampled_from([b"", b"  ", b"\t", b"\r", b" \x0c ", "\u2003".encode()])
any_lines = st.one_of(good_lines, bad_lines, blank_lines, no_newline)


def _check_one_line(error: JsonlError, path: str, num_lines: int) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{path}:{error.line}: ") and 1 <= error.line <= max(num_lines, 1)
    assert isinstance(error, USER_ERRORS)


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("jsonl") / "lines.jsonl")


def _write(path: str, lines: list[bytes], trailing: bool) -> None:
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + (b"\n" if trailing else b""))


@given(lines=st.lists(any_lines, max_size=6), trailing=st.booleans())
@example(lines=[_huge_number(5000)], trailing=True)
@example(lines=[_deep(100_000)], trailing=False)
@example(lines=[b'{"question": "\\ud800"}'], trailing=True)
def test_any_bytes_give_records_or_one_line_error(path, lines, trailing):
    _write(path, lines, trailing)
    num_lines = len(b"\n".join(lines).split(b"\n"))
    try:
        records = list(iter_jsonl(path, ("question",)))
    except JsonlError as e:
        _check_one_line(e, path, num_lines)
        return
    assert records, "a file without records must be an error"
    for line_no, record in records:
        assert 1 <= line_no <= num_lines and isinstance(record, dict) and "question" in record
        # what was read can be written back (no lone surrogates, no unencodable strings)
        json.dumps(record, ensure_ascii=False).encode("utf-8")


@given(
    before=st.lists(st.one_of(good_lines, blank_lines), max_size=4),
    bad=bad_lines,
    after=st.lists(any_lines, max_size=3),
)
@example(before=[b'{"question": 1}'], bad=_huge_number(4301), after=[])
@example(before=[], bad=_deep(50_000), after=[b'{"question": 2}'])
@example(before=[b""], bad=b'{"question": "\\ud800"}', after=[])
def test_a_bad_line_is_reported_at_its_line(path, before, bad, after):
    _write(path, [*before, bad, *after], trailing=True)
    good = [json.loads(line) for line in before if line.decode().strip()]
    seen = []
    with pytest.raises(JsonlError) as info:
        for _, record in iter_jsonl(path, ("question",)):
            seen.append(record)
    assert info.value.line == len(before) + 1, str(info.value)
    _check_one_line(info.value, path, len(before) + 1 + len(after))
    assert seen == good  # the records before the bad line came first


@given(
    records=st.lists(objects, min_size=1, max_size=5),
    blanks=st.lists(blank_lines, max_size=5),
    ascii_only=st.booleans(),
)
def test_object_lines_round_trip(path, records, blanks, ascii_only):
    lines = [json.dumps(r, ensure_ascii=ascii_only).encode() for r in records]
    for i, blank in enumerate(blanks):  # blank lines anywhere are skipped
        lines.insert(i * 2 % (len(lines) + 1), blank)
    _write(path, lines, trailing=bool(len(blanks) % 2))
    assert read_jsonl(path) == records


@given(records=st.lists(objects, min_size=1, max_size=5))
def test_write_then_read_is_identity(tmp_path_factory, records):
    out = os.path.join(tmp_path_factory.getbasetemp(), "written.jsonl")
    assert write_jsonl(out, records) == len(records)
    assert read_jsonl(out) == records
    with open(out, "rb") as f:
        assert f.read().count(b"\n") == len(records)  # one line a record
