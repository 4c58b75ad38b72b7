"""The three training stages: ICT warm start, REALM pre-training, open-QA fine-tuning.

Each ``train_*(config, workdir)`` resolves the config (its block cache), writes it to
``<workdir>/config.json``, builds the stage's model, data and evaluation, and hands them to
``loop.run_loop``; it returns the final evaluation's metrics. Workdir layout: ``config.json``,
``checkpoints/`` (orbax), ``index/`` (published MIPS indexes and their towers),
``metrics.jsonl`` and TensorBoard events.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from ml_collections import ConfigDict

from realm_jax.data.blocks import BlockStore
from realm_jax.data.pretraining import realm_batch
from realm_jax.data.tokenization import Tokenizer, shared_tokenizer
from realm_jax.evaluation import has_answer
from realm_jax.train import input_pipeline as ip
from realm_jax.train.checkpoint import EmbedderSpec, mark_done
from realm_jax.train.indexing import (
    QueryEncoder,
    Snapshot,
    SyncIndex,
    make_index,
    query_tower,
    swap_lag_problem,
)
from realm_jax.train.loop import Stage, host_metrics, run_loop, save_config
from realm_jax.train.model_setup import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ConfigError,
    create_state,
    initial_params,
    read_run_config,
    realm_config,
    restore_run_params,
    retriever_source,
    stage_model,
)
from realm_jax.train.openqa_pipeline import (
    Answerer,
    BM25Retriever,
    DenseRetriever,
    OpenQAData,
    question_ids,
    score_predictions,
)
from realm_jax.train.parallel import replicate, shard
from realm_jax.train.published_index import INDEX_DIR, source_index, source_index_problem
from realm_jax.train.steps import (
    ICT_METRICS,
    REALM_METRICS,
    ict_loss_fn,
    ict_step,
    make_eval_step,
    openqa_step,
    realm_loss_fn,
    realm_step,
)


def resolve_config(config: ConfigDict, workdir: str, stage: str) -> ConfigDict:
    """A copy of ``config`` for ``stage`` with its block store directory filled in."""
    if config.stage != stage:
        raise ConfigError(f"config.stage={config.stage!r}, but this is the {stage} trainer")
    if config.checkpoint_every_steps < 1 or config.log_every_steps < 1:
        raise ConfigError("checkpoint_every_steps and log_every_steps must be >= 1")
    check_config(config)
    config = config.copy_and_resolve_references()
    with config.unlocked():
        config.data.blocks_dir = os.path.abspath(ip.blocks_dir(config, workdir))
    if stage == "mlm" and config.mlm.get("hard_percent", 0) > 0:  # the ICT hard negatives' index
        ict = config.init.ict_workdir
        length = read_run_config(ict).ict.block_len
        if problem := source_index_problem(ict, length, config.data.blocks_dir):
            raise ConfigError(f"init.ict_workdir={ict}: {problem} (mlm.hard_percent > 0 ranks "
                              "hard negatives with it)")  # fmt: skip
    return config


def check_config(config: ConfigDict) -> None:
    """Fails fast, before anything is written, on fields a run would trip over later."""
    stage_model(config)  # model.bert, model.num_hidden_layers, model.dtype
    init = config.init
    if init.bert not in ("random", "minilm") and not os.path.exists(init.bert):
        raise ConfigError(f"init.bert={init.bert!r}: not random/minilm nor an existing path")
    for key in ("ict_workdir", "pretrain_workdir", "mlm_workdir"):
        if init.get(key) and not os.path.isfile(os.path.join(init[key], CONFIG_FILE)):
            raise ConfigError(f"init.{key}={init[key]!r}: not a run directory (no {CONFIG_FILE})")
    if "index" in config and config.index.mode not in ("sync", "async"):
        raise ConfigError(f"index.mode={config.index.mode!r}: expected 'sync' or 'async'")
    index = config.get("index")
    if config.stage == "realm" and index.mode == "sync":
        if index.refresh_every % config.checkpoint_every_steps:  # see indexing.SyncIndex
            raise ConfigError("index.refresh_every must be a multiple of checkpoint_every_steps")
    if index is not None and (problem := swap_lag_problem(config)):
        raise ConfigError(problem)
    if config.stage == "mlm" and config.mlm.get("hard_percent", 0) > 0 and not init.ict_workdir:
        raise ConfigError("mlm.hard_percent > 0 needs init.ict_workdir (the ICT run whose "
                          "retriever ranks the hard negatives)")  # fmt: skip
    if config.optim.get("trainable") and config.stage not in ("mlm", "realm"):
        raise ConfigError(f"optim.trainable is for the mlm and realm stages, not {config.stage}")
    if config.get("realm") and config.realm.get("require_evidence") and config.data.get(
        "target_corpus"
    ):
        raise ConfigError("realm.require_evidence looks for evidence in the corpus the queries "
                          "come from; with data.target_corpus (X != Z) it cannot")  # fmt: skip
    if config.stage == "openqa":
        o = config.openqa
        if o.retriever not in ("dense", "bm25"):
            raise ConfigError(f"openqa.retriever={o.retriever!r}: expected dense or bm25")
        if o.reader_beam > o.retriever_beam:
            raise ConfigError(f"openqa.reader_beam={o.reader_beam} > retriever_beam")


def check_workdir(config: ConfigDict, workdir: str) -> None:
    """A workdir that already holds a run must hold one of this stage and model shape (a resume);
    anything else is an error before a byte is written."""
    if not os.path.isfile(os.path.join(workdir, CONFIG_FILE)):
        return
    saved = read_run_config(workdir)
    # optim.lr_scaled adds a stage to the optimiser: its state would not restore without it.
    for key in ("stage", "optim.lr_scaled", *(f"model.{k}" for k in config.model)):
        old, new = saved, config
        for part in key.split("."):
            old, new = old.get(part) if old is not None else None, new.get(part)
        if old != new:
            raise ConfigError(f"{workdir} holds a run with {key}={old!r}, but this config has "
                              f"{key}={new!r}; use a new --workdir")  # fmt: skip


def setup_stage(config: ConfigDict, workdir: str, stage: str, spans: bool = False):
    """Checks the config and workdir, packs the corpus, builds the model and its step-0 params."""
    config = resolve_config(config, workdir, stage)
    check_workdir(config, workdir)
    tokenizer = shared_tokenizer()
    store = ip.prepare_blocks(config, config.data.blocks_dir, tokenizer, salient_spans=spans)
    model = stage_model(config)
    params, sources = initial_params(config, jax.random.PRNGKey(config.seed))
    save_config(config, workdir)  # only once the run can start: a bad input leaves no workdir
    if jax.process_index() == 0:
        print(f"{stage}: {len(store)} blocks; initial params: {sources}", flush=True)
    spec = EmbedderSpec.from_realm_config(realm_config(config.model))
    return config, tokenizer, store, model, params, spec


def _mean_eval(eval_step, params: dict, batches) -> dict:
    """Held-out metrics over ``batches``, each batch's global means averaged."""
    replicated = replicate(params)
    results = [host_metrics(eval_step(replicated, shard(b))) for b in batches]
    return {k: float(np.mean([r[k] for r in results])) for k in results[0]}


