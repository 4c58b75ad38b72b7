"""The packaged open-QA sets: plain reads, TFDS preparation offline, documented split sizes."""

import configparser
import fnmatch
import hashlib
import os
import subprocess
import sys

import pytest

from realm_jax.data import questions, tfds_questions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def openqa_data_dir(tmp_path_factory) -> str:
    """Prepares every config once per session (the TF import dominates; each config is ~0.2 s)."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    for config in questions.CONFIGS:
        tfds_questions.openqa_builder(config, data_dir)
    return data_dir


def _as_rows(dataset) -> list[dict]:
    import tensorflow_datasets as tfds

    return [
        {
            "question": r["question"].decode("utf-8"),
            "answers": [a.decode("utf-8") for a in r["answers"]],
            "gold_passage_id": int(r["gold_passage_id"]),
        }
        for r in tfds.as_numpy(dataset)
    ]


@pytest.mark.parametrize("config", questions.CONFIGS)
def test_read_questions_sizes_and_gold_ids(config):
    for split, size in questions.SPLIT_SIZES[config].items():
        rows = questions.read_questions(config, split)
        assert len(rows) == size, (config, split)
        assert all(row["question"] and isinstance(row["answers"], list) for row in rows)
        gold = {row["gold_passage_id"] for row in rows}
        if config.startswith("mini_"):
            assert min(gold) >= 0
        else:
            assert gold == {questions.NO_GOLD_PASSAGE}


def test_unknown_config_or_split():
    with pytest.raises(ValueError, match="has no split 'train'"):
        questions.read_questions("nq", "train")  # NQ-open train is not shipped
    with pytest.raises(ValueError, match="unknown open-QA config"):
        questions.read_questions("squad", "test")


def test_read_questions_does_not_import_tensorflow():
    code = (
        "import sys; from realm_jax.data import questions; questions.read_questions('wq', 'dev'); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_training_and_serving_do_not_import_tensorflow_datasets():
    code = (
        "import sys; import realm_jax.train.realm, realm_jax.train.openqa, realm_jax.serve.cli; "
        "assert 'tensorflow_datasets' not in sys.modules, 'tensorflow_datasets was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_tfds_split_sizes(openqa_data_dir):
    for config in questions.CONFIGS:
        builder = tfds_questions.openqa_builder(config, openqa_data_dir)  # reuses the preparation
        sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
        assert sizes == questions.SPLIT_SIZES[config], config


def test_tfds_load_offline_matches_plain_rows(openqa_data_dir):
    import tensorflow_datasets as tfds

    for config, split in [("ct", "dev"), ("mini_nq", "test")]:
        dataset = tfds.load(
            f"realm_openqa/{config}", split=split, data_dir=openqa_data_dir, download=False
        )
        assert _as_rows(dataset) == questions.read_questions(config, split)
    rows = _as_rows(tfds_questions.load_openqa("nq", "test", openqa_data_dir).take(2))
    assert rows == questions.read_questions("nq", "test")[:2]


def test_shipped_files_match_source_checksums():
    for folder in ("nq_open", "webquestions", "curatedtrec"):
        directory = os.path.join(questions.OPENQA_DIR, folder)
        with open(os.path.join(directory, "SOURCE.md"), encoding="utf-8") as f:
            source = f.read()
        for name in sorted(os.listdir(directory)):
            if name.endswith(".jsonl"):
                with open(os.path.join(directory, name), "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                assert digest in source, f"{folder}/{name} differs from its SOURCE.md"


def test_package_data_covers_shipped_files():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    # setuptools splits a multi-line value at line ends only (a comma stays in the glob)
    patterns = [p.strip() for p in parser["options.package_data"]["realm_jax"].splitlines()]
    package_dir = os.path.join(REPO, "realm_jax")
    for root, _, files in os.walk(questions.OPENQA_DIR):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), package_dir)
            assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} not in package_data"
