"""``runner.in_child``: a run or evaluation in a fresh process, its result and its errors back."""

import os

import pytest

from realm_jax.errors import ConfigError
from realm_jax.reproduce import runner


def _pid_and_sum(a: int, b: int) -> tuple[int, int]:
    return os.getpid(), a + b


def _bad_config(field: str) -> None:
    raise ConfigError(f"override {field}: no such config field")


def test_in_child_returns_the_result_from_another_process(monkeypatch):
    monkeypatch.setattr(runner, "ISOLATE", True)
    (pid, total), peak = runner.in_child(_pid_and_sum, 2, 3)
    assert total == 5 and pid != os.getpid()
    assert 0.01 < peak < 64  # GiB: a Python process that imported the project, not 0 or bytes


def test_in_child_raises_the_childs_error_here(monkeypatch):
    monkeypatch.setattr(runner, "ISOLATE", True)
    with pytest.raises(ConfigError, match="override realm.maskr: no such config field"):
        runner.in_child(_bad_config, "realm.maskr")


def test_not_isolated_runs_in_this_process(monkeypatch):
    monkeypatch.setattr(runner, "ISOLATE", False)
    (pid, total), _ = runner.in_child(_pid_and_sum, 1, 1)
    assert (pid, total) == (os.getpid(), 2)
