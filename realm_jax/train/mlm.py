"""The MLM warm start of the knowledge-augmented encoder, and the gate REALM needs it to pass.

all-MiniLM-L6-v2 ships no MLM head, so REALM's encoder would start with a random one and
p(y|x, z) would hardly depend on z: the retriever's gradient would be noise. This stage is our
stand-in for BERT's released MLM head. It trains ``EncoderMlmModel`` (the encoder subtree of
REALM's model) on salient-span masked sentences of the corpus with a document as context,
``[CLS] masked sentence [SEP] context [SEP]``: the rest of the sentence's own block (its other
sentences), the null document, a random other block, or another block that holds the masked span
(``mlm.null_percent`` / ``random_percent`` / ``evidence_percent``, the rest own-block), or a hard
negative (``mlm.hard_percent``): the block the ICT retriever (``init.ict_workdir``'s published
index) ranks highest for the sentence among those that do not hold the masked span, which is what
REALM's first index retrieves when it misses. Kinds are drawn per example from
``[seed, CONTEXT, step]``.

The gate is measured on held-out blocks (``realm.eval_block_percent``, no questions):
``mlm_accuracy`` is the held-out accuracy with the own-block context; ``oracle_utility`` the mean
over masked wordpieces of log p(y|x, a block that contains y) - log p(y|x, null document), over
the held-out sentences for which some block holds the masked span (the rest of their own block
if it does, else the first other block that does; ``oracle_fraction`` of them), and
``oracle_mlm_accuracy`` the accuracy with that block as context, ``distractor_utility`` the same
difference for a random other block (near 0: an unrelated block does not mislead the encoder;
far below 0, REALM's retriever learns to fetch blocks that say little), and, with an ICT run,
``hard_utility`` the same for the hard negative (REALM's likeliest wrong candidate). The gate
always uses ``mlm.context_len`` (REALM's joint shape); training may use ``mlm.train_context_len``,
a shorter window of each context around the masked span (``data/pretraining.span_window``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from realm_jax import losses
from realm_jax.data import input_pipeline as ip
from realm_jax.data.evidence import EvidenceIndex, contains_sequence
from realm_jax.data.pretraining import block_rest, mlm_batch, query_inputs, select_candidates
from realm_jax.errors import ConfigError
from realm_jax.index.published import run_query_tower, source_index, source_index_problem
from realm_jax.models.realm import EmbedderSpec, EncoderMlmModel, QueryEncoder
from realm_jax.run.config import resolve_config
from realm_jax.run.files import read_run_config
from realm_jax.run.model_setup import create_state, realm_config
from realm_jax.train.init import setup_stage
from realm_jax.train.loop import TrainLoop
from realm_jax.train.steps import make_train_step
from realm_jax.utils.devices import AXIS, shard

CONTEXT = 3  # seed stream of the context choices (input_pipeline uses 0-2)
OWN, NULL, RANDOM, EVIDENCE, HARD = 0, 1, 2, 3, 4
HARD_DEPTH = 16  # ICT top blocks searched for one without the span
# Batch keys: joint_ids, joint_mask, joint_type_ids [B, Lj]; mlm_positions, mlm_targets, mlm_mask
# [B, max_masks] (the REALM joint input with one context per example).
METRICS = {"loss": ("nll_sum", "num_masks"), "mlm_accuracy": ("mlm_correct_sum", "num_masks")}


def loss_fn(model: EncoderMlmModel):
    """(params, batch, rngs, deterministic) -> the encoder's MLM loss on one context per example."""

    def loss(params, batch, rngs, deterministic):
        logits = model.apply(
            params,
            *(batch[k] for k in ("joint_ids", "joint_mask", "joint_type_ids", "mlm_positions")),
            deterministic=deterministic,
            rngs=rngs,
        )
        return losses.mlm_loss(logits, batch["mlm_targets"], batch["mlm_mask"], axis_name=AXIS)

    return loss


def train_step(model: EncoderMlmModel, donate: bool = True, trainable: str | None = None):
    """The pmapped MLM warm-start step of the knowledge-augmented encoder."""
    return make_train_step(loss_fn(model), METRICS, donate, trainable)


def check_hard_negative_source(config: ConfigDict) -> None:
    """With ``mlm.hard_percent``, ``init.ict_workdir`` must have published an index over this
    config's blocks (it ranks the hard negatives)."""
    if config.mlm.get("hard_percent", 0) <= 0:
        return
    ict = config.init.ict_workdir
    length = read_run_config(ict).ict.block_len
    if problem := source_index_problem(ict, length, config.data.blocks_dir):
        raise ConfigError(f"init.ict_workdir={ict}: {problem} (mlm.hard_percent > 0 ranks "
                          "hard negatives with it)")


def context_kinds(rng: np.random.Generator, n: int, null_percent: int, random_percent: int,
                  evidence_percent: int = 0, hard_percent: int = 0):
    """``n`` context kinds (OWN / NULL / RANDOM / EVIDENCE / HARD) drawn with the given
    percentages (the rest OWN)."""
    others = (null_percent, random_percent, evidence_percent, hard_percent)
    if min(others) < 0 or sum(others) > 100:
        raise ConfigError(
            f"mlm.null_percent={null_percent}, random_percent={random_percent}, "
            f"evidence_percent={evidence_percent}, hard_percent={hard_percent}: "
            "each >= 0, together <= 100"
        )
    p = np.array([100 - sum(others), *others]) / 100
    return rng.choice(len(p), size=n, p=p)


