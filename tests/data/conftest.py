"""Session fixtures for the data tests: a block store over real mini-corpus passages, and its
salient spans (spaCy runs once per session)."""

import itertools
import json
import os

import pytest

from realm_jax.assets import MINI_PASSAGES
from realm_jax.data.blocks import BlockStore, build_blocks_from_files
from realm_jax.data.salient_spans import SalientSpans, build_salient_spans, load_ner

NUM_PASSAGES = 200


@pytest.fixture(scope="session")
def mini_rows() -> list[dict]:
    with open(MINI_PASSAGES, encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, NUM_PASSAGES)]


@pytest.fixture(scope="session")
def mini_corpus(tmp_path_factory, mini_rows) -> str:
    path = tmp_path_factory.mktemp("corpus") / "passages.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in mini_rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def mini_store(tmp_path_factory, mini_corpus, tokenizer) -> BlockStore:
    out = tmp_path_factory.mktemp("stores") / "blocks"
    build_blocks_from_files(mini_corpus, str(out), tokenizer=tokenizer, progress=False)
    return BlockStore(out)


@pytest.fixture(scope="session")
def nlp():
    return load_ner()


@pytest.fixture(scope="session")
def mini_spans(mini_store, nlp) -> SalientSpans:
    if not os.path.isdir(os.path.join(mini_store.directory, "salient_spans")):
        build_salient_spans(mini_store.directory, nlp, progress=False)
    return SalientSpans(mini_store)
