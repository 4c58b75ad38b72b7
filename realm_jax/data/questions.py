"""Open-QA question sets (NQ, WebQuestions, CuratedTrec, mini) as a TFDS builder over package files.

Every config reads jsonl files shipped inside the package (``openqa_files/<dataset>/``, each with
its verbatim SOURCE.md for attribution), so preparing needs no network: ``load_openqa`` prepares
into ``data_dir`` on first use, after which ``tfds.load("realm_openqa/<config>", data_dir=...,
download=False)`` works too. ``read_questions`` returns the same rows in the same order without TF.
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

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from realm_jax.errors import JsonlError
from realm_jax.utils.jsonl import iter_jsonl

OPENQA_DIR = os.path.join(os.path.dirname(__file__), "openqa_files")

# config -> (folder under OPENQA_DIR, {split: file}).
_SOURCES: dict[str, tuple[str, dict[str, str]]] = {
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

_DESCRIPTIONS = {
    "nq": "NQ-open test set of ORQA/REALM (NQ-open.dev.jsonl); train is not shipped.",
    "wq": "WebQuestions (DrQA files) with ORQA's FarmHash train/dev resplit.",
    "ct": "CuratedTrec (DrQA files) with ORQA's resplit; answers are regular expressions.",
    "mini_squad": "SQuAD v1.1 dev questions split by article, with gold passage ids (mini).",
    "mini_nq": "NQ-open questions with gold passages, split by question hash (mini).",
}

CONFIGS: tuple[str, ...] = tuple(_SOURCES)

# Configs whose answers are regexes, scored with evaluation.regex_match (ORQA's --is_regex).
REGEX_CONFIGS = frozenset({"ct"})

# gold_passage_id of questions without a known gold passage (all but the mini configs).
NO_GOLD_PASSAGE = -1


def split_path(config: str, split: str) -> str:
    """Path of the packaged jsonl file holding ``split`` of ``config``."""
    if config not in _SOURCES:
        raise ValueError(f"unknown open-QA config {config!r}; choose from {', '.join(CONFIGS)}")
    folder, files = _SOURCES[config]
    if split not in files:
        raise ValueError(f"config {config!r} has no split {split!r}; it has {', '.join(files)}")
    return os.path.join(OPENQA_DIR, folder, files[split])


def _iter_rows(path: str) -> Iterator[tuple[int, dict]]:
    for line_no, record in iter_jsonl(path, ("question", "answer")):
        answers = record["answer"]
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise JsonlError(path, line_no, "field 'answer' must be a list of strings")
        row = {
            "question": record["question"],
            "answers": answers,
            "gold_passage_id": int(record.get("gold_passage_id", NO_GOLD_PASSAGE)),
        }
        yield line_no, row


def read_questions(config: str, split: str) -> list[dict]:
    """Rows ``{question, answers, gold_passage_id}`` of a split in file order, without TF."""
    return [row for _, row in _iter_rows(split_path(config, split))]


class RealmOpenqa(tfds.core.GeneratorBasedBuilder):
    """Open-QA questions and reference answers from files packaged with realm_jax."""

    name = "realm_openqa"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "NQ test, WQ and CT with ORQA resplits, mini SQuAD and NQ."}
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=c, description=_DESCRIPTIONS[c]) for c in CONFIGS
    ]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS 4.9.10's default needs the `importlib_resources` backport, which it does not install
        # on Python >= 3.9; this file is what it would find (TFDS looks for checksums.tsv beside).
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "question": tfds.features.Text(),
                    "answers": tfds.features.Sequence(tfds.features.Text()),
                    "gold_passage_id": np.int64,
                }
            ),
            homepage="https://github.com/google-research/language/tree/master/language/orqa",
            # File order is kept so rows line up with read_questions and the source files.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Nothing to download: the files ship with the package.
        _, files = _SOURCES[self.builder_config.name]
        return {
            split: self._generate_examples(split_path(self.builder_config.name, split))
            for split in files
        }

    def _generate_examples(self, path: str) -> Iterator[tuple[int, dict]]:
        # The line number is a unique key; question text is not (CuratedTrec repeats some).
        yield from _iter_rows(path)


def openqa_builder(config: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The ``realm_openqa/<config>`` builder, prepared into ``data_dir`` if it is not yet."""
    if config not in _SOURCES:
        raise ValueError(f"unknown open-QA config {config!r}; choose from {', '.join(CONFIGS)}")
    builder = RealmOpenqa(config=config, data_dir=data_dir)
    builder.download_and_prepare()  # Reuses an existing preparation.
    return builder


def load_openqa(config: str, split: str, data_dir: str | None = None):
    """A ``tf.data.Dataset`` of ``{question, answers, gold_passage_id}`` in file order."""
    split_path(config, split)  # Fails early, and plainly, on an unknown config or split.
    return openqa_builder(config, data_dir).as_dataset(split=split, shuffle_files=False)
