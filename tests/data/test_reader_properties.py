"""Properties of the corpus and question file readers (hypothesis): any file gives exactly the
well-typed rows, or one ``file:line`` JsonlError at the first line a reader must refuse.

Examples a property: the hypothesis profile (conftest: 200 in CI, 100 otherwise).
"""

import json

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from ml_collections import ConfigDict

from realm_jax.data.documents import iter_jsonl_documents
from realm_jax.data.input_pipeline import corpus_documents, load_questions
from realm_jax.data.questions import NO_GOLD_PASSAGE, iter_rows
from realm_jax.errors import USER_ERRORS, JsonlError
from realm_jax.evaluation import read_predictions, read_references
from realm_jax.openqa.predict import read_question_file
from tests import strategies

json_values = strategies.json_values(8, 3, 8)
text = st.text(max_size=16)
ids = st.integers(-1, 5)
GOOD = {
    "id": ids, "title": text, "text": text, "question": text,
    "answer": st.lists(text, max_size=3), "gold_passage_id": ids, "prediction": text,
}
# Mostly well-typed fields, sometimes any JSON value (a string answer, a float id, a list title...).
_field = {name: st.one_of(good, good, json_values) for name, good in GOOD.items()}
records = st.one_of(
    st.fixed_dictionaries({"title": text, "text": text}, optional={"id": ids}),
    st.fixed_dictionaries(
        {"question": text, "answer": GOOD["answer"]}, optional={"gold_passage_id": ids}
    ),
    st.fixed_dictionaries({}, optional=_field),
)
# Lines refused before any field is looked at.
bad_lines = st.sampled_from([
    b"\xff", b"caf\xe9", b"{", b"[1]", b"null", b'"title"', b"{} {}",
    b'{"title": "\\ud800", "text": "", "question": "\\ud800", "answer": []}',
    b'{"id": ' + b"1" * 4400 + b', "title": "", "text": ""}',
    b'{"title": "", "text": ' + b"[" * 5000 + b"]" * 5000 + b"}",
])
items = st.one_of(
    records.map(lambda r: ("record", r)),
    bad_lines.map(lambda b: ("bad", b)),
    st.sampled_from([b"", b" \t"]).map(lambda b: ("blank", b)),
)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _document(r, rows):
    if {"title", "text"} <= r.keys() and isinstance(r["title"], str) and isinstance(r["text"], str):
        return r["title"], r["text"]
    return None


def _corpus_row(r, rows):
    pid = r.get("id", len(rows))
    if not _is_int(pid) or pid in {row[0] for row in rows} or _document(r, rows) is None:
        return None
    return pid, r["title"], r["text"]


def _question_row(r, rows):
    if not {"question", "answer"} <= r.keys():
        return None
    gold = r.get("gold_passage_id", NO_GOLD_PASSAGE)
    if not isinstance(r["question"], str) or not _is_str_list(r["answer"]) or not _is_int(gold):
        return None
    return {"question": r["question"], "answers": r["answer"], "gold_passage_id": gold}


def _eval_question_row(r, rows):
    if not {"question", "answer"} <= r.keys():
        return None
    if not isinstance(r["question"], str) or not _is_str_list(r["answer"]):
        return None
    return {"question": r["question"], "answers": r["answer"]}


def _reference_row(r, rows):
    if not {"question", "answer"} <= r.keys() or not isinstance(r["question"], str):
        return None
    if not _is_str_list(r["answer"]) or not r["answer"]:
        return None
    return r["question"], r["answer"]


def _prediction_row(r, rows):
    if not {"question", "prediction"} <= r.keys():
        return None
    if not isinstance(r["question"], str) or not isinstance(r["prediction"], str):
        return None
    return r["question"], r["prediction"]


def _corpus(path):
    config = dict(corpus=path, titles=None, max_documents=None, gold_questions=None)
    return corpus_documents(ConfigDict(config))


# reader(path) -> rows; row(record, rows so far) -> its row, or None where the line must be
# refused; finish(rows) -> what the reader returns.
READERS = {
    "documents.iter_jsonl_documents": (lambda p: list(iter_jsonl_documents(p)), _document, list),
    "input_pipeline.corpus_documents": (_corpus, _corpus_row, list),
    "questions.iter_rows": (lambda p: [row for _, row in iter_rows(p)], _question_row, list),
    "input_pipeline.load_questions": (
        lambda p: load_questions("", "train", p), _question_row, list
    ),
    "predict.read_question_file": (
        lambda p: read_question_file(p, with_answers=True), _eval_question_row, list
    ),
    "evaluation.read_references": (read_references, _reference_row, dict),  # last line wins
    "evaluation.read_predictions": (read_predictions, _prediction_row, dict),
}


def _expected(lines, row, finish):
    """What a reader returns, or the line number of the JsonlError it raises."""
    rows = []
    for line_no, (kind, value) in enumerate(lines, start=1):
        if kind == "bad":
            return line_no
        if kind == "record":
            if (got := row(value, rows)) is None:
                return line_no
            rows.append(got)
    return finish(rows) if rows else 1  # no record at all: an empty file


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("readers") / "file.jsonl")


@pytest.mark.parametrize("reader", READERS)
@given(lines=st.lists(items, max_size=6))
@example(lines=[("record", {"question": "q", "answer": ["a"], "gold_passage_id": "7"})])
@example(lines=[("record", {"question": "q", "answer": ["a"], "gold_passage_id": None})])
@example(lines=[("record", {"question": "q", "answer": ["a"], "gold_passage_id": 2.5})])
@example(lines=[("record", {"question": "q", "answer": "a string, not a list"})])
@example(lines=[("record", {"question": "q", "answer": 3})])
@example(lines=[("record", {"question": ["not", "text"], "answer": []})])
@example(lines=[("bad", b'{"title": "t", "text": "\\udfff"}')])
def test_rows_or_one_line_error_at_the_first_bad_line(path, reader, lines):
    read, row, finish = READERS[reader]
    with open(path, "wb") as f:
        for kind, value in lines:
            f.write((json.dumps(value).encode() if kind == "record" else value) + b"\n")
    expected = _expected(lines, row, finish)
    if isinstance(expected, int):
        with pytest.raises(JsonlError) as info:
            read(path)
        message = str(info.value)
        assert info.value.line == expected, message
        assert "\n" not in message and message.startswith(f"{path}:{expected}: ")
        assert isinstance(info.value, USER_ERRORS)
    else:
        assert read(path) == expected
