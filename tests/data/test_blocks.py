"""Corpus -> blocks: the length limit, text round trip, stable uids, errors and atomic writes."""

import hashlib
import json
import os
import sys

import numpy as np
import pytest

from realm_jax.data.blocks import BlockStore, bert_inputs, build_blocks_from_files
from realm_jax.data.documents import iter_tfrecord_strings
from realm_jax.data.packing import pack_sentences
from realm_jax.errors import CorpusError, JsonlError

# uid of the first mini passage ("Super Bowl 50"), one block: SHA1("Super Bowl 50 <sep> " + text).
FIRST_UID = "13b5ffa17c1d31a0709775e65f0894c1da5c9e52"


def _blocks_by_doc(store):
    docs = {}
    for i in range(len(store)):
        docs.setdefault(int(store.arrays["doc_index"][i]), []).append(i)
    return docs


def test_pack_sentences_follows_orqa_rule():
    # 3 + title 2 = 5 fixed; 5+3+4 = 12 fits, +5 = 17 does not; 5+5 = 10, +10 = 20 does not.
    assert pack_sentences(2, [3, 4, 0, 5, 10], 15) == [[0, 1], [3], [4]]
    assert pack_sentences(2, [20], 15) == [[0]]  # over-long alone: one block, truncated later
    assert pack_sentences(2, [0, 0], 15) == []


def test_every_block_fits_and_lengths_add_up(mini_store):
    assert len(mini_store) >= 200 and mini_store.max_len == 288
    lengths = np.asarray(mini_store.lengths)
    assert lengths.max() <= 288
    for i in range(len(mini_store)):
        block = mini_store.get(i)
        assert lengths[i] == 3 + len(block.title_ids) + len(block.token_ids)
    assert isinstance(mini_store.arrays["token_ids"], np.memmap)  # loaded by memory map


def test_blocks_round_trip_the_corpus_in_order(mini_store, mini_rows, tokenizer):
    docs = _blocks_by_doc(mini_store)
    assert sorted(docs) == list(range(len(mini_rows)))  # no passage lost, in corpus order
    assert mini_store.meta["num_truncated_sentences"] == 0
    wordpieces = tokenizer.tokenize([row["text"] for row in mini_rows])
    for doc, row in enumerate(mini_rows):
        blocks = [mini_store.get(i) for i in docs[doc]]
        assert all(b.title == row["title"] for b in blocks)
        # Each body is the passage's own text; only the spaces between blocks are not kept.
        assert " ".join(b.text for b in blocks) == " ".join(row["text"].split(" ")).strip()
        assert np.concatenate([b.token_ids for b in blocks]).tolist() == wordpieces[doc]
        for block in blocks:  # sentence boundaries index both the text and the wordpieces
            sentences = block.sentences()
            bounds = block.sentence_char_spans.reshape(-1)  # gaps between sentences are blank
            gaps = [block.text[e:s] for e, s in zip(bounds[1:-1:2], bounds[2::2], strict=True)]
            assert bounds[0] == 0 and bounds[-1] == len(block.text) and not "".join(gaps).strip()
            starts = np.append(block.sentence_token_starts, len(block.token_ids))
            pieces = tokenizer.tokenize(sentences)
            for k, piece in enumerate(pieces):
                assert block.token_ids[starts[k] : starts[k + 1]].tolist() == piece
    assert tokenizer.decode(mini_store.token_ids(0)) == tokenizer.decode(wordpieces[0])


def test_uids_are_stable(mini_store, mini_corpus, tokenizer, tmp_path):
    assert mini_store.uid(0).hex() == FIRST_UID
    for i in range(len(mini_store)):
        b = mini_store.get(i)
        assert b.uid == hashlib.sha1(f"{b.title} <sep> {b.text}".encode()).digest()
    # Another run, other chunking: the same blocks, byte for byte.
    from realm_jax.data.blocks import build_blocks
    from realm_jax.data.documents import iter_jsonl_documents

    out = tmp_path / "again"
    build_blocks(iter_jsonl_documents(mini_corpus), out, tokenizer, chunk_size=7, progress=False)
    again = BlockStore(out)
    for name in ("uids", "token_ids", "sentence_token_starts", "text_bytes"):
        np.testing.assert_array_equal(again.arrays[name], mini_store.arrays[name])


def test_small_limit_splits_and_truncates_on_whole_words(mini_corpus, tokenizer, tmp_path):
    meta = build_blocks_from_files(
        mini_corpus, tmp_path / "b", max_len=24, tokenizer=tokenizer, progress=False
    )
    store = BlockStore(tmp_path / "b")
    assert meta["num_truncated_sentences"] > 0 and meta["num_blocks"] > 2 * 200
    assert np.asarray(store.lengths).max() <= 24
    for i in range(0, len(store), 7):  # a truncated text re-tokenizes to exactly its wordpieces
        assert tokenizer.tokenize([store.text(i)])[0] == store.token_ids(i).tolist()


