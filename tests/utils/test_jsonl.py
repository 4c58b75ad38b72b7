"""The jsonl reader fails with one `file:line` line; the atomic writer leaves no partial file."""

import os

import pytest

from realm_jax.errors import JsonlError
from realm_jax.utils.jsonl import atomic_write, read_jsonl, write_jsonl


def _write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def _one_line_error(path: str, line: int, fields=("question",)) -> str:
    with pytest.raises(JsonlError) as info:
        read_jsonl(path, fields)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: ")
    assert isinstance(info.value, ValueError)
    return message


def test_reads_records_and_skips_blank_lines(tmp_path):
    text = '{"question": "a", "answer": ["x"]}\n\n{"question": "b"}\n'
    path = _write(tmp_path / "ok.jsonl", text)
    assert read_jsonl(path, ["question"]) == [{"question": "a", "answer": ["x"]}, {"question": "b"}]


def test_malformed_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", '{"question": "a"}\n{"question": "b",\n')
    assert "malformed JSON" in _one_line_error(path, 2)


def test_not_an_object(tmp_path):
    path = _write(tmp_path / "list.jsonl", '{"question": "a"}\n["question"]\n')
    assert "expected a JSON object" in _one_line_error(path, 2)


def test_missing_field(tmp_path):
    path = _write(tmp_path / "missing.jsonl", '{"question": "a"}\n\n{"answer": ["x"]}\n')
    assert "missing field 'question'" in _one_line_error(path, 3)


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path, content):
    path = _write(tmp_path / "empty.jsonl", content)
    assert "empty file" in _one_line_error(path, 1)


def test_invalid_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "a"}\n{"question": "caf\xe9"}\n')
    assert "not UTF-8" in _one_line_error(str(path), 2)


def test_write_jsonl_round_trip(tmp_path):
    path = tmp_path / "out.jsonl"
    records = [{"question": "Röntgen?", "answer": ["x"]}, {"question": "b"}]
    assert write_jsonl(path, records) == 2
    assert read_jsonl(path) == records
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_atomic_writer_leaves_nothing_on_failure(tmp_path):
    def records():
        yield {"question": "a"}
        raise RuntimeError("generator died half way")

    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert os.listdir(tmp_path) == []

    # An existing file keeps its old content when the rewrite fails.
    write_jsonl(path, [{"question": "old"}])
    with pytest.raises(TypeError):
        write_jsonl(path, [{"question": "new"}, {"question": object()}])
    assert read_jsonl(path) == [{"question": "old"}]
    assert os.listdir(tmp_path) == ["out.jsonl"]


def test_atomic_write_binary_and_permissions(tmp_path):
    path = tmp_path / "blob.bin"
    with atomic_write(path, "wb") as f:
        f.write(b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask
