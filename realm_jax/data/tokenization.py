"""The one tokenizer wrapper: BERT uncased WordPiece (fast tokenizer) to fixed-length int32."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import numpy as np

VOCAB_PATH = os.path.join(os.path.dirname(__file__), "vocab", "bert_uncased_vocab.txt")


class Tokenizer:
    """BERT uncased WordPiece over a vocab file (default: the packaged BERT-base uncased vocab).

    ``encode`` / ``encode_pairs`` return ``input_ids``, ``input_mask``, ``token_type_ids`` as int32
    ``[batch, max_len]`` arrays, truncated and padded to ``max_len``.
    """

    def __init__(self, vocab_path: str = VOCAB_PATH, do_lower_case: bool = True):
        from transformers import BertTokenizerFast

        if not os.path.isfile(vocab_path):
            raise FileNotFoundError(f"{vocab_path}: vocab file not found")
        self.vocab_path = vocab_path
        self._tok = BertTokenizerFast(vocab_file=vocab_path, do_lower_case=do_lower_case)
        self.pad_id = self._tok.pad_token_id
        self.cls_id = self._tok.cls_token_id
        self.sep_id = self._tok.sep_token_id
        self.mask_id = self._tok.mask_token_id
        self.unk_id = self._tok.unk_token_id
        self.vocab_size = len(self._tok)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Wordpiece ids of each text, without special tokens and without truncation."""
        return self._tok(list(texts), add_special_tokens=False)["input_ids"]

    def tokenize_with_offsets(
        self, texts: Sequence[str]
    ) -> tuple[list[list[int]], list[list[tuple]]]:
        """Wordpiece ids and their (start, end) character offsets in each text."""
        enc = self._tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]

    def _arrays(self, enc) -> dict[str, np.ndarray]:
        return {
            "input_ids": np.asarray(enc["input_ids"], np.int32),
            "input_mask": np.asarray(enc["attention_mask"], np.int32),
            "token_type_ids": np.asarray(enc["token_type_ids"], np.int32),
        }

    def encode(self, texts: Sequence[str], max_len: int) -> dict[str, np.ndarray]:
        """``[CLS] text [SEP]`` for each text -> int32 arrays ``[batch, max_len]``."""
        enc = self._tok(list(texts), max_length=max_len, truncation=True, padding="max_length")
        return self._arrays(enc)

    def encode_pairs(
        self, first: Sequence[str], second: Sequence[str], max_len: int
    ) -> dict[str, np.ndarray]:
        """``[CLS] a [SEP] b [SEP]`` (token types 0 then 1), truncating the longer side first."""
        if len(first) != len(second):
            raise ValueError(
                f"encode_pairs: {len(first)} first texts but {len(second)} second texts"
            )
        enc = self._tok(
            list(first),
            list(second),
            max_length=max_len,
            truncation="longest_first",
            padding="max_length",
        )
        return self._arrays(enc)

    def decode(self, ids: Sequence[int]) -> str:
        """Text of wordpiece ids, special tokens and padding dropped."""
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return self._tok.convert_ids_to_tokens(list(ids))


@functools.cache
def shared_tokenizer() -> Tokenizer:
    """The packaged vocab's ``Tokenizer``, loaded once per process (~1 s to load)."""
    return Tokenizer()