# ---------------------------------------------------------------------------------------------


def train_ict(config: ConfigDict, workdir: str) -> dict:
    """ORQA's Inverse Cloze Task; publishes the final retriever's index for the next stages."""
    config, _, store, model, params, spec = setup_stage(config, workdir, "ict")
    batches = ip.IctBatches(store, config)
    eval_step = make_eval_step(ict_loss_fn(model), ICT_METRICS)
    held_out = [batches(i, ip.EVAL) for i in range(config.eval.num_batches)]

    def on_end(step: int, params: dict) -> None:
        if config.index.publish_final:
            index_dir = os.path.join(workdir, INDEX_DIR)
            SyncIndex(index_dir, spec, store, config.index, config.ict.block_len,
                      config.progress).build(step, params)  # fmt: skip

    stage = Stage(
        "ict",
        create_state(config, params),
        ict_step(model),
        batch_at=lambda step, params: batches(step),
        evaluate=lambda step, params: _mean_eval(eval_step, params, held_out),
        on_end=on_end,
        embedder_spec=spec,
    )
    return run_loop(config, workdir, stage)


def retrieval_recall(
    snapshot: Snapshot, tower: dict, encoder: QueryEncoder, store: BlockStore, tokenizer,
    rows: list[dict], query_len: int, k: int = 5,
) -> float:  # fmt: skip
    """Percent of questions with an answer in the top-k blocks of ``snapshot`` (ORQA's recall)."""
    if not rows:
        return 0.0
    ids = question_ids(store, tokenizer, [r["question"] for r in rows], query_len)
    _, top = snapshot.searcher.search(encoder(tower, ids), min(k, snapshot.searcher.num_blocks))
    hits = [
        any(has_answer(store.text(int(b)), r["answers"]) for b in row if b >= 0)
        for row, r in zip(top, rows, strict=True)
    ]
    return 100.0 * float(np.mean(hits))


