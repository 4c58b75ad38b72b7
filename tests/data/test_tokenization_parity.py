"""Our ``tokenizers``-based Tokenizer gives exactly what ``transformers.BertTokenizerFast`` gives
over the packaged vocab, without importing ``transformers``; ``REALM_JAX_VOCAB`` picks another
vocab."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from transformers import BertTokenizerFast

from realm_jax.data import tokenization
from realm_jax.data.tokenization import VOCAB_PATH, Tokenizer, shared_tokenizer

TEXTS = [
    "Who founded Apple?",
    "the quick brown fox jumps over the lazy dog",
    "THE QUICK Brown FoX, McDonald's iPhone NASA",
    "Café Müller, naïve résumé, Ångström, São Paulo, Øresund, e\u0301 (combining)",
    "東京は日本の首都です。北京大学 한국어 텍스트",
    "Здравствуй, мир! Γειά σου κόσμε. مرحبا بالعالم",
    "Hello... world!!! (really?) [sic] {braces} <tags> a/b\\c @user #tag ~tilde",
    "On 2024-01-15 at 10:30pm, 3.14159 × 10^3 = $1,000,000.00 (+/- 5%); 1st, 2nd, 24–10.",
    "I don't know, it's John's. Do not go! we've, they're, I'm ' quoted ' do not",
    "",
    "   ",
    "\t\n \r\n",
    "ctrl\x00chars\x07 here\x1b[0m and\ufeff bom\u200b zero-width\x7f del",
    "emoji 😀 👍🏽 🇺🇸 ❤️ family 👨‍👩‍👧",
    "unknownwordxyzqq supercalifragilisticexpialidocious " + "a" * 150,
    "Ｆｕｌｌｗｉｄｔｈ ﬁ ligature ½ ™ ①",
    "[MASK] is a [CLS] special [SEP] token [PAD] [UNK] but [mask] is not",
    "The quick brown fox jumps over the lazy dog. " * 60,
]
MAX_LENS = [4, 8, 16, 64, 512]
PAIR_MAX_LENS = [5, 9, 16, 33, 128]


@pytest.fixture(scope="module")
def ref() -> BertTokenizerFast:
    return BertTokenizerFast(vocab_file=VOCAB_PATH, do_lower_case=True)


@pytest.fixture(scope="module")
def texts(passages32) -> list[str]:
    return TEXTS + [p["text"] for p in passages32]


def assert_batch_equal(ours: dict, theirs) -> None:
    for name, ref_name in [
        ("input_ids", "input_ids"),
        ("input_mask", "attention_mask"),
        ("token_type_ids", "token_type_ids"),
    ]:
        expected = np.asarray(theirs[ref_name], np.int32)
        assert ours[name].dtype == np.int32 and ours[name].shape == expected.shape, name
        np.testing.assert_array_equal(ours[name], expected, err_msg=name)


def test_special_ids_and_vocab(tokenizer, ref):
    assert (
        tokenizer.pad_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
        tokenizer.mask_id,
        tokenizer.unk_id,
        tokenizer.vocab_size,
    ) == (
        ref.pad_token_id,
        ref.cls_token_id,
        ref.sep_token_id,
        ref.mask_token_id,
        ref.unk_token_id,
        len(ref),
    )
    assert tokenizer.vocab_path == VOCAB_PATH


def test_tokenize(tokenizer, ref, texts):
    assert tokenizer.tokenize(texts) == ref(texts, add_special_tokens=False)["input_ids"]


def test_tokenize_with_offsets(tokenizer, ref, texts):
    ids, offsets = tokenizer.tokenize_with_offsets(texts)
    enc = ref(texts, add_special_tokens=False, return_offsets_mapping=True)
    assert ids == enc["input_ids"]
    assert offsets == enc["offset_mapping"]


@pytest.mark.parametrize("max_len", MAX_LENS)
def test_encode(tokenizer, ref, texts, max_len):
    ours = tokenizer.encode(texts, max_len)
    assert_batch_equal(ours, ref(texts, max_length=max_len, truncation=True, padding="max_length"))
    assert ours["input_ids"].shape == (len(texts), max_len)


@pytest.mark.parametrize("max_len", PAIR_MAX_LENS)
def test_encode_pairs(tokenizer, ref, texts, max_len):
    """Long first, long second, both long, both short, and empty sides."""
    short = ["who?", "", "Café", "2024", "   ", "東京", "[MASK] x"]
    cycled = [short[i % len(short)] for i in range(len(texts))]
    # Both sides long, but not the longest text: the library's overflow bookkeeping for two
    # long sides grows with the product of their lengths over max_len.
    both = texts[: len(TEXTS) - 1] + texts[len(TEXTS) : len(TEXTS) + 8]
    first = texts + cycled + both + short
    second = cycled + texts + both[::-1] + short[::-1]
    ours = tokenizer.encode_pairs(first, second, max_len)
    theirs = ref(
        first, second, max_length=max_len, truncation="longest_first", padding="max_length"
    )
    assert_batch_equal(ours, theirs)
    assert ours["input_ids"].shape == (len(first), max_len)


def test_decode(tokenizer, ref, texts):
    rows = list(tokenizer.encode(texts, 64)["input_ids"])
    rows += list(tokenizer.encode_pairs(texts, texts[::-1], 48)["input_ids"])
    rows += tokenizer.tokenize(texts)
    rng = np.random.default_rng(0)
    rows += [rng.integers(0, tokenizer.vocab_size, n) for n in (1, 5, 40, 200)]
    cleanups = "i don ' t know . it ' s , we ' ve ! they ' re ? i ' m do not ' x ' n ' t"
    rows += tokenizer.tokenize([cleanups])
    for row in rows:
        assert tokenizer.decode(row) == ref.decode(list(row), skip_special_tokens=True), row
    assert tokenizer.decode([]) == ref.decode([], skip_special_tokens=True)


def test_convert_ids_to_tokens(tokenizer, ref, texts):
    ids = tokenizer.encode(texts[:6], 32)["input_ids"].ravel().tolist()
    ids += [0, 100, 101, 102, 103, 1, 999, 1000, 30521, 30522, 10**6]
    assert tokenizer.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
    row = tokenizer.encode(texts[:1], 16)["input_ids"][0]  # numpy int32 ids
    assert tokenizer.convert_ids_to_tokens(row) == ref.convert_ids_to_tokens(row.tolist())


def test_does_not_import_transformers():
    code = (
        "import sys\n"
        "from realm_jax.data.tokenization import shared_tokenizer\n"
        "tok = shared_tokenizer()\n"
        "tok.encode(['Café Müller founded Apple'], 16)\n"
        "tok.encode_pairs(['who?'], ['Apple'], 16)\n"
        "tok.decode(tok.tokenize(['hello world'])[0])\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != tokenization.VOCAB_ENV}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def fresh_shared_tokenizer():
    shared_tokenizer.cache_clear()
    yield shared_tokenizer
    shared_tokenizer.cache_clear()


def test_vocab_env(fresh_shared_tokenizer, monkeypatch, tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "founded", "apple", "?", "##s"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    monkeypatch.setenv(tokenization.VOCAB_ENV, str(path))
    tok = fresh_shared_tokenizer()
    assert tok.vocab_path == str(path) and tok.vocab_size == len(vocab)
    assert tok.tokenize(["Who founded Apples? Microsoft"]) == [[5, 6, 7, 9, 8, 1]]
    assert fresh_shared_tokenizer() is tok

    monkeypatch.delenv(tokenization.VOCAB_ENV)
    fresh_shared_tokenizer.cache_clear()
    assert fresh_shared_tokenizer().vocab_path == VOCAB_PATH


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_vocab_env_unreadable(fresh_shared_tokenizer, monkeypatch, tmp_path, kind):
    path = tmp_path / "vocab.txt"
    if kind == "directory":
        path.mkdir()
    monkeypatch.setenv(tokenization.VOCAB_ENV, str(path))
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(str(path))}: vocab file not found$"):
        fresh_shared_tokenizer()
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(str(path))}: vocab file not found$"):
        Tokenizer(str(path))
