"""Released block files -> block store: ORQA's examples.tfr (ids kept as written) and HF's
block_records.npy, written here in their original formats from a few English passages."""

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from realm_jax.data.blocks import BlockStore
from realm_jax.data.released_blocks import (
    build_blocks_from_block_records,
    build_blocks_from_examples,
    iter_block_records,
    iter_tfrecord_examples,
)
from realm_jax.errors import CorpusError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSAGES = [
    (
        "Alan Turing",
        [
            "Alan Turing was an English mathematician and computer scientist.",
            "He formalised the concepts of algorithm and computation with the Turing machine.",
            "Turing is widely considered to be the father of theoretical computer science.",
        ],
    ),
    (
        "Photosynthesis",
        [
            "Photosynthesis is the process by which plants convert light into chemical energy.",
            "Most plants, algae and cyanobacteria perform it.",
        ],
    ),
    (
        "Zürich",
        [
            "Zürich is the largest city in Switzerland.",
            "It lies at the tip of Lake Zürich (about 1.4 million people live near it).",
            "The city's café culture dates back to the 19th century!",
        ],
    ),
    (
        "Mount Everest",
        [
            "Mount Everest is Earth's highest mountain above sea level.",
            "Its elevation, 8,848.86 m, was most recently established in 2020.",
        ],
    ),
    (
        "The Beatles",
        [
            "The Beatles were an English rock band formed in Liverpool in 1960.",
            "They are regarded as the most influential band of all time.",
        ],
    ),
]
UNALIGNED = 4  # this record's token_ids are deliberately not its text's wordpieces


def _example(**features) -> bytes:
    import tensorflow as tf

    feature = {
        name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        for name, values in features.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_tfrecords(path, records) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record.encode() if isinstance(record, str) else record)


def _passage_examples(tokenizer) -> list[dict]:
    examples = []
    for title, sentences in PASSAGES:
        ids = tokenizer.tokenize(sentences)
        starts = np.cumsum([0] + [len(s) for s in ids[:-1]]).tolist()
        title_ids = tokenizer.tokenize([title])[0]
        token_ids = [i for s in ids for i in s]
        examples.append(dict(title_ids=title_ids, token_ids=token_ids, sentence_starts=starts))
    examples[UNALIGNED]["token_ids"][0] = tokenizer.tokenize(["a"])[0][0]
    return examples


@pytest.fixture
def released(tmp_path, tokenizer) -> dict:
    examples = _passage_examples(tokenizer)
    paths = {name: str(tmp_path / f"{name}.tfr") for name in ("blocks", "titles", "examples")}
    _write_tfrecords(paths["blocks"], [" ".join(sentences) for _, sentences in PASSAGES])
    _write_tfrecords(paths["titles"], [title for title, _ in PASSAGES])
    _write_tfrecords(paths["examples"], [_example(**e) for e in examples])
    return {"paths": paths, "examples": examples, "out": str(tmp_path / "store")}


def _build(released, tokenizer, **kw) -> dict:
    p = released["paths"]
    return build_blocks_from_examples(
        p["blocks"], p["titles"], p["examples"], released["out"], tokenizer, progress=False, **kw
    )


def test_examples_stream_in_batches(released):
    got = list(iter_tfrecord_examples(released["paths"]["examples"], batch_size=2))
    assert len(got) == len(PASSAGES)
    for arrays, example in zip(got, released["examples"], strict=True):
        assert all(a.dtype == np.int32 for a in arrays)
        assert [a.tolist() for a in arrays] == [
            example[k] for k in ("title_ids", "token_ids", "sentence_starts")
        ]


def test_store_keeps_the_examples_ids_and_texts(released, tokenizer):
    meta = _build(released, tokenizer, chunk_size=2)
    store = BlockStore(released["out"])
    assert len(store) == meta["num_blocks"] == len(PASSAGES)
    assert meta["source_format"] == "examples.tfr" and meta["prepacked"]
    assert meta["num_unaligned_blocks"] == 1 and meta["num_truncated_blocks"] == 0
    for i, ((title, sentences), example) in enumerate(
        zip(PASSAGES, released["examples"], strict=True)
    ):
        text = " ".join(sentences)
        assert store.text(i) == text and store.title(i) == title
        assert store.uid(i) == hashlib.sha1(f"{title} <sep> {text}".encode()).digest()
        assert int(store.arrays["doc_index"][i]) == i
        assert store.token_ids(i).tolist() == example["token_ids"]
        assert store.title_ids(i).tolist() == example["title_ids"]
        assert store.sentence_token_starts(i).tolist() == example["sentence_starts"]
        spans = store.sentence_char_spans(i)
        if i == UNALIGNED:  # one whole-text span per sentence
            assert spans.tolist() == [[0, len(text)]] * len(sentences)
        else:
            assert store.get(i).sentences() == sentences
            assert tokenizer.tokenize([text[s:e] for s, e in spans]) == tokenizer.tokenize(
                sentences
            )


def test_long_bodies_are_cut_on_a_word(released, tokenizer):
    meta = _build(released, tokenizer, max_len=24)
    store = BlockStore(released["out"])
    assert meta["num_truncated_blocks"] == len(PASSAGES)
    assert int(np.max(store.lengths)) <= 24
    for i, (title, sentences) in enumerate(PASSAGES):
        ids, text = store.token_ids(i), store.text(i)
        assert ids.tolist() == released["examples"][i]["token_ids"][: len(ids)]
        assert set(store.sentence_token_starts(i)) <= set(
            released["examples"][i]["sentence_starts"]
        )
        assert store.uid(i) == hashlib.sha1(f"{title} <sep> {text}".encode()).digest()
        if i != UNALIGNED:  # the text is cut where the wordpieces are
            assert tokenizer.tokenize([text])[0] == ids.tolist()
            assert " ".join(sentences).startswith(text) and text


