import os

import numpy as np
from transformers import BertTokenizerFast

from realm_jax.assets import minilm_dir
from realm_jax.data.tokenization import Tokenizer


def test_special_ids(tokenizer):
    assert (
        tokenizer.pad_id,
        tokenizer.unk_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
        tokenizer.mask_id,
    ) == (0, 100, 101, 102, 103)
    assert tokenizer.vocab_size == 30522


def test_encode_fixed_shape(tokenizer, passages32):
    texts = [p["text"] for p in passages32[:4]] + ["Hi"]
    b = tokenizer.encode(texts, 16)
    for v in b.values():
        assert v.shape == (5, 16) and v.dtype == np.int32
    assert (b["input_ids"][:, 0] == 101).all()
    assert b["input_ids"][0, 15] == 102  # truncated texts still end in [SEP]
    assert list(b["input_mask"][4]) == [1, 1, 1] + [0] * 13
    assert (b["input_ids"][4, 3:] == 0).all() and (b["token_type_ids"] == 0).all()


def test_encode_pairs(tokenizer):
    b = tokenizer.encode_pairs(["who founded [MASK]?"], ["Apple was founded by Steve Jobs."], 32)
    ids, tt = b["input_ids"][0], b["token_type_ids"][0]
    seps = np.flatnonzero(ids == 102)
    assert len(seps) == 2 and tokenizer.mask_id in ids
    assert (tt[: seps[0] + 1] == 0).all() and (tt[seps[0] + 1 : seps[1] + 1] == 1).all()
    assert tokenizer.decode(ids) == "who founded? apple was founded by steve jobs."


def test_matches_minilm_tokenizer(tokenizer, passages32):
    """Our packaged vocab tokenizes exactly as the MiniLM package's own tokenizer."""
    ref = BertTokenizerFast.from_pretrained(minilm_dir())
    texts = [p["text"] for p in passages32] + ["Café naïve résumé – 24–10, Levi's"]
    assert tokenizer.tokenize(texts) == ref(texts, add_special_tokens=False)["input_ids"]


def test_offsets(tokenizer):
    ids, offs = tokenizer.tokenize_with_offsets(["Denver Broncos won"])
    assert len(ids[0]) == len(offs[0]) and offs[0][0] == (0, 6)


def test_missing_vocab(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="vocab.txt: vocab file not found"):
        Tokenizer(os.path.join(tmp_path, "vocab.txt"))


def test_a_vocab_that_is_not_one_is_one_line_naming_it(tmp_path):
    """An empty file, one without [UNK], and bytes that are not UTF-8: a ConfigError naming the
    file (the CLI's one `error:` line), not the tokenizers library's exception."""
    import pytest

    from realm_jax.errors import ConfigError

    cases = {"empty.txt": b"", "no_unk.txt": b"[PAD]\nthe\n", "latin1.txt": b"caf\xe9\n[UNK]\n"}
    reasons = {"empty.txt": r"no \[UNK\] line", "no_unk.txt": r"no \[UNK\] line",
               "latin1.txt": "not UTF-8"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        expected = f"{name}: not a WordPiece vocab \\(.*{reasons[name]}"
        with pytest.raises(ConfigError, match=expected):
            Tokenizer(str(path))
    path = tmp_path / "minimal.txt"
    path.write_text("[UNK]\nthe\n")  # the smallest vocab it accepts still tokenizes
    assert Tokenizer(str(path)).tokenize(["the cat"]) == [[1, 0]]
