"""Released blocks -> block store: ORQA's pre-tokenized ``examples.tfr``, HF's ``block_records``

ORQA/REALM ship their 13,353,718 Wikipedia blocks three ways, one record per block and in the same
order: ``blocks.tfr`` (text), ``titles.tfr`` (title) and ``examples.tfr``, serialized
``tf.train.Example`` protos with int64 lists ``title_ids``, ``token_ids`` (the body's wordpieces)
and ``sentence_starts`` (where each sentence starts in ``token_ids``). The store keeps those ids
and sentences exactly (no sentence splitting, no re-packing), so block ``i`` is record ``i``, as
the released retrieval index expects. Sentence character spans come from re-tokenizing the text:
a block whose wordpieces differ from the record's gets whole-text spans and is counted in
``meta["num_unaligned_blocks"]``.

The Hugging Face REALM port ships only the block texts, as ``block_records.npy`` (a pickled object
array of UTF-8 bytes, no titles, read by ``safe_pickle`` without running the pickle); those go
through ``blocks.build_blocks(prepacked=True)``.

Record numbers in error messages count from 1 (``file:record: why``), as in ``documents``.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Iterator, Sequence

import numpy as np

from realm_jax.data import documents
from realm_jax.data.blocks import DEFAULT_MAX_LEN, StoreWriter, build_blocks, store_meta
from realm_jax.data.packing import Block, block_uid, continuation_table, whole_word_cut
from realm_jax.data.safe_pickle import load_object_npy
from realm_jax.data.tokenization import Tokenizer
from realm_jax.errors import CorpusError
from realm_jax.utils import array_dir
from realm_jax.utils.optional import require
from realm_jax.utils.progress import progress_bar

FEATURES = ("title_ids", "token_ids", "sentence_starts")
_INT32_MAX = np.iinfo(np.int32).max
ExampleIds = tuple[np.ndarray, np.ndarray, np.ndarray]  # title_ids, token_ids, sentence_starts


def _import_tf():
    return require("tensorflow", "tf", "reading ORQA's examples.tfr")


def _parse_batch(serialized):
    """tf.data map: a batch of serialized Examples -> per feature (int64 values, row splits)."""
    import tensorflow as tf  # the caller required it; autograph cannot convert require()

    spec = {name: tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64) for name in FEATURES}
    parsed = tf.io.parse_example(serialized, spec)
    out = {name: (parsed[name].flat_values, parsed[name].row_splits) for name in FEATURES}
    out["num_bytes"] = tf.reduce_sum(tf.cast(tf.strings.length(serialized), tf.int64))
    return out


def _first_record_missing(path: str) -> str | None:
    """A feature the file's first record lacks (the wrong file); None if it has all or is bad."""
    from google.protobuf.message import DecodeError

    tf = _import_tf()

    try:
        for raw in tf.data.TFRecordDataset(path).take(1).as_numpy_iterator():
            present = tf.train.Example.FromString(raw).features.feature
            return next((name for name in FEATURES if name not in present), None)
    except (tf.errors.OpError, DecodeError):
        pass  # reported with its record number by the batched reader
    return None


def _locate_error(path: str, start: int, count: int) -> CorpusError:
    """The error of a failed batch (records ``start + 1 ..``), re-read one record at a time.

    ``skip`` reads the file again up to the batch; this runs only once, on the way to failing.
    """
    tf = _import_tf()

    number = start
    spec = {name: tf.io.RaggedFeature(tf.int64) for name in FEATURES}
    try:
        records = tf.data.TFRecordDataset(path).skip(start).take(count)
        for raw in records:
            number += 1
            tf.io.parse_example(raw[None], spec)
    except tf.errors.DataLossError:
        return CorpusError(f"{path}:{number + 1}: truncated or corrupt TFRecord")
    except (tf.errors.OpError, UnicodeDecodeError):  # TF's message may quote the bad bytes
        names = ", ".join(FEATURES)
        return CorpusError(f"{path}:{number}: not a tf.train.Example of int64 lists {names}")
    return CorpusError(f"{path}: unreadable after record {start}")


