"""Orbax checkpoints: the trainer's state round-trips; the re-indexer reads only the doc tower;
a damaged newest checkpoint falls back to the previous one."""

import json
import logging
import os
import re
import sys
import types

import jax
import numpy as np
import pytest

from realm_jax.errors import USER_ERRORS, CheckpointError
from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import EmbedderSpec, RealmConfig, embedder_params, init_params
from realm_jax.run import defaults, model_setup
from realm_jax.run.checkpoints import (
    Checkpoints,
    collect_failed_restore,
    is_done,
    mark_done,
    read_embedder_spec,
    restore_embedder_params,
    save_checkpoint,
)
from realm_jax.run.files import CHECKPOINT_DIR, METRICS_FILE, save_config
from realm_jax.run.state import TrainState, bert_adamw

# A failed orbax restore leaves its sibling tensorstore reads running; when they finish, on an
# event loop orbax has closed, Python reports "Event loop is closed" as unraisable: not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def state():
    cfg = RealmConfig(tiny_config().replace(vocab_size=100), proj_size=8, share_embedders=False)
    one = np.ones((1, 6), np.int32)
    params = init_params(
        cfg.retriever(), jax.random.PRNGKey(0), one, one, one[:, None], one[:, None]
    )
    return cfg, TrainState.create(params, bert_adamw(1e-3, 10, 1))


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_restore_embedder_params_reads_the_document_tower(tmp_path, state):
    cfg, st = state
    spec = EmbedderSpec.from_realm_config(cfg)
    reader = Checkpoints(str(tmp_path), read_only=True)  # opened before anything is saved
    assert reader.latest_step() is None
    save_checkpoint(str(tmp_path), 3, st, embedder_spec=spec)
    save_checkpoint(str(tmp_path), 5, st.replace(step=st.step + 5))
    assert reader.latest_step() == 5
    tower = restore_embedder_params(str(tmp_path))
    _assert_trees_equal(tower, embedder_params(st.params))
    assert "query_embedder" in st.params["params"]  # present in the state, not restored
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(tower))
    assert read_embedder_spec(str(tmp_path)) == spec
    # The tower plugs into the spec's module.
    ids = np.ones((2, 6), np.int32)
    assert spec.module().apply(tower, ids, ids).shape == (2, 8)


def test_state_round_trips_and_done_marker(tmp_path, state):
    _, st = state
    ckpt = Checkpoints(str(tmp_path), max_to_keep=2)  # asynchronous saves
    for step in (1, 2, 3):
        ckpt.save(step, st.replace(step=st.step + step))
    ckpt.wait()
    assert ckpt.latest_step() == 3 and not is_done(str(tmp_path))
    restored = ckpt.restore_state(3, st)
    assert int(restored.step) == 3
    _assert_trees_equal(restored.params, st.params)
    _assert_trees_equal(restored.opt_state, st.opt_state)
    mark_done(str(tmp_path))
    assert is_done(str(tmp_path))
    ckpt.close()


def test_missing_spec_and_tower_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="embedder.json: missing"):
        read_embedder_spec(str(tmp_path))
    with pytest.raises(KeyError, match="no document tower"):
        embedder_params({"params": {"encoder": {}}})
    with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
        restore_embedder_params(str(tmp_path))


# --- damaged checkpoints -----------------------------------------------------------------------


def _truncate_arrays(step_dir):
    """Cuts every array file of a saved step in half (what a full disk or a killed copy leaves)."""
    data = os.path.join(step_dir, "default", "d")
    assert os.listdir(data)
    for name in os.listdir(data):
        path = os.path.join(data, name)
        os.truncate(path, os.path.getsize(path) // 2)


def _shifted(st, step):
    """``st`` at ``step`` with every parameter moved by ``step``: each saved step differs."""
    return st.replace(step=st.step + step, params=jax.tree.map(lambda x: x + step, st.params))


def _metrics(workdir):
    with open(workdir / METRICS_FILE, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
            and r.name == "realm_jax.run.checkpoints"]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_truncate_arrays, "ValueError: (OUT_OF_RANGE|DATA_LOSS): "),  # tensorstore
        (lambda d: os.remove(os.path.join(d, "default", "_METADATA")), "ValueError: "),
        (lambda d: os.truncate(os.path.join(d, "default", "_METADATA"), 100), "JSONDecodeError"),
        (lambda d: os.rename(os.path.join(d, "default"), d + "-x"), "KeyError: Item .default."),
    ],
)
def test_damaged_newest_checkpoint_falls_back_and_is_set_aside(tmp_path, state, caplog, damage,
                                                                reason):
    _, st = state
    directory = str(tmp_path / "ckpt")
    ckpt = Checkpoints(directory, async_save=False)
    for step in (1, 2, 3):
        ckpt.save(step, _shifted(st, step))
    damage(os.path.join(directory, "3"))
    with caplog.at_level(logging.WARNING):
        step, restored = ckpt.restore_latest_good(st)
    assert step == 2 and int(restored.step) == 2
    _assert_trees_equal(restored.params, _shifted(st, 2).params)
    _assert_trees_equal(restored.opt_state, st.opt_state)
    (warning,) = _warnings(caplog)
    aside = os.path.join(directory, "3.corrupt")
    assert warning.startswith(f"checkpoint {os.path.join(directory, '3')} does not restore (")
    assert warning.endswith(f"); moved it to {aside}; using step 2 instead")
    assert len(warning.splitlines()) == 1 and re.search(reason, warning), warning
    assert "tensorstore_spec" not in warning  # the reason, not the driver specs
    assert os.path.isdir(aside) and ckpt.all_steps() == [1, 2]
    ckpt.save(3, _shifted(st, 3))  # the broken step's number is free again
    assert ckpt.restore_latest_good(st)[0] == 3 and ckpt.latest_step() == 3
    ckpt.close()


