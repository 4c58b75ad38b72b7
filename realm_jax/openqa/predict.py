"""Scores of a fine-tuned open-QA run on a question file or a packaged split (evaluate.py).

Predicting from a file of questions without scoring is ``serve.api.RealmQA.ask_file``
(``experiments/predict.py``, ``realm-jax ask --questions``); both read the file with
``read_question_file``."""

from __future__ import annotations

import numpy as np

from realm_jax.data.questions import REGEX_CONFIGS, read_questions
from realm_jax.errors import ConfigError, JsonlError
from realm_jax.openqa.answerer import load_openqa_run, per_question_scores, score_predictions
from realm_jax.utils.jsonl import iter_jsonl, write_jsonl
from realm_jax.utils.paths import missing_file_reason


def read_question_file(path: str, with_answers: bool = False) -> list[dict]:
    """Rows ``{question, answers}`` of a jsonl file (``answer`` required if ``with_answers``)."""
    if reason := missing_file_reason(path):
        raise FileNotFoundError(f"{path}: {reason}")
    rows = []
    for line, record in iter_jsonl(path, ("question", "answer") if with_answers else ("question",)):
        answers = record.get("answer", [])
        if not isinstance(record["question"], str):
            raise JsonlError(path, line, "field 'question' must be a string")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise JsonlError(path, line, "field 'answer' must be a list of strings")
        rows.append({"question": record["question"], "answers": answers})
    return rows


def predict_questions(workdir: str, questions: list[str], batch_size: int = 16) -> list[dict]:
    """Prediction records of ``questions`` by the newest checkpoint of an open-QA run."""

    _, params, answerer = load_openqa_run(workdir)
    return answerer(params, questions, batch_size)


def evaluate_run(
    workdir: str,
    dataset: str | None = None,
    split: str = "test",
    questions_path: str | None = None,
    regex: bool | None = None,
    output: str | None = None,
    batch_size: int = 16,
    max_questions: int | None = None,
    per_question_output: str | None = None,
) -> dict[str, float]:
    """EM and recall@5 of an open-QA run on a packaged split or a ``{question, answer}`` file
    (if given, a fixed sample of ``max_questions`` of them: seed 0, kept in file order).

    ``output``: the prediction records (jsonl); ``per_question_output``: one line per scored
    question, ``{question, answers, prediction, correct, gold_in_top5}`` (``per_question_scores``).
    """
    if dataset:
        try:
            rows = read_questions(dataset, split)
        except ValueError as e:  # an unknown split, named in one line
            raise ConfigError(str(e)) from None
    else:
        rows = read_question_file(questions_path, with_answers=True)
    if max_questions and max_questions < len(rows):
        keep = np.random.default_rng(0).choice(len(rows), max_questions, replace=False)
        rows = [rows[i] for i in sorted(keep)]
    regex = (dataset in REGEX_CONFIGS) if regex is None else regex
    predictions = predict_questions(workdir, [r["question"] for r in rows], batch_size)
    if output:
        write_jsonl(output, predictions)
    if per_question_output:
        write_jsonl(per_question_output, per_question_scores(rows, predictions, regex))
    return score_predictions(rows, predictions, regex)