def other_block(rng: np.random.Generator, num_blocks: int, own: int) -> int:
    """A uniformly random block id other than ``own``."""
    other = int(rng.integers(num_blocks - 1))
    return other + (other >= own)


def oracle_context(store, elsewhere, masked) -> np.ndarray | None:
    """A block body holding ``masked``'s span: the rest of its own block if that does, else the
    first other block that does (``elsewhere(masked)``: their ids); None if no block does."""
    own = block_rest(store, masked.block_index, masked.sentence_index)
    if contains_sequence(own, masked.targets):
        return own
    others = elsewhere(masked)
    return store.token_ids(int(others[0])) if len(others) else None


class HardNegatives:
    """For masked sentences, the block a fixed retriever ranks highest among those other than the
    sentence's own that do not hold its masked span (REALM's likeliest wrong candidate).

    ``search(query_ids [B, query_len]) -> block ids [B, k]`` in rank order."""

    def __init__(self, store, search, query_len: int):
        self.store, self.search, self.query_len = store, search, query_len

    def __call__(self, masked) -> list[int | None]:
        ids = query_inputs(self.store, masked, self.query_len)["input_ids"]
        ranked = np.asarray(self.search(ids))
        out = []
        for row, q in zip(ranked, masked, strict=True):
            own = self.store.uid(q.block_index)
            candidates = select_candidates(row, own, self.store.uids, HARD_DEPTH + 1)
            wrong = (b for b in candidates
                     if not contains_sequence(self.store.token_ids(b), q.targets))
            out.append(next(wrong, None))
        return out


def ict_hard_negatives(config: ConfigDict, store) -> HardNegatives:
    """``HardNegatives`` of the ICT run ``init.ict_workdir``'s published index and query tower."""
    workdir = config.init.ict_workdir  # train_and_evaluate calls this only when it is set
    source = read_run_config(workdir)
    snapshot = source_index(workdir, source.ict.block_len, config.data.blocks_dir)
    if snapshot is None:
        raise ConfigError(f"init.ict_workdir={workdir}: no index published at its latest "
                          f"checkpoint over data.blocks_dir={config.data.blocks_dir}")
    tower = run_query_tower(workdir, snapshot)
    encoder = QueryEncoder(EmbedderSpec.from_realm_config(realm_config(source.model)))
    k = min(HARD_DEPTH + 2, snapshot.searcher.num_blocks)
    search = lambda ids: snapshot.searcher.search(encoder(tower, ids), k)[1]
    return HardNegatives(store, search, config.realm.query_len)


