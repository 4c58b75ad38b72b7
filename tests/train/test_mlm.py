"""The MLM warm start of the knowledge-augmented encoder: a tiny run trains only the parameters
``optim.trainable`` names and reports the gate; REALM pre-training starts its encoder from it."""

import json
import os

import jax
import numpy as np
import pytest

from realm_jax.data import input_pipeline as ip
from realm_jax.data.evidence import EvidenceIndex
from realm_jax.data.salient_spans import MaskedSentence
from realm_jax.errors import ConfigError
from realm_jax.run import config as run_config
from realm_jax.run import defaults
from realm_jax.run.files import read_run_config, save_config
from realm_jax.run.model_setup import restore_run_params
from realm_jax.run.state import param_path
from realm_jax.train import init, mlm, realm
from realm_jax.train.init import initial_params
from realm_jax.train.mlm import HardNegatives, context_kinds, gate_metrics

GATE_KEYS = {"mlm_accuracy", "oracle_utility", "oracle_mlm_accuracy", "null_mlm_accuracy",
             "oracle_fraction", "loss", "null_loss", "num_masks", "distractor_utility"}


def test_gate_metrics_on_hand_made_scores():
    mask = np.array([[1, 1], [1, 0], [1, 1]])
    has_y = np.array([True, False, True])
    own = (np.log(np.full((3, 2), 0.5)), np.array([[1, 0], [1, 0], [0, 0]]))
    # Per-row values: only real masks of rows with has_y count (row 1 and the masked-out cell
    # would move the mean if they were counted).
    oracle = (np.log([[0.8, 0.4], [0.9, 0.9], [0.6, 0.9]]), np.array([[1, 1], [0, 0], [1, 0]]))
    null = (np.log([[0.2, 0.2], [0.1, 0.1], [0.3, 0.1]]), np.zeros((3, 2)))
    gate = gate_metrics(own, oracle, null, mask, has_y)
    assert gate["mlm_accuracy"] == pytest.approx(2 / 5)  # hits over the 5 real masks
    assert gate["oracle_mlm_accuracy"] == pytest.approx(3 / 4)  # rows 0 and 2 only
    expected = np.mean(np.log([0.8 / 0.2, 0.4 / 0.2, 0.6 / 0.3, 0.9 / 0.1]))
    assert gate["oracle_utility"] == pytest.approx(expected)
    assert gate["oracle_fraction"] == pytest.approx(2 / 3) and gate["num_masks"] == 5
    assert "distractor_utility" not in gate
    distractor = (np.log([[0.1, 0.2], [0.05, 0.9], [0.3, 0.9]]), np.zeros((3, 2)))
    with_distractor = gate_metrics(own, oracle, null, mask, has_y, distractor)
    expected = np.mean(np.log([0.1 / 0.2, 1.0, 0.05 / 0.1, 1.0, 0.9 / 0.1]))  # all 5 real masks
    assert with_distractor["distractor_utility"] == pytest.approx(expected)
    assert {k: v for k, v in with_distractor.items() if k != "distractor_utility"} == gate
    hard = (np.log([[0.4, 0.2], [0.1, 0.5], [0.3, 0.05]]), np.zeros((3, 2)))
    with_hard = gate_metrics(own, oracle, null, mask, has_y, distractor, hard)
    expected = np.mean(np.log([0.4 / 0.2, 1.0, 1.0, 1.0, 0.05 / 0.1]))
    assert with_hard["hard_utility"] == pytest.approx(expected)


class _Blocks:
    """The part of a BlockStore HardNegatives reads: five blocks of wordpieces."""

    cls_id, sep_id = 101, 102
    bodies = [[5, 6, 7], [7, 8, 9], [30, 31], [5, 9, 40, 41], [50]]
    uids = np.array([bytes([i]) * 8 for i in range(5)])

    def uid(self, i):
        return bytes(self.uids[i])

    def token_ids(self, i):
        return np.array(self.bodies[i], np.int32)


