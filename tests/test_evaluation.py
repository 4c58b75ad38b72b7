"""Scoring matches ORQA's eval_utils (normalised EM, CuratedTrec regex match) and recall@k."""

import json
import os
import re
import unicodedata

import pytest

from realm_jax import evaluation
from realm_jax.errors import JsonlError

CURATEDTREC_TRAIN = os.path.join(
    os.path.dirname(evaluation.__file__),
    "data",
    "openqa_files",
    "curatedtrec",
    "CuratedTrec.resplit.train.jsonl",
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Beatles", "beatles"),
        ("an apple a day", "apple day"),
        ("Theatre of the Absurd", "theatre of absurd"),  # "the" only as a whole word
        ("U.S.A.", "usa"),
        ("Bob's  \t burgers\n!", "bobs burgers"),
        ("the-end", "theend"),  # punctuation goes first, so this "the" is no longer a word
        ("1939–1945", "1939–1945"),  # en dash is not ASCII punctuation: ORQA keeps it
        ("  ", ""),
    ],
)
def test_normalize_answer(text, expected):
    assert evaluation.normalize_answer(text) == expected


def test_unicode_accents_are_decomposed_not_removed():
    composed = unicodedata.normalize("NFC", "Wilhelm Röntgen")
    decomposed = unicodedata.normalize("NFD", "Wilhelm Röntgen")
    assert composed != decomposed
    assert evaluation.normalize_answer(composed) == evaluation.normalize_answer(decomposed)
    assert evaluation.exact_match(decomposed, [composed])
    # NFD keeps the combining mark, so the unaccented spelling is a different answer in ORQA.
    assert not evaluation.exact_match("Wilhelm Rontgen", [composed])
    assert evaluation.exact_match("PADMÉ AMIDALA", ["Padmé Amidala"])


def test_exact_match_is_max_over_references():
    refs = ["14 December 1972 UTC", "December 1972"]
    assert evaluation.exact_match("december, 1972", refs)
    assert evaluation.exact_match("14 December 1972 UTC.", refs)
    assert not evaluation.exact_match("1972", refs)
    assert not evaluation.exact_match("anything", [])
    # Both sides normalise to "": ORQA counts this as a match.
    assert evaluation.exact_match("The", ["."])


def test_regex_match_is_anchored_at_start_case_insensitive_and_raw():
    pattern = "Sept?(ember)?|Feb(ruary)?"  # CuratedTrec train, "When is Fashion week in NYC?"
    assert evaluation.regex_match("September and February", pattern)
    assert evaluation.regex_match("FEB", pattern)
    assert not evaluation.regex_match("in September", pattern)  # match(), not search()
    assert evaluation.regex_match("1809 AD", "1809|Feb(ruary|\\.?) 12")  # not a full match
    # The raw prediction is used: no normalisation removes the comma or the "the".
    assert evaluation.regex_match("5,778 K", r"(5,?778|6,?[05]00)\s*K")
    assert not evaluation.regex_match("the Crimean War", "Crimean")
    assert evaluation.is_correct("crimean war", ["Crimean"], is_regex=True)
    assert not evaluation.is_correct("Crimean", ["Crimean War"], is_regex=True)