def test_after_a_failed_restore_closed_loop_callbacks_print_nothing(monkeypatch):
    """Tensorstore's reads of a failed restore complete later into orbax's closed event loop,
    each an unraisable "Event loop is closed" (a traceback on stderr of `realm-jax ask`): the
    hook drops exactly those and passes every other one on."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    collect_failed_restore()
    collect_failed_restore()  # installed once, not wrapped twice
    unraisable = lambda message: types.SimpleNamespace(  # noqa: E731
        exc_type=RuntimeError, exc_value=RuntimeError(message), exc_traceback=None,
        err_msg=None, object=None)
    sys.unraisablehook(unraisable("Event loop is closed"))
    sys.unraisablehook(unraisable("something else"))
    assert [str(u.exc_value) for u in seen] == ["something else"]


def test_read_only_fallback_moves_nothing_and_all_broken_is_one_line(tmp_path, state, caplog):
    _, st = state
    for step in (1, 2):
        save_checkpoint(str(tmp_path), step, _shifted(st, step))
    _truncate_arrays(str(tmp_path / "2"))
    reader = Checkpoints(str(tmp_path), read_only=True)
    with caplog.at_level(logging.WARNING):
        step, restored = reader.restore_latest_good(st)
    assert step == 1
    _assert_trees_equal(restored.params, _shifted(st, 1).params)
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"checkpoint {tmp_path / '2'} does not restore (ValueError: ")
    assert warning.endswith("); using step 1 instead")  # not moved
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # a reader never renames

    _truncate_arrays(str(tmp_path / "1"))
    with pytest.raises(CheckpointError) as e:
        reader.restore_latest_good(st)
    message = str(e.value)
    assert message.startswith(f"{tmp_path}: none of its checkpoints restores (steps 2, 1; step 2: ")
    assert len(message.splitlines()) == 1
    assert isinstance(e.value, USER_ERRORS)
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # nothing restored: nothing set aside
    empty = Checkpoints(str(tmp_path / "none"), read_only=True)
    assert empty.restore_latest_good(st) == (None, None)


def test_restore_run_params_skips_a_damaged_latest_step(tmp_path, caplog):
    config = defaults.shrink_to_tiny(defaults.ict_config())
    workdir = str(tmp_path / "run")
    save_config(config, workdir)
    params = model_setup.random_params(config, jax.random.PRNGKey(0))
    st = model_setup.create_state(config, params)
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    for step in (2, 4):
        save_checkpoint(directory, step, _shifted(st, step))
    _truncate_arrays(os.path.join(directory, "4"))
    with caplog.at_level(logging.WARNING):
        _, restored, step = model_setup.restore_run_params(workdir)
    assert step == 2
    _assert_trees_equal(restored, _shifted(st, 2).params)
    assert len(_warnings(caplog)) == 1 and os.path.isdir(os.path.join(directory, "4"))
    with pytest.raises(ValueError, match="OUT_OF_RANGE|DATA_LOSS"):  # an explicit step: no fallback
        model_setup.restore_run_params(workdir, step=4)


def test_loop_resumes_from_the_step_before_a_damaged_one(tmp_path, caplog, loop_config,
                                                             toy_stage):
    """Steps 2 and 4 are saved; 4 is damaged: the rerun resumes from 2 and saves 4 again."""
    toy_stage()(loop_config(6), str(tmp_path / "a"))
    toy_stage()(loop_config(4), str(tmp_path / "b"))
    checkpoints = tmp_path / "b" / "checkpoints"
    _truncate_arrays(str(checkpoints / "4"))
    with caplog.at_level(logging.WARNING):
        toy_stage()(loop_config(6), str(tmp_path / "b"))
    (warning,) = _warnings(caplog)
    assert f"moved it to {checkpoints / '4.corrupt'}; using step 2 instead" in warning
    assert sorted(os.listdir(checkpoints)) == ["4", "4.corrupt", "6"]
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 3, 4, 5, 6]  # steps 3 and 4 trained again
    assert [r["loss"] for r in b[4:]] == [r["loss"] for r in a[2:]]  # the same run from step 2