def test_hard_negatives_are_the_best_ranked_blocks_without_the_span():
    seen = []

    def search(ids):  # a fixed ranking per query; records what it was asked
        seen.append(ids)
        return np.array([[0, 3, 1, 2], [1, 0, 3, 4], [3, 1, -1, -1]])

    # Query 0 (own block 0) masks [9, 40]: block 3 holds it, so block 1 is the hard negative.
    # Query 1 (own block 2) masks [7]: blocks 1 and 0 hold it, so block 3. Query 2 (own block 4)
    # masks [9]: both of its retrieved blocks hold it, so there is none.
    masked = [MaskedSentence(0, 0, np.array([1, 103, 103, 2]), np.array([1, 2]), np.array([9, 40])),
              MaskedSentence(2, 0, np.array([103, 4]), np.array([0]), np.array([7])),
              MaskedSentence(4, 1, np.array([3, 103]), np.array([1]), np.array([9]))]
    assert HardNegatives(_Blocks(), search, query_len=6)(masked) == [1, 3, None]
    np.testing.assert_array_equal(seen[0][0], [101, 1, 103, 103, 2, 102])  # the masked query
    assert seen[0].shape == (3, 6)


def test_context_kinds_follow_the_percentages():
    kinds = context_kinds(np.random.default_rng(0), 4000, 25, 25, 30)
    counts = np.bincount(kinds, minlength=4) / 4000  # own, null, random, evidence
    np.testing.assert_allclose(counts, [0.2, 0.25, 0.25, 0.3], atol=0.03)  # ~4 sigma at n=4000
    kinds = context_kinds(np.random.default_rng(0), 4000, 10, 0, 40, 30)
    counts = np.bincount(kinds, minlength=5) / 4000  # own, null, random, evidence, hard
    np.testing.assert_allclose(counts, [0.2, 0.1, 0.0, 0.4, 0.3], atol=0.03)
    with pytest.raises(ConfigError, match="together <= 100"):
        context_kinds(np.random.default_rng(0), 4, 60, 30, 20)


@pytest.mark.slow
def test_tiny_mlm_run_then_realm_starts_its_encoder_from_it(tmp_path, monkeypatch):
    mlm_config = defaults.shrink_to_tiny(defaults.mlm_config())
    mlm_config.optim.trainable = r"encoder/(mlm_head|bert/layer_1)/"
    mlm_config.mlm.evidence_percent = 25
    mlm_config.optim.lr_scaled = "encoder/mlm_head/"  # restores all the same
    mlm_config.optim.lr_scale = 5.0
    mlm_config.eval.num_batches = 2
    metrics = mlm.train_and_evaluate(mlm_config, str(tmp_path / "mlm"))
    assert GATE_KEYS <= set(metrics) and all(np.isfinite(list(metrics.values())))
    assert 0 < metrics["oracle_fraction"] <= 1  # some held-out spans are held by some block
    assert "hard_utility" not in metrics  # no ICT run: no hard negatives (make reproduce has one)
    with open(tmp_path / "mlm" / "metrics.jsonl", encoding="utf-8") as f:
        evals = [r for r in map(json.loads, f) if r["split"] == "eval"]
    assert evals[-1]["step"] == mlm_config.num_train_steps and "oracle_utility" in evals[-1]

    config = read_run_config(str(tmp_path / "mlm"))
    start, _ = initial_params(config, jax.random.PRNGKey(config.seed))  # what the run began from
    _, end, _ = restore_run_params(str(tmp_path / "mlm"))
    flat = jax.tree_util.tree_flatten_with_path(start)[0]
    for (path, before), after in zip(flat, jax.tree_util.tree_leaves(end), strict=True):
        name = param_path(path)
        if "mlm_head" not in name and "layer_1/" not in name:
            np.testing.assert_array_equal(before, after, err_msg=name)  # frozen: bit for bit

    realm_config = defaults.shrink_to_tiny(defaults.realm_config())
    realm_config.init.mlm_workdir = str(tmp_path / "mlm")
    realm_config.num_train_steps = 0
    realm.train_and_evaluate(realm_config, str(tmp_path / "realm"))
    config = read_run_config(str(tmp_path / "realm"))
    realm_params, _ = initial_params(config, jax.random.PRNGKey(config.seed))
    for a, b in zip(jax.tree_util.tree_leaves(realm_params["params"]["encoder"]),
                    jax.tree_util.tree_leaves(end["params"]["encoder"]), strict=True):
        np.testing.assert_array_equal(a, b)

    # A run directory of another stage (its params have no lone "encoder") is refused.
    bad = defaults.shrink_to_tiny(defaults.realm_config())
    bad.init.mlm_workdir = str(tmp_path / "realm")
    not_mlm = lambda workdir, step=None: (None, {"params": {"retriever": {}, "encoder": {}}}, 0)
    monkeypatch.setattr(init, "restore_run_params", not_mlm)
    with pytest.raises(ConfigError, match="realm: not an MLM run"):
        realm.train_and_evaluate(bad, str(tmp_path / "realm2"))
    assert not os.path.exists(tmp_path / "realm2")  # a failed set-up leaves no workdir