def test_uncompilable_curatedtrec_regex_is_never_a_match():
    with open(CURATEDTREC_TRAIN, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    (row,) = [r for r in rows if r["question"] == "What is measured in curies?"]
    (pattern,) = row["answer"]
    with pytest.raises(re.error):
        re.compile(pattern)
    # "radioactivity" is one of its alternatives; ORQA still scores it False.
    assert not evaluation.regex_match("radioactivity", pattern)
    assert not evaluation.is_correct("radioactivity", row["answer"], is_regex=True)
    assert not evaluation.has_answer("Curies measure radioactivity.", row["answer"], is_regex=True)
    # Other references of the same question are still tried.
    assert evaluation.is_correct("radioactivity", [pattern, "radio"], is_regex=True)


def test_has_answer_strings_are_whole_normalised_tokens():
    block = "The Beatles were an English rock band formed in Liverpool in 1960."
    assert evaluation.has_answer(block, ["the beatles"])
    assert evaluation.has_answer(block, ["Liverpool, 1960"]) is False  # "in" sits between
    assert evaluation.has_answer(block, ["Liverpool in 1960"])
    assert not evaluation.has_answer(block, ["pool"])  # only whole words
    assert not evaluation.has_answer(block, ["the"])  # normalises to nothing
    assert evaluation.has_answer("Wilhelm Röntgen won.", [unicodedata.normalize("NFD", "Röntgen")])


def test_has_answer_regex_searches_anywhere():
    assert evaluation.has_answer("It took place in September.", ["Sept?(ember)?"], is_regex=True)
    assert not evaluation.has_answer("It took place in May.", ["Sept?(ember)?"], is_regex=True)


def test_recall_at_k():
    retrieved = [
        ["nothing here", "Paris is the capital of France"],
        ["Berlin is in Germany", "unrelated"],
        ["no", "no", "no"],
    ]
    answers = [["Paris"], ["Berlin"], ["Rome"]]
    assert evaluation.recall_at_k(retrieved, answers, k=1) == pytest.approx(1 / 3)
    assert evaluation.recall_at_k(retrieved, answers, k=2) == pytest.approx(2 / 3)
    assert evaluation.recall_at_k(retrieved, answers, k=10) == pytest.approx(2 / 3)
    regex_answers = [["Par(is)?"], ["Ber"], ["Rom"]]
    assert evaluation.recall_at_k(retrieved, regex_answers, k=1, is_regex=True) == pytest.approx(
        1 / 3
    )
    with pytest.raises(ValueError):
        evaluation.recall_at_k(retrieved, answers[:2], k=1)
    with pytest.raises(ValueError):
        evaluation.recall_at_k(retrieved, answers, k=0)


def test_evaluate_predictions_missing_prediction_counts_as_wrong():
    references = {"q1": ["The Beatles"], "q2": ["Paris"], "q3": ["Rome"]}
    predictions = {"q1": "beatles", "q2": "London", "unknown": "x"}
    metrics = evaluation.evaluate_predictions(references, predictions)
    assert metrics == {
        "exact_match": pytest.approx(100 / 3),
        "n": 3,
        "num_correct": 1,
        "missing_predictions": 1,
        "unknown_predictions": 1,  # "unknown": counted, not scored
    }


def test_read_references_keeps_last_duplicate_and_checks_types(tmp_path):
    path = tmp_path / "refs.jsonl"
    path.write_text(
        '{"question": "q", "answer": ["old"]}\n{"question": "q", "answer": ["new"]}\n',
        encoding="utf-8",
    )
    assert evaluation.read_references(path) == {"q": ["new"]}
    path.write_text('{"question": "q", "answer": ["a"]}\n{"question": "r", "answer": "b"}\n')
    with pytest.raises(JsonlError, match=r"refs\.jsonl:2: field 'answer'"):
        evaluation.read_references(path)


def test_pipeline_scores_are_the_per_question_means_and_match_orqa_em():
    from realm_jax.openqa.answerer import per_question_scores, score_predictions

    rows = [
        {"question": "q1", "answers": ["Paris"]},
        {"question": "q2", "answers": ["1855"]},
        {"question": "q3", "answers": ["old"]},
        {"question": "q3", "answers": ["Rome"]},  # repeated: the last answers count
        {"question": "q4", "answers": ["x"]},  # no prediction: wrong
    ]
    evidence = lambda *texts: [{"text": t} for t in texts]
    predictions = [
        {"question": "q1", "prediction": "paris", "evidence": evidence("b", "Paris, France")},
        {"question": "q2", "prediction": "1854", "evidence": evidence(*"abcde", "in 1855")},
        {"question": "q3", "prediction": "Rome", "evidence": evidence("old Rome")},
        {"question": "other", "prediction": "y", "evidence": []},  # not a row: ignored
    ]
    records = per_question_scores(rows, predictions)
    assert [(r["question"], r["correct"], r["gold_in_top5"]) for r in records] == [
        ("q1", True, True), ("q2", False, False), ("q3", True, True), ("q4", False, False)
    ]  # q2's answer is the 6th evidence block: outside the top 5
    scores = score_predictions(rows, predictions)
    assert scores == {"exact_match": 50.0, "recall_at_5": 50.0, "n": 4}
    references = {r["question"]: r["answers"] for r in rows}
    orqa = evaluation.evaluate_predictions(references, {p["question"]: p["prediction"]
                                                        for p in predictions})
    assert (orqa["exact_match"], orqa["n"]) == (scores["exact_match"], scores["n"])
