"""Answer regexes run on the regex package with a time limit: a pattern that backtracks without
end is no match (one warning naming it), and every CuratedTrec pattern behaves as under re."""

import json
import logging
import os
import re
import time

import pytest

from realm_jax import evaluation
from realm_jax.data.pretraining import find_regex_spans

CURATEDTREC = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "realm_jax",
    "data",
    "openqa_files",
    "curatedtrec",
)
FLAGS = re.IGNORECASE | re.UNICODE | re.MULTILINE
# Nested quantifiers over a text that fails only at its end: re tries every way to split the
# 40 a's between the groups (about 2**40 paths), which takes hours. The regex package cuts the
# first short by itself; the second runs until REGEX_TIMEOUT_S stops it.
PATHOLOGICAL = ["(a+)+$", "(a|aa)+$"]
TEXT = "a" * 40 + "b"


def _offsets(text: str) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(len(text))]  # one wordpiece per character


@pytest.mark.parametrize("pattern", PATHOLOGICAL)
def test_pathological_regex_is_no_match_within_seconds(caplog, pattern):
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger=evaluation.__name__):
        assert not evaluation.regex_match(TEXT, pattern)
        assert not evaluation.has_answer(TEXT, [pattern], is_regex=True)
        assert evaluation.is_correct(TEXT, [pattern, "a{40}"], is_regex=True)
        assert find_regex_spans(TEXT, _offsets(TEXT), [pattern]) == []
    # Four scans, each stopped at REGEX_TIMEOUT_S (0.1 s) if it runs on; 5 s leaves room for a
    # loaded machine while an unlimited scan would take hours.
    assert time.monotonic() - start < 5
    for record in caplog.records:
        assert record.levelno == logging.WARNING and repr(pattern) in record.getMessage()
        assert "\n" not in record.getMessage()


def test_a_timeout_logs_one_warning_naming_the_pattern(caplog, monkeypatch):
    monkeypatch.setattr(evaluation, "REGEX_TIMEOUT_S", 0.01)
    pattern = "(a|aa)+$"  # no shortcut in the regex package: it runs to the limit
    with caplog.at_level(logging.WARNING, logger=evaluation.__name__):
        assert not evaluation.regex_match(TEXT, pattern)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert repr(pattern) in message and "counted as no match" in message
    assert evaluation.regex_match("aaaa", pattern)  # the limit applies per text


def _curatedtrec_rows() -> list[dict]:
    rows = []
    for name in sorted(os.listdir(CURATEDTREC)):
        if name.endswith(".jsonl"):
            with open(os.path.join(CURATEDTREC, name), encoding="utf-8") as f:
                rows += [json.loads(line) for line in f]
    return rows


def test_curatedtrec_patterns_behave_as_under_re(monkeypatch):
    """Every answer pattern: compiles iff re compiles it, and matches where re matches, on its
    own question and answers and on a shared sample of CuratedTrec lines."""
    monkeypatch.setattr(evaluation, "REGEX_TIMEOUT_S", 30.0)  # semantics here, not time
    rows = _curatedtrec_rows()
    lines = [text for row in rows[::20] for text in (row["question"], *row["answer"])]
    corpus = "\n".join(lines)  # about 10 kB: every pattern scans it under both engines
    checked = set()
    for row in rows:
        for pattern in set(row["answer"]) - checked:
            checked.add(pattern)
            try:
                expected = re.compile(pattern, FLAGS)
            except re.error:
                assert evaluation._compile(pattern) is None
                assert evaluation.regex_spans(corpus, pattern) == []
                continue
            for text in (row["question"], *row["answer"], corpus):
                spans = [m.span() for m in expected.finditer(text)]
                assert evaluation.regex_spans(text, pattern) == spans, pattern
                assert evaluation.regex_search(text, pattern) == bool(spans), pattern
                assert evaluation.regex_match(text, pattern) == bool(expected.match(text)), pattern
    assert len(checked) > 1900