def train_realm(config: ConfigDict, workdir: str) -> dict:
    """REALM pre-training against an index refreshed every few hundred steps (sync or async)."""
    config, tokenizer, store, model, params, spec = setup_stage(
        config, workdir, "realm", spans=True
    )
    r, index_cfg = config.realm, config.index
    target = ip.target_config(config)  # X != Z (CC-News): queries from their own block store
    if target is not None:
        x_store = ip.prepare_blocks(target, ip.blocks_dir(target, workdir), tokenizer, True)
        queries = ip.MaskedQueries(x_store, tokenizer, config)
    else:
        x_store, queries = store, ip.MaskedQueries(store, tokenizer, config)
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    index = make_index(index_cfg, os.path.join(workdir, INDEX_DIR), spec, store, r.cand_len,
                       checkpoint_dir, config.progress, config.checkpoint_every_steps)  # fmt: skip
    seed = source_index(config.init.ict_workdir, r.cand_len, config.data.blocks_dir)
    encoder = QueryEncoder(spec)
    eval_step = make_eval_step(realm_loss_fn(model, r.joint_marginal), REALM_METRICS)
    recall_rows = []
    if config.eval.recall_questions:
        dataset, _, split = config.eval.recall_questions.partition(":")
        recall_rows = ip.load_questions(dataset, split or "dev")[: config.eval.num_questions]

    def snapshot_tower(snapshot: Snapshot, params: dict) -> dict:
        # Queries are embedded by the index's own embedder (REALM's example generators do).
        shared = config.model.share_embedders and snapshot.tower is not None
        return snapshot.tower if shared else query_tower(params)

    def batch_for(snapshot: Snapshot, params: dict, masked) -> dict:
        tower = snapshot_tower(snapshot, params)
        k = min(r.num_candidates, snapshot.searcher.num_blocks)
        search = lambda ids: snapshot.searcher.search(encoder(tower, ids), k)[1]
        own = [x_store.uid(q.block_index) for q in masked]  # never retrieve x's own block
        return realm_batch(store, masked, search, r.num_candidates, r.query_len, r.cand_len,
                           max_masks=r.max_masks, query_uids=own)  # fmt: skip

    used: dict[int, tuple[int, float]] = {}  # train step -> (its index's step, ms to get it)

    def batch_at(step: int, params: dict) -> dict:
        t0 = time.perf_counter()
        snapshot = index.current(step, params)  # async: a reference swap (swap_lag: may wait)
        used[step] = snapshot.step, 1e3 * (time.perf_counter() - t0)
        return batch_for(snapshot, params, queries(step))

    def step_extras(step: int) -> dict:
        # Staleness: how many updates the document embeddings lag behind the trained params.
        index_step, wait_ms = used.pop(step)
        return {"index_step": index_step, "staleness": step - index_step, "index_ms": wait_ms}

    def evaluate(step: int, params: dict) -> dict:
        snapshot = index.snapshot
        batches = [batch_for(snapshot, params, queries(i, ip.EVAL))
                   for i in range(config.eval.num_batches)]  # fmt: skip
        metrics = _mean_eval(eval_step, params, batches)
        metrics["index_step"] = snapshot.step
        if recall_rows:
            tower = snapshot_tower(snapshot, params)
            metrics["recall_at_5"] = retrieval_recall(
                snapshot, tower, encoder, store, tokenizer, recall_rows, r.query_len
            )
        return metrics

    def on_end(step: int, params: dict) -> None:
        if jax.process_index() == 0:
            mark_done(checkpoint_dir)  # the refresher indexes this last step, then exits
        if index_cfg.publish_final or index_cfg.mode == "async":
            index.finish(step, params)

    stage = Stage(
        "realm",
        create_state(config, params),
        realm_step(model, r.joint_marginal, trainable=config.optim.trainable,
                   retriever_gradient=r.retriever_gradient),
        batch_at=batch_at,
        evaluate=evaluate,
        on_start=lambda step, params: index.start(step, params, seed if step == 0 else None),
        on_end=on_end,
        embedder_spec=spec,
        step_extras=step_extras,
        save_initial=index_cfg.mode == "async",  # the refresher reads checkpoints, step 0 too
    )
    try:
        return run_loop(config, workdir, stage)
    finally:
        index.close()


