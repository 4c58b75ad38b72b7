"""Properties of open-QA scoring (hypothesis): SQuAD/ORQA normalisation, exact match, answer
containment, and CuratedTrec regex answers (scoring and reader gold spans) for any pattern.

Examples a property: the hypothesis profile (conftest: 200 in CI, 100 otherwise).
"""

import re
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from realm_jax.data.pretraining import find_regex_spans
from realm_jax.data.questions import read_questions
from realm_jax.evaluation import (
    exact_match,
    has_answer,
    is_correct,
    normalize_answer,
    recall_at_k,
    regex_match,
)

# re warns about "[[" (a nested set in future versions); such patterns are valid inputs here.
pytestmark = pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
FLAGS = re.IGNORECASE | re.UNICODE | re.MULTILINE

# Text with what normalisation acts on: articles, ASCII and other punctuation, accents (composed
# and decomposed), case pairs that are not 1:1, and Unicode spaces.
_pieces = st.sampled_from([
    "the", "The", "a", "an", "An", "t", "he", "n", " ", "  ", "\t", "\n", "\u00a0", "\u2003", "-",
    ".", "'", "’", "–", "(", ")", "Röntgen", "Ro\u0308ntgen", "İ", "ß", "ẞ", "Σ", "ΑΣ", "ǅ",
    "ﬁ", "Ⅻ", "x", "1809",
])
answer_text = st.one_of(st.text(max_size=30), st.lists(_pieces, max_size=10).map("".join))

CT_ANSWERS = sorted({
    a for split in ("train", "dev", "test") for r in read_questions("ct", split)
    for a in r["answers"]
})
# Regex-like pieces: CuratedTrec's own answers cut anywhere, and tokens that stress re.compile.
_regex_tokens = st.sampled_from([
    "a", "B", "1", " ", ".", "\\d", "\\s", "\\b", "\\", "(", ")", "[", "]", "{", "}", "*", "+",
    "?", "|", "^", "$", "{2}", "{2,1}", "{4294967296}", "(?a)", "(?u)", "(?L)", "(?i)", "(?x)",
    "(?P<g>", "(?P=g)", "\\1", "(?<=a)", "(?=", "\\N{", "\\x", "\\u12", "#", "(?#", "[^", "[z-a]",
])
_ct_cuts = st.tuples(st.sampled_from(CT_ANSWERS), st.integers(0, 80), st.integers(0, 80)).map(
    lambda t: t[0][min(t[1], t[2]) : max(t[1], t[2])]
)
patterns = st.one_of(
    st.sampled_from(CT_ANSWERS),
    _ct_cuts,
    st.lists(_regex_tokens, max_size=10).map("".join),
    st.text(max_size=10),
)
short_text = st.text(max_size=8)  # kept short: some patterns backtrack exponentially


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern, FLAGS)
    except Exception:  # whatever re refuses is an invalid answer pattern
        return False
    return True


@given(answer_text)
@example("ǅ")
@example("t.he")  # punctuation goes first, so this is the article "the"
@example("the-end")
@example("the the a")
@example("a-the")
def test_normalize_is_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once
    assert once == once.strip() and "  " not in once
    # ASCII punctuation is dropped before articles are looked for. (Lower-casing comes first and
    # is context-free but for a capital sigma: "A;Σ" gives "aσ" and "AΣ" gives "aς".)
    if "Σ" not in text:
        assert normalize_answer("".join(c for c in text if c not in string.punctuation)) == once


@given(answer_text)
def test_exact_match_ignores_case_articles_punctuation_and_spacing(text):
    assert exact_match(text, [text])
    assert exact_match(text, ["The " + text + "  ."])
    assert exact_match(text, ["x", text]) and not exact_match(text, [])
    assert exact_match(text, ["!"]) == (normalize_answer(text) == "")


@given(before=answer_text, answer=answer_text, after=answer_text)
def test_a_block_holding_an_answer_contains_it(before, answer, after):
    block = f"{before} {answer} {after}"
    assert has_answer(block, [answer]) == bool(normalize_answer(answer))
    if normalize_answer(answer):
        assert recall_at_k([[before, block]], [["\x00never", answer]], k=2) == 1.0


@given(prediction=short_text, pattern=patterns)
@example(prediction="x", pattern="(?a)x")  # inline ASCII with the UNICODE flag: ValueError
@example(prediction="x", pattern="x{4294967296}")  # repeat count too large: OverflowError
@example(prediction="x", pattern="(" * 2000 + "x" + ")" * 2000)
@example(prediction="x", pattern="x\\")  # the CuratedTrec train answer ending in a backslash
def test_any_pattern_scores_without_raising(prediction, pattern):
    got = regex_match(prediction, pattern)
    assert isinstance(got, bool)
    expected = _compiles(pattern) and re.match(pattern, prediction, FLAGS) is not None
    assert got == expected
    assert is_correct(prediction, [pattern], is_regex=True) == got
    assert has_answer(prediction, [pattern], is_regex=True) == (
        _compiles(pattern) and re.search(pattern, prediction, FLAGS) is not None
    )
    assert 0.0 <= recall_at_k([[prediction]], [[pattern]], k=1, is_regex=True) <= 1.0


@given(literal=short_text, tail=short_text, junk=patterns)
def test_a_literal_pattern_matches_at_the_start_only(literal, tail, junk):
    pattern = re.escape(literal)
    assert regex_match(literal + tail, pattern)
    assert is_correct(literal + tail, [junk, pattern], is_regex=True)
    assert has_answer(tail + literal + tail, [junk, pattern], is_regex=True)
    if literal and "\x00" not in literal:  # anchored at the start: not found one character on
        assert not regex_match("\x00" + literal, pattern)
        assert has_answer("\x00" + literal, [pattern], is_regex=True)


def _word_offsets(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]


@given(text=short_text, more=st.lists(patterns, max_size=3))
@example(text="x", more=["(?a)x", "x{4294967296}", "x\\"])
def test_regex_gold_spans_never_raise_and_stay_in_the_block(text, more):
    offsets = _word_offsets(text)
    spans = find_regex_spans(text, offsets, more)
    assert spans == sorted(set(spans))
    assert all(0 <= s <= e < len(offsets) for s, e in spans)


@given(before=short_text, word=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), after=short_text,
       more=st.lists(patterns, max_size=2))
def test_a_regex_answer_in_the_block_gets_a_gold_span(before, word, after, more):
    text = f"{before} {word} {after}"
    offsets = _word_offsets(text)
    spans = find_regex_spans(text, offsets, [*more, re.escape(word)])
    at = len(before) + 1
    first = next(i for i, (s, e) in enumerate(offsets) if e > at)
    assert any(s <= first <= e for s, e in spans)
