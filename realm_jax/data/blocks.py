"""Corpus -> retrieval blocks of at most ``max_len`` wordpieces, stored once as memory-mapped arrays

Blocks are packed by ``packing.doc_blocks`` (ORQA's greedy sentence rule; an over-long sentence is
truncated) with REALM's uid, SHA1 of ``f"{title} <sep> {body}"``, stored as the 20 digest bytes
(``int.from_bytes(uid, "big")`` is the original integer). Titles are cut to ``max_len // 4``
wordpieces so a body always has room. Inputs: jsonl ``{title, text}`` documents (packed), or
ORQA's ``blocks.tfr`` + ``titles.tfr`` (each record already one block: kept whole, only split into
sentences). Truncations are counted in ``meta.json``. The released block files (ORQA's pre-tokenized
``examples.tfr``, the Hugging Face port's ``block_records.npy``) are read by ``released_blocks``.

A store is a directory of 1-D ``.npy`` arrays (``_ARRAYS``) plus ``meta.json``, written into a
temporary sibling and renamed into place when complete; ``BlockStore`` memory-maps it, so a
13M-block corpus opens without parsing any text.
"""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Iterable, Sequence

import numpy as np

from realm_jax.data import documents
from realm_jax.data.packing import Block, SentenceSplitter, continuation_table, doc_blocks
from realm_jax.data.tokenization import Tokenizer
from realm_jax.errors import CorpusError
from realm_jax.utils import array_dir
from realm_jax.utils.paths import missing_file_reason
from realm_jax.utils.progress import progress_bar

FORMAT_VERSION = 1
DEFAULT_MAX_LEN = 288
# name -> dtype; ``*_offsets`` are [num_blocks + 1] int64 row starts into the flat array they index.
_ARRAYS = {
    "token_ids": np.int32,  # [num_tokens] body wordpieces of all blocks
    "token_offsets": np.int64,
    "title_ids": np.int32,  # [num_title_tokens]
    "title_offsets": np.int64,
    "lengths": np.int32,  # [num_blocks] 3 + title + body: the [CLS] title [SEP] body [SEP] length
    "uids": "S20",  # [num_blocks] SHA1 digests
    "doc_index": np.int32,  # [num_blocks] position of the source document in the corpus
    "sentence_token_starts": np.int32,  # [num_sentences] into the block's body wordpieces
    "sentence_char_starts": np.int32,  # [num_sentences] into the block's body text (characters)
    "sentence_char_ends": np.int32,
    "sentence_offsets": np.int64,
    "text_bytes": np.uint8,  # [num_text_bytes] UTF-8 body texts
    "text_offsets": np.int64,
    "title_bytes": np.uint8,
    "title_text_offsets": np.int64,
}


def bert_inputs(
    first: Sequence[Sequence[int]],
    second: Sequence[Sequence[int]] | None,
    max_len: int,
    cls_id: int,
    sep_id: int,
) -> dict[str, np.ndarray]:
    """``[CLS] a [SEP] (b [SEP])`` -> int32 ``input_ids, input_mask, token_type_ids [n, max_len]``.

    Truncates as REALM's ``bert_format``: keep as much of ``a`` as fits, then of ``b``; type 0
    covers ``[CLS] a [SEP]``, type 1 ``b [SEP]``.
    """
    n = len(first)
    num_special = 2 if second is None else 3
    ids = np.zeros((n, max_len), np.int32)
    types = np.zeros((n, max_len), np.int32)
    mask = np.zeros((n, max_len), np.int32)
    for row in range(n):
        a = np.asarray(first[row], np.int32)[: max_len - num_special]
        ids[row, 0] = cls_id
        ids[row, 1 : 1 + len(a)] = a
        end = 2 + len(a)
        ids[row, end - 1] = sep_id
        if second is not None:
            b = np.asarray(second[row], np.int32)[: max_len - 3 - len(a)]
            ids[row, end : end + len(b)] = b
            ids[row, end + len(b)] = sep_id
            types[row, end : end + len(b) + 1] = 1
            end += len(b) + 1
        mask[row, :end] = 1
    return {"input_ids": ids, "input_mask": mask, "token_type_ids": types}


# Per-block values of each ragged array, and the offsets array that indexes it (if its own).
_RAGGED = {
    "token_ids": (lambda b: b.token_ids, "token_offsets"),
    "title_ids": (lambda b: b.title_ids, "title_offsets"),
    "sentence_token_starts": (lambda b: b.sentence_token_starts, "sentence_offsets"),
    "sentence_char_starts": (lambda b: b.sentence_char_spans[:, 0], None),  # sentence_offsets
    "sentence_char_ends": (lambda b: b.sentence_char_spans[:, 1], None),
    "text_bytes": (lambda b: np.frombuffer(b.text.encode(), np.uint8), "text_offsets"),
    "title_bytes": (lambda b: np.frombuffer(b.title.encode(), np.uint8), "title_text_offsets"),
}


