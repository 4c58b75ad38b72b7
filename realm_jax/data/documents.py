"""Corpus documents as ``(title, text)`` pairs: jsonl ``{title, text}`` or ORQA's TFRecord blocks.

ORQA/REALM ship their Wikipedia blocks as ``blocks.tfr`` and ``titles.tfr``: TFRecord files whose
records are raw UTF-8 strings, one block (and its title) per record, 13,353,718 of each. They are
streamed with ``tf.data`` when TensorFlow imports, otherwise by a small Python reader of the
TFRecord framing (which does not verify the CRCs).
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from collections.abc import Iterator

from realm_jax.errors import CorpusError, JsonlError
from realm_jax.utils.jsonl import iter_jsonl
from realm_jax.utils.paths import missing_file_reason


def iter_jsonl_documents(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(title, text)`` of each line of a jsonl corpus; JsonlError (``file:line: why``) if bad."""
    for line_no, record in iter_jsonl(path, ("title", "text")):
        for field in ("title", "text"):
            if not isinstance(record[field], str):
                raise JsonlError(path, line_no, f"field {field!r} must be a string")
        yield record["title"], record["text"]


def _iter_tfrecords_python(path: str) -> Iterator[bytes]:
    # TFRecord framing: uint64 length, uint32 masked CRC, data, uint32 CRC (CRCs not checked here).
    with open(path, "rb") as f:
        while header := f.read(12):
            if len(header) < 12:
                raise CorpusError(f"{path}: truncated TFRecord header")
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                raise CorpusError(f"{path}: truncated TFRecord")
            yield data


def iter_tfrecord_strings(path: str | os.PathLike) -> Iterator[bytes]:
    """Raw records of a TFRecord file: streamed by tf.data if TensorFlow imports, else in Python."""
    path = os.fspath(path)
    if reason := missing_file_reason(path):
        raise CorpusError(f"{path}: {reason}")
    try:
        import tensorflow as tf
    except ImportError:
        yield from _iter_tfrecords_python(path)
        return
    dataset = tf.data.TFRecordDataset(path, buffer_size=16 * 1024 * 1024)
    try:
        yield from dataset.as_numpy_iterator()
    except tf.errors.DataLossError as e:
        # TF's message: "{{function_node ...}} corrupted record at 0 [Op:IteratorGetNext] name:"
        reason = re.sub(r"\{\{.*?\}\}|\[Op:\w+\].*$", "", e.message.splitlines()[0]).strip()
        raise CorpusError(f"{path}: corrupt TFRecord ({reason})") from None


def iter_tfrecord_documents(blocks_path: str, titles_path: str) -> Iterator[tuple[str, str]]:
    """``(title, block_text)`` pairs of ORQA's ``titles.tfr`` and ``blocks.tfr``, in order."""
    pairs = itertools.zip_longest(
        iter_tfrecord_strings(titles_path), iter_tfrecord_strings(blocks_path)
    )
    for record, (title, block) in enumerate(pairs, start=1):
        if title is None or block is None:
            shorter = titles_path if title is None else blocks_path
            raise CorpusError(f"{shorter}: ends at record {record - 1}; the other file goes on")
        try:
            yield title.decode("utf-8"), block.decode("utf-8")
        except UnicodeDecodeError:
            raise CorpusError(f"{blocks_path}:{record}: record or its title is not UTF-8") from None


def count_lines(path: str | os.PathLike) -> int:
    """Newlines in a file (a progress bar's total for a jsonl corpus), read in 16 MiB chunks."""
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
