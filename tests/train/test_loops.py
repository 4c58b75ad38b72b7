"""The training loops: the tiny ICT -> REALM -> open-QA pipeline end to end, and the loop's
resume / NaN / Ctrl-C behaviour on a toy stage (a linear model, so each case runs in seconds)."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from realm_jax.data.blocks import BlockStore
from realm_jax.index.store import IndexStore
from realm_jax.train import defaults, input_pipeline, loops, model_setup
from realm_jax.train.loop import METRICS_FILE, NonFiniteLossError, run_loop


def _metrics(workdir, split="train"):
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def _steps(directory):
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_tiny_pipeline_ict_realm_openqa(tmp_path, capsys):
    """Every stage trains, checkpoints, logs and evaluates; each next one starts from the last."""
    ict = defaults.shrink_to_tiny(defaults.ict_config())
    ict_metrics = loops.train_ict(ict, str(tmp_path / "ict"))
    assert set(ict_metrics) >= {"loss", "accuracy"}
    assert _steps(tmp_path / "ict" / "checkpoints") == [2, 4]
    assert [r["step"] for r in _metrics(tmp_path / "ict")] == [1, 2, 3, 4]
    assert glob.glob(str(tmp_path / "ict" / "events.out.tfevents*"))  # TensorBoard
    assert IndexStore(str(tmp_path / "ict" / "index")).latest_step() == 4  # for the next stages

    realm = defaults.shrink_to_tiny(defaults.realm_config())
    realm.init.ict_workdir = str(tmp_path / "ict")
    realm_metrics = loops.train_realm(realm, str(tmp_path / "realm"))
    assert set(realm_metrics) >= {"loss", "mlm_accuracy", "retrieval_utility", "recall_at_5"}
    assert realm_metrics["index_step"] == 4  # refreshed every 2 steps, the final one included
    # Index 0 is ICT's final index, reused (same blocks, same length): identical embeddings.
    realm_index = IndexStore(str(tmp_path / "realm" / "index"))
    assert realm_index.steps() == [0, 2, 4]
    # Each step logs the index its batch came from: refreshed every 2 steps, so 0, 1, 0, 1 behind.
    assert [r["staleness"] for r in _metrics(tmp_path / "realm")] == [0, 1, 0, 1]
    ict_emb = IndexStore(str(tmp_path / "ict" / "index")).load(4).block_emb
    np.testing.assert_array_equal(realm_index.load(0).block_emb, ict_emb)

    openqa = defaults.shrink_to_tiny(defaults.openqa_config())
    openqa.init.pretrain_workdir = str(tmp_path / "realm")
    qa_metrics = loops.train_openqa(openqa, str(tmp_path / "openqa"))
    assert set(qa_metrics) == {"exact_match", "recall_at_5", "n"} and qa_metrics["n"] > 0
    out = capsys.readouterr().out
    assert f"'retriever': '{tmp_path / 'ict'} step 4'" in out  # REALM's retriever from ICT
    assert f"'{tmp_path / 'realm'} step 4'" in out  # fine-tuning from REALM's last step
    # Fine-tuning's frozen index is REALM's final one (the doc tower it starts from).
    qa_emb = IndexStore(str(tmp_path / "openqa" / "index")).load(0).block_emb
    np.testing.assert_array_equal(qa_emb, realm_index.load(4).block_emb)

    config, params, answerer = loops.load_openqa_run(str(tmp_path / "openqa"))
    predictions = answerer(params, ["who wrote the first declaration of human rights"], 4)
    (p,) = predictions
    assert isinstance(p["prediction"], str) and np.isfinite(p["score"])
    assert 1 <= len(p["evidence"]) <= 5
    assert sum(e["probability"] for e in p["evidence"]) <= 1.0 + 1e-6
    _check_table2_mixes(tmp_path, openqa)
    print(
        "tiny pipeline:",
        json.dumps({"ict": ict_metrics, "realm": realm_metrics, "openqa": qa_metrics}),
    )


def _check_table2_mixes(tmp_path, openqa):
    """init.pretrain_parts takes only REALM's retriever or only its encoder (Table 2's rows)."""
    _, realm, _ = model_setup.restore_run_params(str(tmp_path / "realm"))
    _, ict, _ = model_setup.restore_run_params(str(tmp_path / "ict"))
    rng = jax.random.PRNGKey(openqa.seed)
    fresh = model_setup.random_params(openqa, rng)["params"]
    same = lambda a, b: jax.tree.all(jax.tree.map(np.array_equal, a, b))

    openqa.init.pretrain_parts = "retriever"
    params, sources = model_setup.initial_params(openqa, rng)
    p = params["params"]
    assert same(p["retriever"], realm["params"]["retriever"])
    assert same(p["reader"]["bert"], fresh["reader"]["bert"])  # init.bert's (random when tiny)
    assert model_setup.retriever_source(openqa) == str(tmp_path / "realm")

    openqa.init.pretrain_parts, openqa.init.ict_workdir = "encoder", str(tmp_path / "ict")
    params, sources = model_setup.initial_params(openqa, rng)
    p = params["params"]
    assert same(p["retriever"], ict["params"])
    assert same(p["reader"]["bert"], realm["params"]["encoder"]["bert"])
    assert not same(p["retriever"], realm["params"]["retriever"])  # REALM moved the retriever
    assert model_setup.retriever_source(openqa) == str(tmp_path / "ict")  # its index is ICT's
    assert sources["reader bert"].startswith(str(tmp_path / "realm"))

    openqa.init.pretrain_parts = "all"  # with both workdirs: ambiguous
    with pytest.raises(model_setup.ConfigError, match="not both"):
        model_setup.initial_params(openqa, rng)
    openqa.init.pretrain_parts = "reader"
    with pytest.raises(model_setup.ConfigError, match="pretrain_parts='reader'"):
        model_setup.initial_params(openqa, rng)


# --- the loop on a toy stage -------------------------------------------------------------------


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, loop_config, toy_stage):
    run_loop(loop_config(), str(tmp_path / "a"), toy_stage())
    with pytest.raises(KeyboardInterrupt):
        run_loop(loop_config(), str(tmp_path / "b"), toy_stage(interrupt_at=3))
    assert _steps(tmp_path / "b" / "checkpoints") == [2, 3]  # Ctrl-C saved the finished step 3
    run_loop(loop_config(), str(tmp_path / "b"), toy_stage())
    a, b = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # resumed at 3: no step twice
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=0, atol=1e-6)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, loop_config, toy_stage):
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 4; .* checkpoint is step 2"):
        run_loop(loop_config(), str(tmp_path), toy_stage(nan_at=3))
    assert _steps(tmp_path / "checkpoints") == [2]
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2, 3]


# --- batches are pure functions of the step ----------------------------------------------------


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, tokenizer):
    config = defaults.shrink_to_tiny(defaults.ict_config())
    directory = str(tmp_path_factory.mktemp("blocks") / "blocks")
    return config, input_pipeline.prepare_blocks(config, directory, tokenizer)


def test_ict_batches_depend_only_on_seed_and_step(small_store):
    config, store = small_store
    assert isinstance(store, BlockStore) and len(store) > config.batch_size
    batches = input_pipeline.IctBatches(store, config)
    first, again, other = batches(3), batches(3), batches(4)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["block_ids"], other["block_ids"])
    assert first["query_ids"].shape == (config.batch_size, config.ict.query_len)
    assert jax.process_count() == 1 and input_pipeline.process_rows(8) == slice(0, 8)
    with pytest.raises(ValueError, match="batch_size=12 is not a multiple of the 8 devices"):
        input_pipeline.process_rows(12)


def test_question_order_covers_each_epoch_once():
    order = np.concatenate([input_pipeline.question_indices(10, s, 4, seed=0) for s in range(5)])
    assert sorted(order[:10]) == list(range(10)) and sorted(order[10:20]) == list(range(10))
    np.testing.assert_array_equal(
        input_pipeline.question_indices(10, 2, 4, 0), order[8:12]
    )  # step 2 alone = the same questions


def test_realm_with_asynchronous_refresh(tmp_path):
    """A refresher thread indexes the trainer's checkpoints; the last one after DONE."""
    config = defaults.shrink_to_tiny(defaults.realm_config())
    config.index.mode, config.index.refresher, config.index.poll_seconds = "async", "thread", 0.1
    metrics = loops.train_realm(config, str(tmp_path))
    published = IndexStore(str(tmp_path / "index")).steps()
    assert published[0] == 0 and published[-1] == 4  # the first (built by the trainer), the last
    assert metrics["index_step"] == 4  # the final evaluation uses the final index
    assert os.path.exists(tmp_path / "checkpoints" / "DONE")
    assert _steps(tmp_path / "checkpoints") == [2, 4]