def test_block_inputs_and_bert_inputs(mini_store):
    inputs = mini_store.block_inputs([0, 1], 288)
    b = mini_store.get(1)
    n_title, n_body = len(b.title_ids), len(b.token_ids)
    ids = inputs["input_ids"][1]
    assert ids[0] == 101 and ids[1 + n_title] == 102 and ids[2 + n_title + n_body] == 102
    assert ids[2 + n_title : 2 + n_title + n_body].tolist() == b.token_ids.tolist()
    assert inputs["input_mask"][1].sum() == 3 + n_title + n_body
    assert inputs["token_type_ids"][1].sum() == n_body + 1
    # REALM's bert_format truncation: keep the first sequence, then what fits of the second.
    out = bert_inputs([[5, 6, 7]], [[8, 9, 10, 11]], 8, 1, 2)
    assert out["input_ids"].tolist() == [[1, 5, 6, 7, 2, 8, 9, 2]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    single = bert_inputs([[5, 6, 7, 8]], None, 4, 1, 2)
    assert single["input_ids"].tolist() == [[1, 5, 6, 2]] and single["input_mask"].all()


BAD_CORPORA = {
    "malformed": ('{"title": "a", "text": "b."}\n{"title": "a", "text": \n', 2, "malformed JSON"),
    "missing": ('{"title": "a", "text": "b."}\n\n{"title": "a"}\n', 3, "missing field 'text'"),
    "not_a_string": ('{"title": 3, "text": "b."}\n', 1, "field 'title' must be a string"),
    "empty_file": ("", 1, "empty file"),
    "no_text": ('{"title": "a", "text": "  "}\n', None, "no blocks"),
}


@pytest.mark.parametrize("kind", BAD_CORPORA)
def test_bad_corpus_is_one_line_error_and_leaves_nothing(kind, tokenizer, tmp_path):
    content, line, reason = BAD_CORPORA[kind]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(content, encoding="utf-8")
    with pytest.raises((JsonlError, CorpusError)) as error:
        build_blocks_from_files(str(corpus), str(tmp_path / "blocks"), tokenizer=tokenizer)
    message = str(error.value)
    assert "\n" not in message and str(corpus) in message and reason in message
    if line is not None:
        assert f"{corpus}:{line}:" in message
    assert os.listdir(tmp_path) == ["corpus.jsonl"]  # no store, no temporary directory


def test_existing_store_is_kept_unless_overwritten(mini_corpus, tokenizer, tmp_path):
    out = tmp_path / "blocks"
    out.mkdir()
    with pytest.raises(FileExistsError):
        build_blocks_from_files(mini_corpus, str(out), tokenizer=tokenizer, progress=False)
    assert os.listdir(out) == []
    build_blocks_from_files(
        mini_corpus, str(out), tokenizer=tokenizer, overwrite=True, progress=False
    )
    assert len(BlockStore(out)) > 0 and sorted(os.listdir(tmp_path)) == ["blocks"]


def _write_tfrecords(path, strings):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for s in strings:
            writer.write(s.encode("utf-8"))


def test_orqa_tfrecord_blocks_are_kept_whole(mini_rows, tokenizer, tmp_path, monkeypatch):
    rows = [r for r in mini_rows if len(tokenizer.tokenize([r["text"]])[0]) < 250][:20]
    texts = [r["text"] for r in rows] + ["Ünïcödé block. Second sentence here."]
    titles = [r["title"] for r in rows] + ["Ünïcödé"]
    _write_tfrecords(tmp_path / "blocks.tfr", texts)
    _write_tfrecords(tmp_path / "titles.tfr", titles)
    with_tf = list(iter_tfrecord_strings(tmp_path / "blocks.tfr"))
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "tensorflow", None)  # now the pure-Python reader runs
        assert list(iter_tfrecord_strings(tmp_path / "blocks.tfr")) == with_tf
    assert [s.decode() for s in with_tf] == texts
    build_blocks_from_files(
        str(tmp_path / "blocks.tfr"),
        str(tmp_path / "out"),
        titles=str(tmp_path / "titles.tfr"),
        tokenizer=tokenizer,
        progress=False,
    )
    store = BlockStore(tmp_path / "out")
    assert len(store) == len(texts) and store.meta["prepacked"]
    for i, (title, text) in enumerate(zip(titles, texts, strict=True)):
        assert store.text(i) == text and store.title(i) == title  # exact text: original uids
        assert store.uid(i) == hashlib.sha1(f"{title} <sep> {text}".encode()).digest()
        assert store.token_ids(i).tolist() == tokenizer.tokenize([text])[0]
    _write_tfrecords(tmp_path / "titles.tfr", titles[:-1])
    with pytest.raises(CorpusError, match="titles.tfr: ends at record 20"):
        build_blocks_from_files(
            str(tmp_path / "blocks.tfr"),
            str(tmp_path / "out2"),
            titles=str(tmp_path / "titles.tfr"),
            tokenizer=tokenizer,
            progress=False,
        )
    assert not (tmp_path / "out2").exists()
    (tmp_path / "garbage.tfr").write_bytes(bytes(range(256)) * 16)  # TF's reader: one line
    with pytest.raises(CorpusError) as error:
        list(iter_tfrecord_strings(tmp_path / "garbage.tfr"))
    assert str(error.value) == (f"{tmp_path / 'garbage.tfr'}: corrupt TFRecord (corrupted record "
                                "at 0 (Is this even a TFRecord file?))")


def test_meta_is_json_with_counts(mini_store):
    with open(os.path.join(mini_store.directory, "meta.json")) as f:
        meta = json.load(f)
    assert meta["num_blocks"] == len(mini_store) and meta["num_docs"] == 200
    assert meta["num_tokens"] == len(mini_store.arrays["token_ids"])
