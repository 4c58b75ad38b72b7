"""Open-QA scoring as in ORQA/REALM: normalised exact match, CuratedTrec regex match, recall@k.

Behaviour follows ``language/orqa/utils/eval_utils.py`` (google-research/language), which REALM's
Table 1 numbers were scored with, and DrQA's retriever evaluation for answer containment.

Answer regexes run on the ``regex`` package (as DrQA's ``has_answer`` does) so that each match
has a time limit, ``REGEX_TIMEOUT_S``: a pattern that backtracks past it on a text (e.g.
``(a+)+$``) counts as no match there and logs one warning naming it. A pattern is used only if
Python's ``re`` also compiles it, with the same flags (``regex.VERSION0``: ``re``'s semantics).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence

import regex

from realm_jax.errors import JsonlError
from realm_jax.utils.jsonl import iter_jsonl

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_REGEX_FLAGS = re.IGNORECASE | re.UNICODE | re.MULTILINE  # ORQA's regex_match_score
# The same flags for the `regex` package; VERSION0 is its re-compatible behaviour.
_ANSWER_REGEX_FLAGS = regex.IGNORECASE | regex.UNICODE | regex.MULTILINE | regex.VERSION0
# Seconds one answer pattern may run on one text (a match, a search, or a whole finditer scan).
REGEX_TIMEOUT_S = 0.1
_logger = logging.getLogger(__name__)


def normalize_answer(text: str) -> str:
    """Unicode NFD, lower case, drop ASCII punctuation, drop a|an|the, collapse whitespace.

    Same steps and order as ORQA's ``normalize_answer`` (DrQA's plus the NFD step). NFD only
    decomposes accents into base letter + combining mark; the marks are not punctuation and stay,
    so "Röntgen" (composed or decomposed) never equals "Rontgen". Only ``string.punctuation``
    (ASCII) is removed, so e.g. "–" (en dash) and "’" survive; articles are removed as whole
    words after punctuation, so "the-end" becomes "theend" and keeps its "the".
    """
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str]) -> bool:
    """Whether the normalised prediction equals any normalised reference (max over references).

    As in ORQA, two strings that normalise to "" (e.g. "The" and ".") match; with no references
    the answer is False (ORQA's ``max`` of an empty list would raise).
    """
    normalized = normalize_answer(prediction)
    return any(normalized == normalize_answer(ref) for ref in references)


@functools.lru_cache(maxsize=4096)
def _compile(pattern: str) -> regex.Pattern | None:
    """``pattern`` compiled with ORQA's flags, or None if ``re`` (or ``regex``) rejects it."""
    try:
        re.compile(pattern, _REGEX_FLAGS)
        return regex.compile(pattern, _ANSWER_REGEX_FLAGS)
    # re also refuses with ValueError ("(?a)" against re.UNICODE), OverflowError ("x{4294967296}")
    # and RecursionError (parentheses nested ~1000 deep).
    except (re.error, regex.error, ValueError, OverflowError, RecursionError) as e:
        _logger.warning("answer regex %r does not compile (%s: %s); it never matches",
                        pattern, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None


def _scan(pattern: str, text: str, how: str):
    """``regex.Pattern.<how>(text)`` (``finditer`` materialised as a list) under
    ``REGEX_TIMEOUT_S``; None for a pattern that does not compile or a scan that timed out."""
    compiled = _compile(pattern)
    if compiled is None:
        return None
    try:
        found = getattr(compiled, how)(text, timeout=REGEX_TIMEOUT_S)
        return list(found) if how == "finditer" else found
    except TimeoutError:
        _logger.warning(
            "answer regex %r ran over %g s on a %d-character text; counted as no match",
            pattern, REGEX_TIMEOUT_S, len(text),
        )
        return None


def regex_match(prediction: str, pattern: str) -> bool:
    """ORQA's ``regex_match_score``: ``pattern`` matches at the start of the raw prediction.

    ``re.match`` anchors at position 0 but not at the end, so "1809" matches "1809 AD" and not
    "in 1809"; the prediction is not normalised. A pattern Python cannot compile (one CuratedTrec
    train answer ends in a lone backslash) is never a match rather than an error; so is one that
    runs over ``REGEX_TIMEOUT_S`` (with a warning).
    """
    return _scan(pattern, prediction, "match") is not None


def regex_search(text: str, pattern: str) -> bool:
    """Whether ``pattern`` matches anywhere in ``text`` (ORQA's flags, ``REGEX_TIMEOUT_S``)."""
    return _scan(pattern, text, "search") is not None


def regex_spans(text: str, pattern: str) -> list[tuple[int, int]]:
    """Character ``(start, end)`` of each ``finditer`` match of ``pattern`` in ``text``.

    Empty for a pattern that does not compile, or whose whole scan runs over ``REGEX_TIMEOUT_S``
    (with a warning).
    """
    found = _scan(pattern, text, "finditer")
    return [] if found is None else [m.span() for m in found]


def is_correct(prediction: str, references: Sequence[str], is_regex: bool = False) -> bool:
    """ORQA's ``is_correct``: regex match (CuratedTrec) or exact match, max over references."""
    if is_regex:
        return any(regex_match(prediction, pattern) for pattern in references)
    return exact_match(prediction, references)


def _contains_tokens(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def has_answer(text: str, answers: Sequence[str], is_regex: bool = False) -> bool:
    """Whether a retrieved block contains any answer (DrQA/DPR ``has_answer`` style).

    Strings: the answer's normalised tokens occur as a contiguous run of the block's normalised
    tokens (whole words, so "art" is not found in "smart"); an answer that normalises to nothing
    is never found. Regexes: ``regex_search`` anywhere in the raw block text with ORQA's flags
    (as DrQA, with the ``regex`` package); an uncompilable or timed-out pattern is not found.
    """
    if is_regex:
        return any(regex_search(text, pattern) for pattern in answers)
    block_tokens = normalize_answer(text).split()
    for answer in answers:
        answer_tokens = normalize_answer(answer).split()
        if answer_tokens and _contains_tokens(block_tokens, answer_tokens):
            return True
    return False


def recall_at_k(
    retrieved: Sequence[Sequence[str]],
    answers: Sequence[Sequence[str]],
    k: int,
    is_regex: bool = False,
) -> float:
    """Fraction of questions whose top-``k`` retrieved blocks contain an answer.

    Args:
      retrieved: per question, block texts ranked best first (``[num_questions][>= k]``); a
        question with fewer than ``k`` blocks is scored on what it has.
      answers: per question, its reference answers (strings, or regexes if ``is_regex``).
    """
    if len(retrieved) != len(answers):
        raise ValueError(f"{len(retrieved)} retrieval lists but {len(answers)} answer lists")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not answers:
        return 0.0
    hits = sum(
        any(has_answer(block, refs, is_regex) for block in blocks[:k])
        for blocks, refs in zip(retrieved, answers, strict=True)
    )
    return hits / len(answers)


def evaluate_predictions(
    references: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    is_regex: bool = False,
) -> dict[str, float | int]:
    """ORQA's ``evaluate_predictions_impl``: accuracy over references keyed by question text.

    A reference without a prediction counts as wrong; predictions for unknown questions are
    ignored. Returns ``exact_match`` in percent, ``n`` (references), ``num_correct``,
    ``missing_predictions`` and ``unknown_predictions`` (predictions no reference asks for).
    """
    correct = 0
    missing = 0
    for question, refs in references.items():
        if question in predictions:
            correct += is_correct(predictions[question], refs, is_regex)
        else:
            missing += 1
    n = len(references)
    return {
        "exact_match": 100.0 * correct / n if n else 0.0,
        "n": n,
        "num_correct": correct,
        "missing_predictions": missing,
        "unknown_predictions": sum(question not in references for question in predictions),
    }


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def read_references(path: str | os.PathLike) -> dict[str, list[str]]:
    """Reads ``{question, answer: [...]}`` lines into ``{question: answers}``.

    Like ORQA, references are keyed by question text and a repeated question keeps its last
    line (CuratedTrec test has 694 lines and 693 distinct questions, so ``n`` is 693).
    """
    references: dict[str, list[str]] = {}
    for line_no, record in iter_jsonl(path, ("question", "answer")):
        if not isinstance(record["question"], str):
            raise JsonlError(path, line_no, "field 'question' must be a string")
        if not _is_str_list(record["answer"]):
            raise JsonlError(path, line_no, "field 'answer' must be a non-empty list of strings")
        references[record["question"]] = record["answer"]
    return references


def read_predictions(path: str | os.PathLike) -> dict[str, str]:
    """Reads ``{question, prediction}`` lines into ``{question: prediction}``; of a question
    predicted twice the last line counts, as in ORQA, with one warning naming the first repeat."""
    predictions: dict[str, str] = {}
    repeats: list[int] = []
    for line_no, record in iter_jsonl(path, ("question", "prediction")):
        question, prediction = record["question"], record["prediction"]
        if not isinstance(question, str) or not isinstance(prediction, str):
            raise JsonlError(path, line_no, "fields 'question' and 'prediction' must be strings")
        if question in predictions:
            repeats.append(line_no)
        predictions[question] = prediction
    if repeats:
        _logger.warning("%s:%d: %d line(s) repeat a question predicted before; the last "
                        "prediction of each question counts", path, repeats[0], len(repeats))
    return predictions


def evaluate_prediction_files(
    predictions_path: str | os.PathLike,
    references_path: str | os.PathLike,
    is_regex: bool = False,
) -> dict[str, float | int]:
    """Scores a predictions jsonl against a references jsonl (see ``evaluate_predictions``)."""
    references = read_references(references_path)
    predictions = read_predictions(predictions_path)
    return evaluate_predictions(references, predictions, is_regex)