def _bad_rows(bad_values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per row of a flat ragged array (rows of ``lengths``): whether any of its values is bad."""
    bad = np.zeros(len(lengths), bool)
    bad[np.repeat(np.arange(len(lengths)), lengths)[bad_values]] = True
    return bad


def _check_batch(path: str, start: int, batch: dict) -> None:
    """CorpusError for the first record of a parsed batch whose features cannot be a block."""
    lengths = {name: np.diff(batch[name][1]) for name in FEATURES}
    # An absent feature parses as empty; title_ids may be empty, so it is checked in record 1 only.
    checks = [(lengths[n] == 0, f"feature {n!r} is missing or empty") for n in FEATURES[1:]]
    for name in FEATURES:
        values = batch[name][0]
        bad = (values < 0) | (values > _INT32_MAX)
        checks.append((_bad_rows(bad, lengths[name]), f"{name} out of int32 range"))
    starts, num_starts = batch["sentence_starts"][0], lengths["sentence_starts"]
    rows = np.repeat(np.arange(len(num_starts)), num_starts)
    bad = starts >= lengths["token_ids"][rows]
    bad[1:] |= (np.diff(starts) <= 0) & (rows[1:] == rows[:-1])
    checks.append((_bad_rows(bad, num_starts), "sentence_starts must increase within token_ids"))
    firsts = [(int(np.argmax(bad)), why) for bad, why in checks if bad.any()]
    if firsts:
        row, why = min(firsts, key=lambda first: first[0])
        raise CorpusError(f"{path}:{start + row + 1}: {why}")


def _split_batch(batch: dict) -> list[ExampleIds]:
    """Per-record int32 ``(title_ids, token_ids, sentence_starts)`` of a parsed batch."""
    columns = [np.split(batch[name][0].astype(np.int32), batch[name][1][1:-1]) for name in FEATURES]
    return list(zip(*columns, strict=True))


def iter_tfrecord_examples(path: str | os.PathLike, batch_size: int = 1024) -> Iterator[ExampleIds]:
    """int32 ``(title_ids, token_ids, sentence_starts)`` of each record of ORQA's ``examples.tfr``.

    Streams batches parsed by ``tf.io.parse_example`` inside ``tf.data`` (the file is never read
    whole). A missing feature (empty ``token_ids``/``sentence_starts``, or a feature the first
    record lacks), bad sentence starts, a record that is not an Example, or a truncated file ->
    CorpusError ``file:record: why``.
    """
    tf = _import_tf()

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorpusError(f"{path}: no such file")
    if missing := _first_record_missing(path):
        raise CorpusError(f"{path}:1: feature {missing!r} is missing")
    dataset = tf.data.TFRecordDataset(path, buffer_size=16 * 1024 * 1024)
    batches = dataset.batch(batch_size).map(_parse_batch).prefetch(1).as_numpy_iterator()
    done = num_bytes = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except (tf.errors.OpError, UnicodeDecodeError):
            raise _locate_error(path, done, batch_size) from None
        _check_batch(path, done, batch)
        examples = _split_batch(batch)
        yield from examples
        done += len(examples)
        num_bytes += int(batch["num_bytes"]) + 16 * len(examples)  # length, 2 CRCs per record
    if num_bytes != os.path.getsize(path):  # tf.data stops quietly inside a cut record header
        raise CorpusError(f"{path}: truncated TFRecord after record {done}")


def _iter_lockstep(
    blocks_path: str, titles_path: str, examples_path: str
) -> Iterator[tuple[str, str, ExampleIds]]:
    """``(title, text, example)`` of the three files in order; CorpusError naming a shorter one."""
    rows = itertools.zip_longest(
        documents.iter_tfrecord_documents(blocks_path, titles_path),
        iter_tfrecord_examples(examples_path),
    )
    for record, (doc, example) in enumerate(rows, start=1):
        if doc is None or example is None:
            shorter, other = blocks_path, examples_path
            if example is None:
                shorter, other = other, shorter
            raise CorpusError(f"{shorter}: ends at record {record - 1}; {other} goes on")
        yield doc[0], doc[1], example


def _sentence_char_spans(starts: np.ndarray, num_tokens: int, offsets: Sequence) -> np.ndarray:
    """``[num_sentences, 2]``: each sentence from its first wordpiece's start to its last's end."""
    offsets = np.asarray(offsets[:num_tokens], np.int64).reshape(-1, 2)
    ends = np.append(starts[1:], num_tokens)
    return np.stack([offsets[starts, 0], offsets[ends - 1, 1]], axis=1).astype(np.int32)


def _example_block(title, text, example, wordpieces, offsets, max_len, is_continuation, stats):
    """The block of one record: its ids as they are, cut only if the body overflows ``max_len``."""
    title_ids, token_ids, starts = example
    if len(title_ids) > max_len // 4:  # as build_blocks: a title never leaves a body without room
        title_ids = title_ids[: max_len // 4]
        stats["truncated_titles"] += 1
    aligned = np.array_equal(token_ids, wordpieces)
    body, budget = text, max_len - 3 - len(title_ids)
    if len(token_ids) > budget:
        keep = whole_word_cut(token_ids, budget, is_continuation)
        token_ids, starts = token_ids[:keep], starts[starts < keep]
        if aligned:  # else the cut point in the text is unknown: the text is kept whole
            body = text[: offsets[keep - 1][1]]
        stats["truncated_blocks"] += 1
    if aligned:
        spans = _sentence_char_spans(starts, len(token_ids), offsets)
    else:
        spans = np.tile(np.array([0, len(body)], np.int32), (len(starts), 1))
        stats["unaligned_blocks"] += 1
    doc_index = stats["docs"]
    stats["docs"] += 1
    return Block(
        token_ids=token_ids,
        title_ids=title_ids,
        title=title,
        text=body,
        uid=block_uid(title, body),
        sentence_token_starts=starts,
        sentence_char_spans=spans,
        doc_index=doc_index,
    )


def _chunk_example_blocks(chunk, tokenizer, max_len, is_continuation, stats) -> list[Block]:
    """Blocks of a chunk of ``(title, text, example)``: one tokenizer call for all the texts."""
    wordpieces, offsets = tokenizer.tokenize_with_offsets([text for _, text, _ in chunk])
    return [
        _example_block(title, text, example, ids, offs, max_len, is_continuation, stats)
        for (title, text, example), ids, offs in zip(chunk, wordpieces, offsets, strict=True)
    ]


def build_blocks_from_examples(
    blocks_path: str,
    titles_path: str,
    examples_path: str,
    output_dir: str | os.PathLike,
    tokenizer: Tokenizer,
    max_len: int = DEFAULT_MAX_LEN,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int = 1024,
) -> dict:
    """ORQA's ``blocks.tfr`` + ``titles.tfr`` + ``examples.tfr`` -> block store; returns its meta.

    Block ``i`` is record ``i`` of all three, with the record's wordpieces and sentence starts.
    The store appears at ``output_dir`` only when complete; any error leaves nothing there.
    """
    if max_len < 8:
        raise ValueError(f"max_len must be at least 8, got {max_len}")
    is_continuation = continuation_table(tokenizer)
    keys = ("docs", "truncated_titles", "truncated_blocks", "unaligned_blocks")
    stats = collections.Counter(dict.fromkeys(keys, 0))
    rows = _iter_lockstep(blocks_path, titles_path, examples_path)
    with array_dir.atomic_directory(output_dir, overwrite) as tmp:
        writer = StoreWriter(tmp)
        try:
            with progress_bar(desc="blocks", unit="block", enabled=progress) as bar:
                for chunk in array_dir.chunked(rows, chunk_size):
                    writer.append(
                        _chunk_example_blocks(chunk, tokenizer, max_len, is_continuation, stats)
                    )
                    bar.update(len(chunk))
        finally:
            writer.close()
        meta = store_meta(writer, tokenizer, examples_path, max_len, True, stats)
        meta |= {
            "source_format": "examples.tfr",
            "blocks_source": blocks_path,
            "titles_source": titles_path,
            "sentence_splitter": "examples.tfr sentence_starts",
        }
        array_dir.write_meta(tmp, meta)
    return meta


def _load_block_records(path: str) -> np.ndarray:
    """The 1-D object array of bytes/str of ``block_records.npy``, loaded by ``safe_pickle``."""
    return load_object_npy(path)


def _iter_records(path: str, records: np.ndarray) -> Iterator[tuple[str, str]]:
    for i, record in enumerate(records):
        if isinstance(record, str):
            yield "", record
            continue
        try:
            yield "", record.decode("utf-8")
        except UnicodeDecodeError:
            raise CorpusError(f"{path}: record at index {i} is not UTF-8") from None


def iter_block_records(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``("", text)`` of each block of the HF REALM port's ``block_records.npy`` (no titles).

    The pickled array is loaded whole by ``safe_pickle.load_object_npy``, which runs nothing the
    pickle names. CorpusError (one line) for a missing file, an array that is not 1-D of bytes or
    str, a pickle naming any other global, or a record that is not UTF-8.
    """
    path = os.fspath(path)
    yield from _iter_records(path, _load_block_records(path))


def build_blocks_from_block_records(
    path: str | os.PathLike,
    output_dir: str | os.PathLike,
    tokenizer: Tokenizer,
    max_len: int = DEFAULT_MAX_LEN,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """``block_records.npy`` -> block store, one block per record (``build_blocks(prepacked)``)."""
    path = os.fspath(path)
    records = _load_block_records(path)
    return build_blocks(
        _iter_records(path, records),
        output_dir,
        tokenizer,
        max_len,
        prepacked=True,
        source=path,
        total=len(records),
        overwrite=overwrite,
        progress=progress,
    )
