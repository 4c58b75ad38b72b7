"""The tiny ICT -> REALM -> open-QA chain, each stage trained once per test session (per xdist
worker) in one directory, so that each stage's tests start from the previous stage's run."""

import contextlib
import io
import json
import os

import pytest

from realm_jax.run import defaults
from realm_jax.run.files import METRICS_FILE
from realm_jax.train import ict, openqa, realm


def _train(stage, config, workdir):
    """(final metrics, what the stage printed) of ``stage.train_and_evaluate``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = stage.train_and_evaluate(config, str(workdir))
    return metrics, out.getvalue()


@pytest.fixture(scope="session")
def chain_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("chain")


@pytest.fixture(scope="session")
def ict_run(chain_dir):
    """(workdir, final metrics, stdout) of the tiny ICT stage."""
    config = defaults.shrink_to_tiny(defaults.ict_config())
    return chain_dir / "ict", *_train(ict, config, chain_dir / "ict")


@pytest.fixture(scope="session")
def realm_run(chain_dir, ict_run):
    """The tiny REALM stage, its retriever from the ICT run."""
    config = defaults.shrink_to_tiny(defaults.realm_config())
    config.init.ict_workdir = str(ict_run[0])
    return chain_dir / "realm", *_train(realm, config, chain_dir / "realm")


@pytest.fixture(scope="session")
def openqa_run(chain_dir, realm_run):
    """The tiny open-QA stage, fine-tuned from the REALM run."""
    config = defaults.shrink_to_tiny(defaults.openqa_config())
    config.init.pretrain_workdir = str(realm_run[0])
    return chain_dir / "openqa", *_train(openqa, config, chain_dir / "openqa")


@pytest.fixture(scope="session")
def train_metrics():
    """train_metrics(workdir, split="train") -> that split's rows of the run's metrics.jsonl."""

    def read(workdir, split="train"):
        with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
            return [r for r in map(json.loads, f) if r["split"] == split]

    return read


@pytest.fixture(scope="session")
def checkpoint_steps():
    """checkpoint_steps(directory) -> the finished checkpoint steps in it, sorted."""
    return lambda directory: sorted(int(n) for n in os.listdir(directory) if n.isdigit())