# ---------------------------------------------------------------------------------------------


def openqa_data(
    config: ConfigDict, store: BlockStore, tokenizer: Tokenizer, spec: EmbedderSpec,
    snapshot: Snapshot | None,
) -> OpenQAData:  # fmt: skip
    """Retrieval (dense over the frozen index, or BM25) and batching for an open-QA config."""
    kind = config.openqa.retriever
    if kind == "dense":
        retriever = DenseRetriever(QueryEncoder(spec), snapshot.searcher)
        block_emb = snapshot.block_emb
    elif kind == "bm25":
        from realm_jax.baselines.bm25 import BM25Searcher

        retriever = BM25Retriever(BM25Searcher.from_store(store))
        # Zero embeddings: retrieval logits are 0, so the reader alone ranks BM25's beam.
        shape = (len(store), spec.proj_size)
        block_emb = np.broadcast_to(np.zeros(spec.proj_size, np.float32), shape)
    else:
        raise ConfigError(f"openqa.retriever={kind!r}: expected 'dense' or 'bm25'")
    return OpenQAData(store, tokenizer, config, retriever, block_emb)


def _questions(config: ConfigDict, split: str) -> list[dict]:
    rows = ip.openqa_questions(config, split)
    if config.openqa.only_gold_in_corpus:
        rows = ip.keep_answerable(rows, {i for i, _, _ in ip.corpus_documents(config.data)})
    return rows


def train_openqa(config: ConfigDict, workdir: str) -> dict:
    """ORQA fine-tuning: a frozen index of Z, a trainable query tower, a reader over the beam."""
    config, tokenizer, store, model, params, spec = setup_stage(config, workdir, "openqa")
    o = config.openqa
    snapshot = None
    if o.retriever == "dense":  # frozen: index 0, from the starting doc tower, even on resume
        frozen = SyncIndex(os.path.join(workdir, INDEX_DIR), spec, store, config.index,
                           config.data.block_len, config.progress)  # fmt: skip
        source = retriever_source(config)
        snapshot = frozen.start(0, params, source_index(source, config.data.block_len,
                                                         config.data.blocks_dir))  # fmt: skip
    data = openqa_data(config, store, tokenizer, spec, snapshot)
    train_rows, dev_rows = _questions(config, "train"), _questions(config, "dev")
    if not train_rows:
        raise ConfigError("no training questions (check openqa.dataset / only_gold_in_corpus)")
    if jax.process_index() == 0:
        print(f"openqa: {len(train_rows)} train / {len(dev_rows)} dev questions", flush=True)
    dev_rows = dev_rows[: config.eval.num_questions]
    answerer = Answerer(model, data)

    def evaluate(step: int, params: dict) -> dict:
        if not dev_rows:
            return {}
        questions = [row["question"] for row in dev_rows]
        predictions = answerer(params, questions, config.eval.predict_batch_size)
        return score_predictions(dev_rows, predictions, o.regex)

    stage = Stage(
        "openqa",
        create_state(config, params),
        openqa_step(model),
        batch_at=data.train_batches(train_rows),
        evaluate=evaluate,
        embedder_spec=spec,
    )
    return run_loop(config, workdir, stage)


def load_openqa_run(workdir: str) -> tuple[ConfigDict, dict, Answerer]:
    """A fine-tuned run's config, latest params and answerer (what predict.py serves)."""
    if read_run_config(workdir).stage != "openqa":
        raise ConfigError(
            f"{workdir} is a {read_run_config(workdir).stage} run, not an open-QA one"
        )
    config, params, _ = restore_run_params(workdir)
    params = jax.device_put(params)  # once, not with every prediction batch
    spec = EmbedderSpec.from_realm_config(realm_config(config.model))
    snapshot = None
    if config.openqa.retriever == "dense":  # the run's index, or its newest corpus version
        from realm_jax.train.corpus_edit import load_serving

        serving = load_serving(workdir, config)
        store = serving.view
        snapshot = Snapshot(serving.meta["index"]["step"], serving.searcher, serving.block_emb,
                            None)  # fmt: skip
    else:
        store = BlockStore(config.data.blocks_dir)
    data = openqa_data(config, store, shared_tokenizer(), spec, snapshot)
    return config, params, Answerer(stage_model(config), data)