class StoreWriter:
    """Streams blocks into the arrays of a store under construction (one write per chunk)."""

    def __init__(self, directory: str):
        self.writers = {
            n: array_dir.NpyAppender(os.path.join(directory, f"{n}.npy"), d)
            for n, d in _ARRAYS.items()
        }
        self.totals = {n: 0 for n in _RAGGED}
        self.num_blocks = 0
        for _, offsets in _RAGGED.values():
            if offsets:
                self.writers[offsets].append([0])

    def append(self, blocks: Sequence[Block]) -> None:
        if not blocks:
            return
        for name, (values, offsets) in _RAGGED.items():
            rows = [values(b) for b in blocks]
            self.writers[name].append(np.concatenate(rows))
            ends = self.totals[name] + np.cumsum([len(r) for r in rows], dtype=np.int64)
            self.totals[name] = int(ends[-1])
            if offsets:
                self.writers[offsets].append(ends)
        self.writers["lengths"].append([3 + len(b.title_ids) + len(b.token_ids) for b in blocks])
        self.writers["uids"].append(np.array([b.uid for b in blocks], "S20"))
        self.writers["doc_index"].append([b.doc_index for b in blocks])
        self.num_blocks += len(blocks)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def store_meta(
    writer: StoreWriter,
    tokenizer: Tokenizer,
    source: str,
    max_len: int,
    prepacked: bool,
    stats: collections.Counter,
) -> dict:
    """``meta.json`` of a store just written: sizes, ``num_<stat>`` counts, vocab and special ids.

    CorpusError if the store has no blocks.
    """
    if writer.num_blocks == 0:
        raise CorpusError(f"{source}: no blocks (no document has any text)")
    with open(tokenizer.vocab_path, "rb") as f:
        vocab_sha1 = hashlib.sha1(f.read()).hexdigest()
    return {
        "format_version": FORMAT_VERSION,
        "source": source,
        "max_len": max_len,
        "prepacked": prepacked,
        "num_blocks": writer.num_blocks,
        "num_tokens": writer.totals["token_ids"],
        "num_sentences": writer.totals["sentence_token_starts"],
        **{f"num_{k}": v for k, v in sorted(stats.items())},
        "vocab_sha1": vocab_sha1,
        **{f"{k}_id": getattr(tokenizer, f"{k}_id") for k in ("cls", "sep", "pad", "mask")},
    }


