"""Shared fixtures. Tests run on CPU with 8 simulated devices so every pmapped path is exercised."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("USE_TF", "0")

import json  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from realm_jax.data.tokenization import Tokenizer  # noqa: E402
from realm_jax.models.bert import tiny_config  # noqa: E402

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="session")
def tiny_bert_config():
    return tiny_config()


@pytest.fixture(scope="session")
def passages32() -> list[dict]:
    with open(os.path.join(TESTDATA, "passages32.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def num_devices() -> int:
    n = jax.local_device_count()
    assert n == 8, (
        f"tests expect 8 simulated CPU devices, found {n}; set XLA_FLAGS before importing jax"
    )
    return n
