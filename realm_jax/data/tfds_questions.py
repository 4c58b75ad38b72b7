"""The open-QA question sets of ``data/questions.py`` as a TFDS builder (needs TensorFlow Datasets).

``load_openqa`` prepares ``realm_openqa/<config>`` into ``data_dir`` on first use (nothing is
downloaded: the files ship with the package), after which ``tfds.load("realm_openqa/<config>",
data_dir=..., download=False)`` works too; rows are those of ``read_questions``, in file order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from etils import epath

from realm_jax.data.questions import CONFIGS, SOURCES, iter_rows, split_path
from realm_jax.utils.optional import require

require("tensorflow", "tf", "the realm_openqa TFDS builder")  # TFDS imports hollow without it
tfds = require("tensorflow_datasets", "tf", "the realm_openqa TFDS builder")

_DESCRIPTIONS = {
    "nq": "NQ-open test set of ORQA/REALM (NQ-open.dev.jsonl); train is not shipped.",
    "wq": "WebQuestions (DrQA files) with ORQA's FarmHash train/dev resplit.",
    "ct": "CuratedTrec (DrQA files) with ORQA's resplit; answers are regular expressions.",
    "mini_squad": "SQuAD v1.1 dev questions split by article, with gold passage ids (mini).",
    "mini_nq": "NQ-open questions with gold passages, split by question hash (mini).",
}


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
        _, files = SOURCES[self.builder_config.name]
        return {
            split: self._generate_examples(split_path(self.builder_config.name, split))
            for split in files
        }

    def _generate_examples(self, path: str) -> Iterator[tuple[int, dict]]:
        # The line number is a unique key; question text is not (CuratedTrec repeats some).
        yield from iter_rows(path)


def openqa_builder(config: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The ``realm_openqa/<config>`` builder, prepared into ``data_dir`` if it is not yet."""
    if config not in SOURCES:
        raise ValueError(f"unknown open-QA config {config!r}; choose from {', '.join(CONFIGS)}")
    builder = RealmOpenqa(config=config, data_dir=data_dir)
    builder.download_and_prepare()  # Reuses an existing preparation.
    return builder


def load_openqa(config: str, split: str, data_dir: str | None = None):
    """A ``tf.data.Dataset`` of ``{question, answers, gold_passage_id}`` in file order."""
    split_path(config, split)  # Fails early, and plainly, on an unknown config or split.
    return openqa_builder(config, data_dir).as_dataset(split=split, shuffle_files=False)
