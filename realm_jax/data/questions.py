"""Open-QA question sets (NQ, WebQuestions, CuratedTrec, mini) from files shipped in the package.

Every config reads jsonl files inside the package (``openqa_files/<dataset>/``, each with its
verbatim SOURCE.md for attribution); ``read_questions`` returns a split's rows in file order without
TensorFlow. The same sets as a TFDS builder (``tfds.load("realm_openqa/<config>")``) are
``data/tfds_questions.py``, which needs the ``[tf]`` extra.
The SOURCE.md files are verbatim copies and also describe files not shipped here (the raw DrQA
``.txt`` files, the EfficientQA splits, and mini's ``passages.jsonl``, which ships with the corpus).

| config | splits (examples) | answers |
|---|---|---|
| nq | test 3,610 | strings |
| wq | train 3,417 / dev 361 / test 2,032 | strings |
| ct | train 1,353 / dev 133 / test 694 | regular expressions |
| mini_squad | train 6,775 / test 2,276 | strings, plus gold_passage_id |
| mini_nq | train 1,731 / test 534 | strings, plus gold_passage_id |

NQ has only its test split: ORQA's NQ test set is NQ-open.dev.jsonl (3,610), which is shipped, but
NQ-open.train.jsonl (87,925 rows) is not available to the project, so ORQA's train/dev resplit
(79,168 / 8,757) cannot be rebuilt. WQ and CT dev are ORQA's resplit of the original train files
(dev iff FarmHash ``Fingerprint64(question) % 100000 % 10 == 0``), made once and shipped as files.
The mini test files are test data only: never train or tune on them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from realm_jax.errors import JsonlError
from realm_jax.utils.jsonl import iter_jsonl

OPENQA_DIR = os.path.join(os.path.dirname(__file__), "openqa_files")

# config -> (folder under OPENQA_DIR, {split: file}).
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "nq": ("nq_open", {"test": "NQ-open.dev.jsonl"}),
    "wq": (
        "webquestions",
        {split: f"WebQuestions.resplit.{split}.jsonl" for split in ("train", "dev", "test")},
    ),
    "ct": (
        "curatedtrec",
        {split: f"CuratedTrec.resplit.{split}.jsonl" for split in ("train", "dev", "test")},
    ),
    "mini_squad": ("mini", {"train": "squad.train.jsonl", "test": "squad.test.jsonl"}),
    "mini_nq": ("mini", {"train": "nq.train.jsonl", "test": "nq.test.jsonl"}),
}

SPLIT_SIZES: dict[str, dict[str, int]] = {
    "nq": {"test": 3610},
    "wq": {"train": 3417, "dev": 361, "test": 2032},
    "ct": {"train": 1353, "dev": 133, "test": 694},
    "mini_squad": {"train": 6775, "test": 2276},
    "mini_nq": {"train": 1731, "test": 534},
}

CONFIGS: tuple[str, ...] = tuple(SOURCES)

# Configs whose answers are regexes, scored with evaluation.regex_match (ORQA's --is_regex).
REGEX_CONFIGS = frozenset({"ct"})

# gold_passage_id of questions without a known gold passage (all but the mini configs).
NO_GOLD_PASSAGE = -1


def split_path(config: str, split: str) -> str:
    """Path of the packaged jsonl file holding ``split`` of ``config``."""
    if config not in SOURCES:
        raise ValueError(f"unknown open-QA config {config!r}; choose from {', '.join(CONFIGS)}")
    folder, files = SOURCES[config]
    if split not in files:
        raise ValueError(f"config {config!r} has no split {split!r}; it has {', '.join(files)}")
    return os.path.join(OPENQA_DIR, folder, files[split])


def iter_rows(path: str) -> Iterator[tuple[int, dict]]:
    for line_no, record in iter_jsonl(path, ("question", "answer")):
        answers = record["answer"]
        if not isinstance(record["question"], str):
            raise JsonlError(path, line_no, "field 'question' must be a string")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise JsonlError(path, line_no, "field 'answer' must be a list of strings")
        gold = record.get("gold_passage_id", NO_GOLD_PASSAGE)
        if isinstance(gold, bool) or not isinstance(gold, int):
            raise JsonlError(path, line_no, "field 'gold_passage_id' must be an integer")
        row = {"question": record["question"], "answers": answers, "gold_passage_id": gold}
        yield line_no, row


def read_questions(config: str, split: str) -> list[dict]:
    """Rows ``{question, answers, gold_passage_id}`` of a split in file order, without TF."""
    return [row for _, row in iter_rows(split_path(config, split))]
