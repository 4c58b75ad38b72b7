"""The one tokenizer wrapper: BERT uncased WordPiece (the ``tokenizers`` library) to fixed-length
int32.

Ids, offsets and decoded text are those of ``transformers.BertTokenizerFast`` over the same vocab
file (``tests/data/test_tokenization_parity.py`` checks this); ``transformers`` is not imported.

Vocab: the packaged BERT-base uncased vocab, or the file passed as ``vocab_path``.
``shared_tokenizer()`` reads the file named by the environment variable ``REALM_JAX_VOCAB`` when it
is set (and non-empty). A missing or unreadable vocab file raises ``FileNotFoundError``; one that
is not UTF-8 or has no ``[UNK]`` line, ``ConfigError``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np
from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as _Backend
from tokenizers.models import WordPiece

from realm_jax.errors import ConfigError

VOCAB_PATH = os.path.join(os.path.dirname(__file__), "vocab", "bert_uncased_vocab.txt")
VOCAB_ENV = "REALM_JAX_VOCAB"  # environment variable: the vocab file of ``shared_tokenizer()``

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"

# The text clean-up ``transformers`` applies after decoding (``clean_up_tokenization``), in order.
_CLEANUPS = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def load_vocab(vocab_path: str) -> dict[str, int]:
    """Token -> id, one token a line (as BERT reads it: a repeated token keeps its last line)."""
    try:
        with open(vocab_path, encoding="utf-8") as f:
            lines = f.readlines()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        raise FileNotFoundError(f"{vocab_path}: vocab file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{vocab_path}: not a WordPiece vocab (not UTF-8: {e.reason})") from None
    vocab = {line.rstrip("\n"): i for i, line in enumerate(lines)}
    if UNK not in vocab:
        raise ConfigError(f"{vocab_path}: not a WordPiece vocab (no {UNK} line)")
    return vocab


def _backend(vocab: dict[str, int], do_lower_case: bool) -> _Backend:
    """WordPiece with BERT's normalizer, pre-tokenizer, special tokens, template and decoder."""
    tok = _Backend(WordPiece(vocab, unk_token=UNK, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=do_lower_case
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Tokens missing from the vocab get new ids, in the order BERT adds them.
    tok.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t in (UNK, SEP, PAD, CLS, MASK)]
    )
    cls_id, sep_id = tok.token_to_id(CLS), tok.token_to_id(SEP)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS}:0 $A:0 {SEP}:0",
        pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok


class Tokenizer:
    """BERT uncased WordPiece over a vocab file (default: the packaged BERT-base uncased vocab).

    ``encode`` / ``encode_pairs`` return ``input_ids``, ``input_mask``, ``token_type_ids`` as int32
    ``[batch, max_len]`` arrays, truncated and padded to ``max_len``.
    """

    def __init__(self, vocab_path: str = VOCAB_PATH, do_lower_case: bool = True):
        if not os.path.isfile(vocab_path):
            raise FileNotFoundError(f"{vocab_path}: vocab file not found")
        self.vocab_path = vocab_path
        self._vocab, self._do_lower_case = load_vocab(vocab_path), do_lower_case
        self._tok = _backend(self._vocab, do_lower_case)
        self._fixed: dict[int, _Backend] = {}  # max_len -> a copy that truncates and pads to it
        self.pad_id = self._tok.token_to_id(PAD)
        self.cls_id = self._tok.token_to_id(CLS)
        self.sep_id = self._tok.token_to_id(SEP)
        self.mask_id = self._tok.token_to_id(MASK)
        self.unk_id = self._tok.token_to_id(UNK)
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Wordpiece ids of each text, without special tokens and without truncation."""
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def tokenize_with_offsets(
        self, texts: Sequence[str]
    ) -> tuple[list[list[int]], list[list[tuple]]]:
        """Wordpiece ids and their (start, end) character offsets in each text."""
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encs], [e.offsets for e in encs]

    def _fixed_length(self, max_len: int) -> _Backend:
        """The backend that truncates (longest side first) and pads every encoding to max_len."""
        tok = self._fixed.get(max_len)
        if tok is None:  # threads racing here build equal backends; either one is kept
            tok = _backend(self._vocab, self._do_lower_case)
            tok.enable_truncation(max_len, stride=0, strategy="longest_first")
            tok.enable_padding(
                direction="right", pad_id=self.pad_id, pad_type_id=0, pad_token=PAD, length=max_len
            )
            self._fixed[max_len] = tok
        return tok

    def _arrays(self, inputs: list, max_len: int) -> dict[str, np.ndarray]:
        encs = self._fixed_length(max_len).encode_batch(inputs)

        def stack(rows: list[list[int]]) -> np.ndarray:
            return np.array(rows, np.int32) if rows else np.zeros((0, max_len), np.int32)

        return {
            "input_ids": stack([e.ids for e in encs]),
            "input_mask": stack([e.attention_mask for e in encs]),
            "token_type_ids": stack([e.type_ids for e in encs]),
        }

    def encode(self, texts: Sequence[str], max_len: int) -> dict[str, np.ndarray]:
        """``[CLS] text [SEP]`` for each text -> int32 arrays ``[batch, max_len]``."""
        return self._arrays(list(texts), max_len)

    def encode_pairs(
        self, first: Sequence[str], second: Sequence[str], max_len: int
    ) -> dict[str, np.ndarray]:
        """``[CLS] a [SEP] b [SEP]`` (token types 0 then 1), truncating the longer side first."""
        if len(first) != len(second):
            raise ValueError(
                f"encode_pairs: {len(first)} first texts but {len(second)} second texts"
            )
        return self._arrays(list(zip(first, second, strict=True)), max_len)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of wordpiece ids, special tokens and padding dropped."""
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=True)
        for old, new in _CLEANUPS:
            text = text.replace(old, new)
        return text

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        """The vocab entry of each id (``None`` for an id outside the vocab)."""
        return [self._tok.id_to_token(int(i)) for i in ids]


def vocab_path() -> str:
    """``$REALM_JAX_VOCAB`` if set, else the packaged vocab: the file ``shared_tokenizer`` reads."""
    return os.environ.get(VOCAB_ENV) or VOCAB_PATH


@functools.cache
def shared_tokenizer() -> Tokenizer:
    """The ``Tokenizer`` of ``$REALM_JAX_VOCAB`` (default: the packaged vocab), loaded once per
    process."""
    return Tokenizer(vocab_path())