class MlmBatches:
    """The MLM batch of step ``i``: masked sentences (``MaskedQueries``) and their contexts."""

    def __init__(self, store, queries: ip.MaskedQueries, config: ConfigDict,
                 hard: HardNegatives | None = None):
        self.store, self.queries, self.config, self.hard = store, queries, config, hard
        self.evidence = queries.evidence or EvidenceIndex(store)

    def elsewhere(self, masked) -> np.ndarray:
        """Ids of the other blocks that hold ``masked``'s span (``realm.evidence_min_shared``)."""
        return self.queries.evidence_elsewhere(masked, self.evidence)

    def contexts(self, masked, kinds: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        out = []
        hard = iter(self.hard([q for q, k in zip(masked, kinds, strict=True) if k == HARD])
                    if HARD in kinds else [])
        for q, kind in zip(masked, kinds, strict=True):  # a HARD without one: a random block
            block = next(hard) if kind == HARD else None
            if kind == HARD and block is not None:
                out.append(self.store.token_ids(block))
            elif kind == OWN:
                out.append(block_rest(self.store, q.block_index, q.sentence_index))
            elif kind == NULL:
                out.append(np.zeros(0, np.int32))
            elif kind == EVIDENCE:
                found = self.elsewhere(q)
                if len(found):
                    out.append(self.store.token_ids(int(found[rng.integers(len(found))])))
                else:
                    out.append(block_rest(self.store, q.block_index, q.sentence_index))
            else:
                out.append(self.store.token_ids(other_block(rng, len(self.store), q.block_index)))
        return out

    def batch(self, masked, contexts, context_len: int | None = None) -> dict[str, np.ndarray]:
        """The joint inputs; ``context_len`` defaults to ``mlm.context_len`` (REALM's shape)."""
        r = self.config.realm
        context_len = context_len or self.config.mlm.context_len
        return mlm_batch(self.store, masked, contexts, r.query_len, context_len, r.max_masks)

    def __call__(self, step: int) -> dict[str, np.ndarray]:
        masked = self.queries(step)
        rng = np.random.default_rng([self.config.seed, CONTEXT, step, jax.process_index()])
        m = self.config.mlm
        kinds = context_kinds(rng, len(masked), m.null_percent, m.random_percent,
                              m.get("evidence_percent", 0), m.get("hard_percent", 0))
        train_len = m.get("train_context_len") or None  # a shorter window: faster steps
        return self.batch(masked, self.contexts(masked, kinds, rng), train_len)


def gate_metrics(own, oracle, null, mask, has_y, distractor=None, hard=None) -> dict:
    """The gate's figures from (gold log-probs, hits) pairs of arrays [n, max_masks] (numpy) for
    the own-block, oracle and null contexts, ``mask`` (real masks) and ``has_y`` [n] (some block
    holds the masked span: the oracle subset; its oracle context is that block).

    ``distractor``: the pair for a random other block as context; ``distractor_utility`` is its
    log p(y|x, z) - log p(y|x, null) over all real masks. Far below 0, REALM's retriever gains
    most by retrieving blocks that say little (short ones) rather than the answer. ``hard``: the
    pair for the hard negatives (``HardNegatives``), giving ``hard_utility`` likewise."""
    mask = mask.astype(bool)
    subset = mask & has_y[:, None]
    mean = lambda x, m: float(np.sum(x * m) / max(np.sum(m), 1))
    out = {
        "loss": -mean(own[0], mask),
        "mlm_accuracy": mean(own[1], mask),
        "null_loss": -mean(null[0], mask),
        "null_mlm_accuracy": mean(null[1], mask),
        "oracle_utility": mean(oracle[0] - null[0], subset),
        "oracle_mlm_accuracy": mean(oracle[1], subset),
        "oracle_fraction": float(np.mean(has_y)),
        "num_masks": float(np.sum(mask)),
    }
    if distractor is not None:
        out["distractor_utility"] = mean(distractor[0] - null[0], mask)
    if hard is not None:
        out["hard_utility"] = mean(hard[0] - null[0], mask)
    return out


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict:
    """Trains the encoder's MLM head (and ``optim.trainable`` layers); evaluates the gate."""
    config = resolve_config(config, workdir, "mlm")
    check_hard_negative_source(config)
    tokenizer, store, model, params, _ = setup_stage(config, workdir, spans=True)
    queries = ip.MaskedQueries(store, tokenizer, config)
    # An ICT run gives hard negatives (training, if mlm.hard_percent) and the gate's hard_utility.
    hard = ict_hard_negatives(config, store) if config.init.get("ict_workdir") else None
    batches = MlmBatches(store, queries, config, hard)
    gate = Gate(model, store, batches, queries, hard, config)
    p_train_step = train_step(model, trainable=config.optim.trainable)
    # No embedder spec: this stage has no retriever to index.
    state = create_state(config, params)
    del params  # the host copy: the loop's replicated state holds them from here
    with TrainLoop(config, workdir, "mlm", state) as loop:
        loop.evaluate_at_start(gate)
        for step in loop.steps():
            state, metrics = p_train_step(loop.state, shard(batches(step)), loop.rng)
            loop.record(state, metrics)
            loop.evaluate_if_due(gate)
        return loop.final_metrics(gate)


class Gate:
    """The gate's evaluation (module docstring) on the held-out masked sentences, as a
    ``(step, params) -> metrics`` callable."""

    def __init__(
        self, model: EncoderMlmModel, store, batches: MlmBatches, queries: ip.MaskedQueries,
        hard: HardNegatives | None, config: ConfigDict,
    ):
        self.score = jax.jit(functools.partial(gold_and_hits, model))
        held_out = [queries(i, ip.EVAL) for i in range(config.eval.num_batches)]
        held_out = [q for qs in held_out for q in qs]
        own = [block_rest(store, q.block_index, q.sentence_index) for q in held_out]
        oracle = [oracle_context(store, batches.elsewhere, q) for q in held_out]
        self.has_y = np.array([c is not None for c in oracle])
        empty = np.zeros(0, np.int32)
        oracle = [empty if c is None else c for c in oracle]
        rng = np.random.default_rng([config.seed, CONTEXT, ip.EVAL])
        distractor = [store.token_ids(other_block(rng, len(store), q.block_index))
                      for q in held_out]
        contexts = [own, oracle, [empty] * len(held_out), distractor]
        if hard is not None:  # the ICT retriever's best block without the span (else the random)
            found = hard(held_out)
            pairs = zip(found, distractor, strict=True)
            contexts.append([d if b is None else store.token_ids(b) for b, d in pairs])
        self.batches = [batches.batch(held_out, c) for c in contexts]

    def __call__(self, step: int, params: dict) -> dict:
        scored = [[np.asarray(x) for x in self.score(params, b)] for b in self.batches]
        return gate_metrics(*scored[:3], self.batches[0]["mlm_mask"], self.has_y, *scored[3:])


def gold_and_hits(model: EncoderMlmModel, params: dict, batch: dict):
    """One device: [n, max_masks] gold log-probs and whether the argmax is the target."""
    keys = ("joint_ids", "joint_mask", "joint_type_ids", "mlm_positions")
    logits = model.apply(params, *(batch[k] for k in keys))
    gold = losses.gold_log_probs(logits, batch["mlm_targets"])
    return gold, jnp.argmax(logits, -1) == batch["mlm_targets"]
