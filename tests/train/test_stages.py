"""Each stage's ``train_and_evaluate`` end to end: the tiny ICT -> REALM -> open-QA pipeline (each
stage starting from the last), Table 2's mixed starts, and REALM with an asynchronous refresher."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from realm_jax.errors import ConfigError
from realm_jax.index.store import IndexStore
from realm_jax.openqa import pipeline
from realm_jax.run import defaults, model_setup
from realm_jax.run.files import METRICS_FILE
from realm_jax.train import ict, init, openqa, realm


def _metrics(workdir, split="train"):
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        return [r for r in map(json.loads, f) if r["split"] == split]


def _steps(directory):
    return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_tiny_pipeline_ict_realm_openqa(tmp_path, capsys):
    """Every stage trains, checkpoints, logs and evaluates; each next one starts from the last."""
    ict_config = defaults.shrink_to_tiny(defaults.ict_config())
    ict_metrics = ict.train_and_evaluate(ict_config, str(tmp_path / "ict"))
    assert set(ict_metrics) >= {"loss", "accuracy"}
    assert _steps(tmp_path / "ict" / "checkpoints") == [2, 4]
    assert [r["step"] for r in _metrics(tmp_path / "ict")] == [1, 2, 3, 4]
    assert glob.glob(str(tmp_path / "ict" / "events.out.tfevents*"))  # TensorBoard
    assert IndexStore(str(tmp_path / "ict" / "index")).latest_step() == 4  # for the next stages

    realm_config = defaults.shrink_to_tiny(defaults.realm_config())
    realm_config.init.ict_workdir = str(tmp_path / "ict")
    realm_metrics = realm.train_and_evaluate(realm_config, str(tmp_path / "realm"))
    assert set(realm_metrics) >= {"loss", "mlm_accuracy", "retrieval_utility", "recall_at_5"}
    assert realm_metrics["index_step"] == 4  # refreshed every 2 steps, the final one included
    # Index 0 is ICT's final index, reused (same blocks, same length): identical embeddings.
    realm_index = IndexStore(str(tmp_path / "realm" / "index"))
    assert realm_index.steps() == [0, 2, 4]
    # Each step logs the index its batch came from: refreshed every 2 steps, so 0, 1, 0, 1 behind.
    assert [r["staleness"] for r in _metrics(tmp_path / "realm")] == [0, 1, 0, 1]
    ict_emb = IndexStore(str(tmp_path / "ict" / "index")).load(4).block_emb
    np.testing.assert_array_equal(realm_index.load(0).block_emb, ict_emb)

    qa_config = defaults.shrink_to_tiny(defaults.openqa_config())
    qa_config.init.pretrain_workdir = str(tmp_path / "realm")
    qa_metrics = openqa.train_and_evaluate(qa_config, str(tmp_path / "openqa"))
    assert set(qa_metrics) == {"exact_match", "recall_at_5", "n"} and qa_metrics["n"] > 0
    out = capsys.readouterr().out
    assert f"'retriever': '{tmp_path / 'ict'} step 4'" in out  # REALM's retriever from ICT
    assert f"'{tmp_path / 'realm'} step 4'" in out  # fine-tuning from REALM's last step
    # Fine-tuning's frozen index is REALM's final one (the doc tower it starts from).
    qa_emb = IndexStore(str(tmp_path / "openqa" / "index")).load(0).block_emb
    np.testing.assert_array_equal(qa_emb, realm_index.load(4).block_emb)

    config, params, answerer = pipeline.load_openqa_run(str(tmp_path / "openqa"))
    predictions = answerer(params, ["who wrote the first declaration of human rights"], 4)
    (p,) = predictions
    assert isinstance(p["prediction"], str) and np.isfinite(p["score"])
    assert 1 <= len(p["evidence"]) <= 5
    assert sum(e["probability"] for e in p["evidence"]) <= 1.0 + 1e-6
    _check_table2_mixes(tmp_path, qa_config)
    print(
        "tiny pipeline:",
        json.dumps({"ict": ict_metrics, "realm": realm_metrics, "openqa": qa_metrics}),
    )


def _check_table2_mixes(tmp_path, qa_config):
    """init.pretrain_parts takes only REALM's retriever or only its encoder (Table 2's rows)."""
    _, realm, _ = model_setup.restore_run_params(str(tmp_path / "realm"))
    _, ict, _ = model_setup.restore_run_params(str(tmp_path / "ict"))
    rng = jax.random.PRNGKey(qa_config.seed)
    fresh = model_setup.random_params(qa_config, rng)["params"]
    same = lambda a, b: jax.tree.all(jax.tree.map(np.array_equal, a, b))

    qa_config.init.pretrain_parts = "retriever"
    params, sources = init.initial_params(qa_config, rng)
    p = params["params"]
    assert same(p["retriever"], realm["params"]["retriever"])
    assert same(p["reader"]["bert"], fresh["reader"]["bert"])  # init.bert's (random when tiny)
    assert init.retriever_source(qa_config) == str(tmp_path / "realm")

    qa_config.init.pretrain_parts, qa_config.init.ict_workdir = "encoder", str(tmp_path / "ict")
    params, sources = init.initial_params(qa_config, rng)
    p = params["params"]
    assert same(p["retriever"], ict["params"])
    assert same(p["reader"]["bert"], realm["params"]["encoder"]["bert"])
    assert not same(p["retriever"], realm["params"]["retriever"])  # REALM moved the retriever
    assert init.retriever_source(qa_config) == str(tmp_path / "ict")  # its index is ICT's
    assert sources["reader bert"].startswith(str(tmp_path / "realm"))

    qa_config.init.pretrain_parts = "all"  # with both workdirs: ambiguous
    with pytest.raises(ConfigError, match="not both"):
        init.initial_params(qa_config, rng)
    qa_config.init.pretrain_parts = "reader"
    with pytest.raises(ConfigError, match="pretrain_parts='reader'"):
        init.initial_params(qa_config, rng)


def test_realm_with_asynchronous_refresh(tmp_path):
    """A refresher thread indexes the trainer's checkpoints; the last one after DONE."""
    config = defaults.shrink_to_tiny(defaults.realm_config())
    config.index.mode, config.index.refresher, config.index.poll_seconds = "async", "thread", 0.1
    metrics = realm.train_and_evaluate(config, str(tmp_path))
    published = IndexStore(str(tmp_path / "index")).steps()
    assert published[0] == 0 and published[-1] == 4  # the first (built by the trainer), the last
    assert metrics["index_step"] == 4  # the final evaluation uses the final index
    assert os.path.exists(tmp_path / "checkpoints" / "DONE")
    assert _steps(tmp_path / "checkpoints") == [2, 4]
