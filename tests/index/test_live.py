"""The asynchronous refresh on a swap schedule (``index.swap_lag``): two tiny REALM runs, one with
a refresher that is late for every index and interrupted half-way, train identically, because
each step uses the index the schedule names, not whichever has arrived; and the configs it
cannot work with fail fast."""

import json
import os
import time

import numpy as np
import pytest

from realm_jax.errors import ConfigError
from realm_jax.index import refresher
from realm_jax.index.store import IndexStore
from realm_jax.run import config as run_config
from realm_jax.run import defaults
from realm_jax.run.files import METRICS_FILE
from realm_jax.train import realm

STEPS, EVERY, LAG = 8, 2, 2
SCHEDULE = [0, 0, 0, 0, 2, 2, 4, 4]  # the index of train steps 0..7: newest checkpoint <= t - 2


def _config():
    config = defaults.shrink_to_tiny(defaults.realm_config())
    config.num_train_steps, config.checkpoint_every_steps = STEPS, EVERY
    config.model.num_hidden_layers = 1  # half the compile
    config.index.mode, config.index.refresher, config.index.poll_seconds = "async", "thread", 0.05
    config.index.swap_lag, config.keep_checkpoints = LAG, 3
    config.eval.recall_questions = ""
    return config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("index.swap_lag", -1, "index.swap_lag=-1: must be >= 0"),
        ("index.mode", "sync", "index.swap_lag=2 needs index.mode='async'"),
        ("keep_checkpoints", 2, "keep_checkpoints=2 with index.swap_lag=2"),
        ("index.keep", 2, "index.keep=2 with index.swap_lag=2"),  # + the final index: 3
        ("realm.require_evidence", True, None),  # fine on its own...
        ("data.target_corpus", "x.jsonl", None),
        ("index.min_index_age", 5, "index.swap_lag=2 and index.min_index_age"),
    ],
)
def test_swap_lag_configs_that_cannot_work_fail_fast(field, value, message):
    config = _config()
    run_config.check_config(config)
    section, _, key = field.rpartition(".")
    (config[section] if section else config)[key] = value
    if message is None:
        run_config.check_config(config)
        return
    with pytest.raises(ConfigError, match=f"^{message}"):
        run_config.check_config(config)


def test_options_that_cannot_apply_fail_fast():
    config = _config()
    config.realm.require_evidence, config.data.target_corpus = True, "x.jsonl"  # ...not together
    with pytest.raises(ConfigError, match="^realm.require_evidence looks for evidence"):
        run_config.check_config(config)
    ict = defaults.shrink_to_tiny(defaults.ict_config())
    ict.optim.trainable = "embedder/"
    with pytest.raises(ConfigError, match="^optim.trainable is for the mlm and realm stages"):
        run_config.check_config(ict)


def _late_refresher(monkeypatch, seconds):
    """Every refresh starts ``seconds`` late, so the trainer has to wait for each index."""
    refresh = refresher.Refresher.refresh

    def late(self, step):
        time.sleep(seconds)
        return refresh(self, step)

    monkeypatch.setattr(refresher.Refresher, "refresh", late)


def _compiled_once(monkeypatch):
    """One train step function and one optimiser for every run of the test (they have the same
    config), so the step compiles once instead of once a run: the same program either way."""
    made, txs = [], []
    make_step, create_state = realm.train_step, realm.create_state

    def step(*args, **kwargs):
        key = (args, sorted(kwargs.items()))
        for known, fn in made:
            if known == key:
                return fn
        made.append((key, make_step(*args, **kwargs)))
        return made[-1][1]

    def state(config, params):
        created = create_state(config, params)
        txs[:] = txs or [created.tx]
        return created.replace(tx=txs[0])

    monkeypatch.setattr(realm, "create_state", state)
    monkeypatch.setattr(realm, "train_step", step)
    return step


def _interrupted(make_step, at_call):
    """The train step, raising KeyboardInterrupt (Ctrl-C) instead of taking call ``at_call``."""

    def make(*args, **kwargs):
        step, calls = make_step(*args, **kwargs), []

        def interrupted(*a, **k):
            calls.append(1)
            if len(calls) == at_call + 1:
                raise KeyboardInterrupt
            return step(*a, **k)

        return interrupted

    return make


def _train_log(workdir):
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["split"] == "train"]


@pytest.mark.slow
def test_a_late_interrupted_refresher_trains_like_a_prompt_one(tmp_path, monkeypatch):
    prompt, late = str(tmp_path / "prompt"), str(tmp_path / "late")  # one block cache beside
    realm_step = _compiled_once(monkeypatch)
    realm.train_and_evaluate(_config(), prompt)

    _late_refresher(monkeypatch, 0.7)
    with monkeypatch.context() as m:
        m.setattr(realm, "train_step", _interrupted(realm_step, at_call=5))
        with pytest.raises(KeyboardInterrupt):
            realm.train_and_evaluate(_config(), late)  # saves step 5, off the checkpoint schedule
    realm.train_and_evaluate(_config(), late)  # resumes at step 5, still on the schedule

    runs = _train_log(prompt), _train_log(late)
    for history in runs:
        assert [r["step"] for r in history] == list(range(1, STEPS + 1))
        assert [r["index_step"] for r in history] == SCHEDULE
    assert [r["loss"] for r in runs[0]] == [r["loss"] for r in runs[1]]  # the same float bits
    assert max(r["index_ms"] for r in runs[1]) > 300  # the late run's trainer did wait
    stores = IndexStore(os.path.join(prompt, "index")), IndexStore(os.path.join(late, "index"))
    assert all(s.latest_step() == STEPS for s in stores)  # the final index, after DONE
    kept = set(stores[0].steps()) & set(stores[1].steps())
    assert STEPS in kept and len(kept) >= 2
    for step in kept:  # every index both runs still keep, the final one included
        embeddings = [store.load(step).block_emb for store in stores]
        np.testing.assert_array_equal(*embeddings)
