"""JSON-lines files: a strict reader with one-line `file:line` errors and an atomic writer."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from realm_jax.errors import JsonlError
from realm_jax.utils.writes import naming

# Read once at import (reading the umask means setting it, which is not thread-safe).
_UMASK = os.umask(0)
os.umask(_UMASK)
# A \uXXXX escape of a UTF-16 surrogate: only such a line can decode to a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def iter_jsonl(
    path: str | os.PathLike, required_fields: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(line_number, record)`` for each non-blank line, raising JsonlError on bad input.

    Every line must be one JSON object holding ``required_fields``; blank lines are skipped
    (a trailing newline is common), and a file without any object is an error.
    """
    seen = 0
    # Binary read so that a bad byte becomes a JsonlError with its line, not a UnicodeDecodeError.
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise JsonlError(path, line_no, f"not UTF-8 ({e.reason})") from None
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                raise JsonlError(path, line_no, f"malformed JSON ({e.msg})") from None
            except (ValueError, RecursionError) as e:  # an int of > 4300 digits, nesting too deep
                raise JsonlError(path, line_no, f"unreadable JSON ({e})") from None
            if not isinstance(record, dict):
                kind = type(record).__name__
                raise JsonlError(path, line_no, f"expected a JSON object, got {kind}")
            if _SURROGATE_ESCAPE.search(text):  # a lone one cannot be encoded or written back
                try:
                    json.dumps(record, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError:
                    raise JsonlError(path, line_no, "lone UTF-16 surrogate escape") from None
            missing = [name for name in required_fields if name not in record]
            if missing:
                names = ", ".join(repr(m) for m in missing)
                raise JsonlError(path, line_no, f"missing field {names}")
            seen += 1
            yield line_no, record
    if not seen:
        raise JsonlError(path, 1, "empty file; expected one JSON object per line")


def read_jsonl(path: str | os.PathLike, required_fields: Sequence[str] = ()) -> list[dict]:
    """All records of a jsonl file; see ``iter_jsonl`` for what counts as an error."""
    return [record for _, record in iter_jsonl(path, required_fields)]


def read_json(path: str | os.PathLike) -> Any:
    """One JSON document (a run's ``config.json``, a ``meta.json``); one that does not parse is a
    ``JsonlError`` naming the file and line, not the decoder's message alone."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JsonlError(path, e.lineno, f"malformed JSON ({e.msg})") from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Opens a temporary file beside ``path`` that replaces ``path`` only if the block succeeds.

    The temporary file lives in the same directory so ``os.replace`` is an atomic rename; it is
    fsynced first so a crash never leaves a half-written ``path``, and removed on any error (a
    failed write or fsync, e.g. on a full disk, is an OSError naming ``path``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    prefix = f".{os.path.basename(path)}."
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        # mkstemp makes the file 0600; give the result the permissions a plain open() would.
        os.fchmod(fd, 0o666 & ~_UMASK)
        encoding = None if "b" in mode else "utf-8"
        with naming(path), os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise
    fsync_directory(directory)


def fsync_directory(directory: str) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows opening a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> int:
    """Writes one JSON object per line atomically and returns the number of records written."""
    count = 0
    with atomic_write(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