def test_hard_negatives_without_an_ict_run_fail_before_anything_is_written(tmp_path):
    mlm_config = defaults.shrink_to_tiny(defaults.mlm_config())
    mlm_config.mlm.hard_percent = 10
    with pytest.raises(ConfigError, match="mlm.hard_percent > 0 needs init.ict_workdir"):
        mlm.train_and_evaluate(mlm_config, str(tmp_path / "mlm"))
    assert not os.path.exists(tmp_path / "mlm")

    # An ICT run directory with no index published at its latest checkpoint (here: none yet).
    ict = run_config.resolve_config(defaults.shrink_to_tiny(defaults.ict_config()),
                               str(tmp_path / "ict"), "ict")
    save_config(ict, str(tmp_path / "ict"))
    mlm_config.init.ict_workdir = str(tmp_path / "ict")
    mlm_config.data.blocks_dir = ict.data.blocks_dir  # the same blocks: only the index is missing
    with pytest.raises(ConfigError, match=r"ict: no index published at its latest checkpoint"):
        mlm.train_and_evaluate(mlm_config, str(tmp_path / "mlm"))
    assert not os.path.exists(tmp_path / "mlm")


def test_require_evidence_draws_only_sentences_held_elsewhere(tmp_path, tokenizer):
    config = defaults.shrink_to_tiny(defaults.realm_config())
    config.realm.require_evidence = True
    store = ip.prepare_blocks(config, str(tmp_path / "blocks"), tokenizer, salient_spans=True)
    queries = ip.MaskedQueries(store, tokenizer, config)
    scan = EvidenceIndex(store)
    drawn = [q for step in range(6) for q in queries(step)]
    assert len(drawn) == 6 * config.batch_size
    assert all(scan.has_evidence_elsewhere(q.block_index, q.targets) for q in drawn)
    config.realm.evidence_min_shared = 1  # the evidence must also share a rare word
    config.realm.evidence_max_df = 0.2  # "rare" in a 111-block corpus: in at most 22 blocks
    strict = ip.MaskedQueries(store, tokenizer, config)
    drawn = [q for step in range(3) for q in strict(step)]
    topics = [scan.topic(q, config.realm.evidence_max_df) for q in drawn]
    assert all(scan.has_evidence_elsewhere(q.block_index, q.targets, t, 1)
               for q, t in zip(drawn, topics, strict=True))
    config.realm.masker = "random_token"
    with pytest.raises(ConfigError, match="realm.require_evidence needs realm.masker='salient'"):
        ip.MaskedQueries(store, tokenizer, config)