def _chunk_blocks(chunk, splitter, tokenizer, max_len, prepacked, is_continuation, stats):
    """Blocks of a chunk of documents: one sentence-split pass and one tokenizer call for all."""
    sentence_spans = splitter.split([text for _, text in chunk])
    sentence_texts = [
        text[s:e] for (_, text), spans in zip(chunk, sentence_spans, strict=True) for s, e in spans
    ]
    ids, offsets = tokenizer.tokenize_with_offsets([title for title, _ in chunk] + sentence_texts)
    title_ids, ids, offsets = ids[: len(chunk)], ids[len(chunk) :], offsets[len(chunk) :]
    blocks, at = [], 0
    for (title, text), spans, t_ids in zip(chunk, sentence_spans, title_ids, strict=True):
        if len(t_ids) > max_len // 4:  # a title never leaves a body without room
            t_ids = t_ids[: max_len // 4]
            stats["truncated_titles"] += 1
        n = len(spans)
        sents = list(zip(spans, ids[at : at + n], offsets[at : at + n], strict=True))
        doc = doc_blocks(
            title, text, t_ids, sents, max_len, is_continuation, stats["docs"], prepacked, stats
        )
        at += n
        stats["docs"] += 1
        stats["empty_docs"] += not doc
        blocks.extend(doc)
    return blocks


def build_blocks(
    docs: Iterable[tuple[str, str]],
    output_dir: str | os.PathLike,
    tokenizer: Tokenizer,
    max_len: int = DEFAULT_MAX_LEN,
    prepacked: bool = False,
    source: str = "corpus",
    total: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    chunk_size: int = 256,
) -> dict:
    """Splits, tokenizes and packs ``(title, text)`` documents into a block store; returns its meta.

    ``prepacked``: each document is already one block (ORQA's ``blocks.tfr``). The store appears
    at ``output_dir`` only when complete; any error leaves nothing there.
    """
    if max_len < 8:
        raise ValueError(f"max_len must be at least 8, got {max_len}")
    splitter = SentenceSplitter()
    is_continuation = continuation_table(tokenizer)
    keys = ("docs", "empty_docs", "truncated_titles", "truncated_sentences", "dropped_sentences")
    stats = collections.Counter(dict.fromkeys(keys, 0))
    with array_dir.atomic_directory(output_dir, overwrite) as tmp:
        writer = StoreWriter(tmp)
        try:
            with progress_bar(total=total, desc="blocks", unit="doc", enabled=progress) as bar:
                for chunk in array_dir.chunked(docs, chunk_size):
                    writer.append(
                        _chunk_blocks(
                            chunk, splitter, tokenizer, max_len, prepacked, is_continuation, stats
                        )
                    )
                    bar.update(len(chunk))
        finally:
            writer.close()
        meta = store_meta(writer, tokenizer, source, max_len, prepacked, stats)
        meta["sentence_splitter"] = "spacy.blank('en') + sentencizer"
        array_dir.write_meta(tmp, meta)
    return meta


class BlockStore:
    """A block store on disk, memory-mapped: nothing is read until a block is asked for."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        self.meta = array_dir.read_meta(self.directory)
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{self.directory}: block format {self.meta.get('format_version')}, "
                f"expected {FORMAT_VERSION}"
            )
        self.arrays = array_dir.load_arrays(self.directory, _ARRAYS)
        self.max_len = self.meta["max_len"]
        self.cls_id, self.sep_id = self.meta["cls_id"], self.meta["sep_id"]
        self.uids = self.arrays["uids"]  # [num_blocks] S20
        self.lengths = self.arrays["lengths"]  # [num_blocks]

    def __len__(self) -> int:
        return self.meta["num_blocks"]

    def _row(self, name: str, offsets: str, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"block {i} out of range [0, {len(self)})")
        o = self.arrays[offsets]
        return self.arrays[name][o[i] : o[i + 1]]

    def token_ids(self, i: int) -> np.ndarray:
        """Body wordpieces of block ``i`` (int32, no special tokens)."""
        return np.asarray(self._row("token_ids", "token_offsets", i))

    def title_ids(self, i: int) -> np.ndarray:
        return np.asarray(self._row("title_ids", "title_offsets", i))

    def text(self, i: int) -> str:
        return self._row("text_bytes", "text_offsets", i).tobytes().decode()

    def title(self, i: int) -> str:
        return self._row("title_bytes", "title_text_offsets", i).tobytes().decode()

    def uid(self, i: int) -> bytes:
        return bytes(self.uids[i])

    def sentence_token_starts(self, i: int) -> np.ndarray:
        return np.asarray(self._row("sentence_token_starts", "sentence_offsets", i))

    def sentence_char_spans(self, i: int) -> np.ndarray:
        """``[num_sentences, 2]`` (start, end) character spans of the sentences in ``text(i)``."""
        starts = self._row("sentence_char_starts", "sentence_offsets", i)
        ends = self._row("sentence_char_ends", "sentence_offsets", i)
        return np.stack([starts, ends], axis=1).astype(np.int32)

    def get(self, i: int) -> Block:
        """Block ``i`` with its wordpieces, title, body text, uid and sentence boundaries."""
        return Block(
            token_ids=self.token_ids(i),
            title_ids=self.title_ids(i),
            title=self.title(i),
            text=self.text(i),
            uid=self.uid(i),
            sentence_token_starts=self.sentence_token_starts(i),
            sentence_char_spans=self.sentence_char_spans(i),
            doc_index=int(self.arrays["doc_index"][i]),
        )

    def block_inputs(self, indices: Sequence[int], max_len: int) -> dict[str, np.ndarray]:
        """``[CLS] title [SEP] body [SEP]`` of blocks ``indices`` -> int32 ``[n, max_len]``."""
        titles = [self.title_ids(int(i)) for i in indices]
        bodies = [self.token_ids(int(i)) for i in indices]
        return bert_inputs(titles, bodies, max_len, self.cls_id, self.sep_id)


def build_blocks_from_files(
    corpus: str,
    output_dir: str,
    titles: str | None = None,
    max_len: int = DEFAULT_MAX_LEN,
    tokenizer: Tokenizer | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """A jsonl corpus, or ORQA's ``blocks.tfr`` with ``titles`` = ``titles.tfr`` -> block store."""
    tokenizer = tokenizer or Tokenizer()
    kw = dict(max_len=max_len, source=corpus, overwrite=overwrite, progress=progress)
    if titles is not None:
        docs = documents.iter_tfrecord_documents(corpus, titles)
        return build_blocks(docs, output_dir, tokenizer, prepacked=True, **kw)
    if reason := missing_file_reason(corpus):
        raise documents.CorpusError(f"{corpus}: {reason}")
    total = documents.count_lines(corpus) if progress else None
    docs = documents.iter_jsonl_documents(corpus)
    return build_blocks(docs, output_dir, tokenizer, total=total, **kw)