def _truncate(path, keep) -> None:
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: keep(data)])


def _last_record_start(data: bytes) -> int:
    at = starts = 0
    while at < len(data):
        starts, at = at, at + 16 + int.from_bytes(data[at : at + 8], "little")
    return starts


def _mismatch(paths, examples):
    _write_tfrecords(paths["examples"], [_example(**e) for e in examples[:-1]])
    return "examples.tfr: ends at record 4; .*blocks.tfr goes on"


def _titles_short(paths, examples):
    _write_tfrecords(paths["titles"], [t for t, _ in PASSAGES[:-1]])
    _write_tfrecords(paths["blocks"], [" ".join(s) for _, s in PASSAGES[:-1]])
    return "blocks.tfr: ends at record 4; .*examples.tfr goes on"


def _missing_feature(paths, examples):
    del examples[2]["sentence_starts"]
    _write_tfrecords(paths["examples"], [_example(**e) for e in examples])
    return "examples.tfr:3: feature 'sentence_starts' is missing or empty"


def _missing_title_ids(paths, examples):
    _write_tfrecords(paths["examples"], [_example(token_ids=[5], sentence_starts=[0])] * 5)
    return "examples.tfr:1: feature 'title_ids' is missing"


def _bad_starts(paths, examples):
    examples[1]["sentence_starts"] = [0, 99]
    _write_tfrecords(paths["examples"], [_example(**e) for e in examples])
    return "examples.tfr:2: sentence_starts must increase"


def _not_an_example(paths, examples):
    records = [_example(**e) for e in examples]
    records[1] = b"\xff\xfe not a proto"
    _write_tfrecords(paths["examples"], records)
    return "examples.tfr:2: not a tf.train.Example"


def _cut_record(paths, examples):
    _truncate(paths["examples"], lambda data: len(data) - 10)
    return "examples.tfr:5: truncated or corrupt TFRecord"


def _cut_header(paths, examples):
    _truncate(paths["examples"], lambda data: _last_record_start(data) + 6)
    return "examples.tfr: truncated TFRecord after record 4"


@pytest.mark.parametrize(
    "corrupt",
    [
        _mismatch,
        _titles_short,
        _missing_feature,
        _missing_title_ids,
        _bad_starts,
        _not_an_example,
        _cut_record,
        _cut_header,
    ],
)
def test_bad_inputs_are_one_line_and_leave_nothing(released, tokenizer, corrupt):
    expected = corrupt(released["paths"], released["examples"])
    with pytest.raises(CorpusError, match=expected) as error:
        _build(released, tokenizer)
    assert "\n" not in str(error.value)
    assert not os.path.exists(released["out"])
    assert sorted(os.listdir(os.path.dirname(released["out"]))) == [
        "blocks.tfr",
        "examples.tfr",
        "titles.tfr",
    ]


def test_block_records_round_trip_and_errors(tmp_path, tokenizer):
    texts = [" ".join(sentences) for _, sentences in PASSAGES]
    path = tmp_path / "block_records.npy"
    np.save(path, np.array([t.encode() for t in texts], dtype=object), allow_pickle=True)
    assert list(iter_block_records(path)) == [("", t) for t in texts]
    meta = build_blocks_from_block_records(path, tmp_path / "out", tokenizer, progress=False)
    store = BlockStore(tmp_path / "out")
    assert meta["num_blocks"] == len(store) == len(texts) and meta["prepacked"]
    for i, text in enumerate(texts):
        assert store.text(i) == text and store.title(i) == "" and len(store.title_ids(i)) == 0
        assert store.token_ids(i).tolist() == tokenizer.tokenize([text])[0]
    np.save(path, np.array([b"fine", b"bad \xff", b"never read"], dtype=object))
    with pytest.raises(CorpusError, match="block_records.npy: record at index 1 is not UTF-8"):
        build_blocks_from_block_records(path, tmp_path / "bad", tokenizer, progress=False)
    assert not (tmp_path / "bad").exists()
    np.save(path, np.zeros((2, 3), np.int32))
    with pytest.raises(CorpusError, match="block_records.npy: expected a 1-D object array"):
        list(iter_block_records(path))
    with pytest.raises(CorpusError, match="nothing.npy: no such file"):
        list(iter_block_records(tmp_path / "nothing.npy"))


def _run_script(*args: str) -> subprocess.CompletedProcess:
    script = os.path.join(REPO, "experiments", "build_blocks.py")
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, env=env, cwd=REPO
    )


def test_script_reads_examples_and_rejects_bad_flags(released):
    p = released["paths"]
    ok = _run_script(
        "--corpus", p["blocks"], "--titles", p["titles"], "--examples", p["examples"],
        "--output", released["out"],
    )
    assert ok.returncode == 0, ok.stderr
    assert '"source_format": "examples.tfr"' in ok.stdout.splitlines()[-1]
    assert len(BlockStore(released["out"])) == len(PASSAGES)
    bad = _run_script("--corpus", p["blocks"], "--examples", p["examples"], "--output", "x")
    assert bad.returncode == 1
    assert (
        bad.stderr.strip() == "error: --examples needs --corpus blocks.tfr and --titles titles.tfr"
    )
