"""The open-QA fine-tuning stage end to end at tiny scale (``train/openqa.py``), answering from
the run it writes, and Table 2's starts that take one part of the REALM run."""

import jax
import numpy as np
import pytest

from realm_jax.errors import ConfigError
from realm_jax.index.store import IndexStore
from realm_jax.openqa import answerer
from realm_jax.run import defaults, model_setup
from realm_jax.train import init

# The stages share the session fixtures of tests/train/conftest.py: one worker trains the chain.
# Stage runs end to end, chained through session fixtures: one worker, `make test-slow`.
pytestmark = [pytest.mark.xdist_group("stage_chain"), pytest.mark.slow]


def test_openqa_fine_tunes_from_realm_and_answers(realm_run, openqa_run):
    workdir, metrics, out = openqa_run
    assert set(metrics) == {"exact_match", "recall_at_5", "n"} and metrics["n"] > 0
    assert f"'{realm_run[0]} step 4'" in out  # fine-tuning from REALM's last step
    # Fine-tuning's frozen index is REALM's final one (the doc tower it starts from).
    qa_emb = IndexStore(str(workdir / "index")).load(0).block_emb
    np.testing.assert_array_equal(qa_emb, IndexStore(str(realm_run[0] / "index")).load(4).block_emb)

    _, params, answer = answerer.load_openqa_run(str(workdir))
    (p,) = answer(params, ["who wrote the first declaration of human rights"], 4)
    assert isinstance(p["prediction"], str) and np.isfinite(p["score"])
    assert 1 <= len(p["evidence"]) <= 5
    assert sum(e["probability"] for e in p["evidence"]) <= 1.0 + 1e-6


def test_table2_mixes_take_one_part_of_the_realm_run(ict_run, realm_run):
    """init.pretrain_parts takes only REALM's retriever or only its encoder (Table 2's rows)."""
    qa_config = defaults.shrink_to_tiny(defaults.openqa_config())
    qa_config.init.pretrain_workdir = str(realm_run[0])
    _, realm, _ = model_setup.restore_run_params(str(realm_run[0]))
    _, ict, _ = model_setup.restore_run_params(str(ict_run[0]))
    rng = jax.random.PRNGKey(qa_config.seed)
    fresh = model_setup.random_params(qa_config, rng)["params"]
    same = lambda a, b: jax.tree.all(jax.tree.map(np.array_equal, a, b))

    qa_config.init.pretrain_parts = "retriever"
    params, sources = init.initial_params(qa_config, rng)
    p = params["params"]
    assert same(p["retriever"], realm["params"]["retriever"])
    assert same(p["reader"]["bert"], fresh["reader"]["bert"])  # init.bert's (random when tiny)
    assert init.retriever_source(qa_config) == str(realm_run[0])

    qa_config.init.pretrain_parts, qa_config.init.ict_workdir = "encoder", str(ict_run[0])
    params, sources = init.initial_params(qa_config, rng)
    p = params["params"]
    assert same(p["retriever"], ict["params"])
    assert same(p["reader"]["bert"], realm["params"]["encoder"]["bert"])
    assert not same(p["retriever"], realm["params"]["retriever"])  # REALM moved the retriever
    assert init.retriever_source(qa_config) == str(ict_run[0])  # its index is ICT's
    assert sources["reader bert"].startswith(str(realm_run[0]))

    qa_config.init.pretrain_parts = "all"  # with both workdirs: ambiguous
    with pytest.raises(ConfigError, match="not both"):
        init.initial_params(qa_config, rng)
    qa_config.init.pretrain_parts = "reader"
    with pytest.raises(ConfigError, match="pretrain_parts='reader'"):
        init.initial_params(qa_config, rng)
