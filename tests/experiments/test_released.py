"""Released artifacts end to end: TF files in the original formats -> our run -> predictions.

Synthetic stand-ins for ``orqa_nq_model_from_realm``, ``cc_news_pretrained/{embedder,bert}``,
``encoded.ckpt`` and ``enwiki-20181220/{blocks,titles}.tfr`` (tests/convert/tf_artifacts.py) at
the tiny shape of the released configs (``:tiny``); the scripts run as a user runs them.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from realm_jax.assets import MINI_PASSAGES
from realm_jax.data.blocks import BlockStore, build_blocks_from_files
from realm_jax.data.questions import read_questions
from realm_jax.index.exact import ExactSearcher
from realm_jax.index.scann_searcher import ScannParams, ScannSearcher
from realm_jax.index.searcher import numpy_top_k, recall_at_k
from realm_jax.run.model_setup import restore_run_params
from realm_jax.utils.jsonl import iter_jsonl
from tests.convert.tf_artifacts import (
    write_artifact,
    write_block_emb,
    write_tfrecord_strings,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "experiments", "configs")
# The tiny released shape: tiny_config() BERT (real 30,522-word vocab), proj 16, span head 12.
DIMS = dict(vocab=30522, hidden=32, layers=2, inter=64, positions=512, proj=16, span=12)
NUM_QUESTIONS = 12


def load_config(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(script, *args, cwd=REPO):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, os.path.join(REPO, "experiments", script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A download directory laid out as REALM's release: 40 real Wikipedia blocks, the gold
    passages of 12 mini-NQ test questions among them, and random weights of the tiny shape."""
    root = tmp_path_factory.mktemp("realm_release")
    questions = read_questions("mini_nq", "test")[:NUM_QUESTIONS]
    gold = {q["gold_passage_id"] for q in questions}
    passages = [r for _, r in iter_jsonl(MINI_PASSAGES, ("title", "text"))]
    chosen = [p for p in passages if p["id"] in gold]
    chosen += [p for p in passages if p["id"] not in gold][: 40 - len(chosen)]
    wiki = root / "enwiki-20181220"
    wiki.mkdir()
    write_tfrecord_strings(str(wiki / "blocks.tfr"), [p["text"] for p in chosen])
    write_tfrecord_strings(str(wiki / "titles.tfr"), [p["title"] for p in chosen])
    model = root / "orqa_nq_model_from_realm" / "export" / "best_default" / "checkpoint"
    _, values = write_artifact(str(model), "openqa", DIMS, seed=0)
    embedder = root / "cc_news_pretrained" / "embedder"
    _, embedder_values = write_artifact(str(embedder), "embedder", DIMS, seed=1)
    write_artifact(str(root / "cc_news_pretrained" / "bert"), "encoder", DIMS, seed=2)
    block_emb = np.random.default_rng(3).normal(size=(len(chosen), 16)).astype(np.float32)
    write_block_emb(str(embedder), block_emb)
    with open(root / "questions.jsonl", "w", encoding="utf-8") as f:
        for q in questions:
            f.write(json.dumps({"question": q["question"], "answer": q["answers"]}) + "\n")
    titles = [p["title"] for p in chosen]
    return dict(root=root, values=values, block_emb=block_emb, n=len(chosen), titles=titles,
                embedder_values=embedder_values)


def test_released_nq_model_converts_and_evaluates(release, tmp_path):
    """convert.py with the config's default paths (run from the download dir), then evaluate.py."""
    root, workdir = release["root"], str(tmp_path / "orqa_nq_released")
    config = os.path.join(CONFIGS, "openqa_nq_released.py") + ":tiny"
    out = _run("convert.py", f"--config={config}", f"--workdir={workdir}", cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["num_blocks"] == release["n"] and info["format"] == "tf"
    print(out.stdout.strip().splitlines()[-2])

    config, params, step = restore_run_params(workdir)
    assert step == 0 and config.model.hidden_act == "gelu_new"
    reader = params["params"]["reader"]
    np.testing.assert_array_equal(reader["span_intermediate"]["kernel"],
                                  release["values"]["reader/dense/kernel"])
    tower = params["params"]["retriever"]["embedder"]["bert"]["embeddings"]
    np.testing.assert_array_equal(
        tower["word_embeddings"]["embedding"],
        release["values"]["module/module/module/module/bert/embeddings/word_embeddings"],
    )

    predictions = str(tmp_path / "P.jsonl")
    out = _run("evaluate.py", f"--checkpoint={workdir}",
               f"--questions={root / 'questions.jsonl'}", f"--output={predictions}")
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    print(out.stdout.strip().splitlines()[-2])
    assert metrics["n"] == NUM_QUESTIONS and 0.0 <= metrics["exact_match"] <= 100.0
    with open(predictions, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == NUM_QUESTIONS and all(len(r["evidence"]) == 5 for r in rows)
    store = BlockStore(config.data.blocks_dir)  # block i is record i: the rows of block_emb
    assert [store.title(i) for i in range(len(store))] == release["titles"]

    # The pretrained embedder that made block_emb sits beside the index: corpus edits use it.
    from realm_jax.index.towers import load_tower
    from realm_jax.serve.cli import main

    tower = load_tower(os.path.join(workdir, "index"), 0)["params"]["bert"]["embeddings"]
    np.testing.assert_array_equal(
        tower["word_embeddings"]["embedding"],
        release["embedder_values"]["module/module/module/bert/embeddings/word_embeddings"],
    )
    edit = tmp_path / "add.jsonl"
    edit.write_text(json.dumps({"id": 40, "title": "New", "text": "A new block of text."}) + "\n")
    assert main(["corpus", "add", "--workdir", workdir, str(edit)]) == 0


def test_bad_release_fails_in_one_line_and_writes_nothing(release, tmp_path):
    root = release["root"]
    short = root / "short_emb"
    write_block_emb(str(short), release["block_emb"][:-1])
    workdir = str(tmp_path / "bad")
    config = os.path.join(CONFIGS, "openqa_nq_released.py") + ":tiny"
    out = _run("convert.py", f"--config={config}", f"--workdir={workdir}",
               f"--config.released.block_emb={short}", cwd=root)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: enwiki-20181220/blocks.tfr: {release['n']} blocks, but the block embeddings "
        f"have {release['n'] - 1} rows"
    )
    assert not os.path.exists(workdir) and not os.path.exists(workdir + ".tmp")
    out = _run("convert.py", f"--config={config}", f"--workdir={workdir}",
               "--config.released.checkpoint=nowhere/model.ckpt", cwd=root)
    assert out.returncode == 1 and not os.path.exists(workdir)
    assert out.stderr.strip().splitlines()[-1] == (
        "error: nowhere/model.ckpt: no such TF checkpoint (expected nowhere/model.ckpt.index)"
    )


def test_released_realm_run_feeds_finetuning(release, tmp_path):
    """cc_news_pretrained -> a REALM run whose params and index fine-tuning starts from."""
    from realm_jax.convert.released_run import convert_released
    from realm_jax.data.tokenization import shared_tokenizer
    from realm_jax.index.published import source_index

    config = load_config("realm_ccnews_released").get_config("tiny")
    root = release["root"]
    with config.unlocked():
        config.released.checkpoint = str(root / "cc_news_pretrained" / "embedder")
        config.released.encoder_checkpoint = str(root / "cc_news_pretrained" / "bert")
        config.released.block_emb = str(root / "cc_news_pretrained" / "embedder")
        config.data.corpus = str(root / "enwiki-20181220" / "blocks.tfr")
        config.data.titles = str(root / "enwiki-20181220" / "titles.tfr")
    workdir = str(tmp_path / "realm_released")
    convert_released(config, workdir, shared_tokenizer())
    saved, params, _ = restore_run_params(workdir)
    assert set(params["params"]) == {"retriever", "encoder"}
    snapshot = source_index(workdir, config.data.block_len, saved.data.blocks_dir)
    assert snapshot is not None and snapshot.step == 0 and snapshot.tower is not None
    np.testing.assert_array_equal(np.asarray(snapshot.block_emb), release["block_emb"])


def test_hf_port_openqa_checkpoint_and_block_records(release, tmp_path, monkeypatch):
    """The port's RealmForOpenQA (save_pretrained) + block_records.npy -> an open-QA run."""
    import torch
    from transformers.models.deprecated.realm import configuration_realm, modeling_realm

    from realm_jax.convert import released_run
    from realm_jax.convert.released_run import convert_released
    from realm_jax.data.tokenization import shared_tokenizer
    from realm_jax.openqa.answerer import load_openqa_run

    reads = []  # the state dict gives both the params and block_emb: read once
    read = released_run.load_state_dict
    monkeypatch.setattr(released_run, "load_state_dict", lambda p: reads.append(p) or read(p))

    texts = [p.encode() for p in ("Paris is the capital of France.", "The Nile is long.") * 5]
    hf_cfg = configuration_realm.RealmConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        retriever_proj_size=16, span_hidden_size=12, max_span_width=4,
        num_block_records=len(texts),
    )
    torch.manual_seed(0)
    hf = modeling_realm.RealmForOpenQA(hf_cfg).eval()
    with torch.no_grad():
        hf.block_emb.normal_()
    hf.save_pretrained(str(tmp_path / "hf"), safe_serialization=False)
    records = str(tmp_path / "block_records.npy")
    np.save(records, np.array(texts, dtype=object), allow_pickle=True)

    config = load_config("openqa_nq_released").get_config("tiny")
    with config.unlocked():
        config.released.format, config.released.checkpoint = "hf", str(tmp_path / "hf")
        config.released.block_emb = None  # carried by the port's state dict
        config.released.doc_tower = None  # not saved: edits would need `realm-jax index` first
        config.data.corpus, config.data.titles = records, None
    workdir = str(tmp_path / "hf_run")
    info = convert_released(config, workdir, shared_tokenizer())
    assert info["format"] == "hf" and info["num_blocks"] == len(texts)
    assert reads == [str(tmp_path / "hf")]
    _, params, answer = load_openqa_run(workdir)
    kernel = params["params"]["reader"]["span_output"]["kernel"]
    np.testing.assert_array_equal(kernel, hf.reader.qa_outputs.dense_output.weight.detach().T)
    prediction = answer(params, ["what is the capital of france"], 1)[0]
    assert prediction["evidence"][0]["text"] in {t.decode() for t in texts}


def test_ten_thousand_blocks_and_their_embeddings_search_like_numpy(tmp_path):
    """blocks.tfr / titles.tfr + block_emb (10,000 blocks) -> store + searcher = numpy top-k."""
    n, dim = 10_000, 128
    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "river", "city", "king", "war", "song", "year"]
    texts = [f"Block {i}. " + " ".join(rng.choice(words, 12)) + "." for i in range(n)]
    blocks = write_tfrecord_strings(str(tmp_path / "blocks.tfr"), texts)
    titles = write_tfrecord_strings(str(tmp_path / "titles.tfr"), [f"Title {i}" for i in range(n)])
    centers = rng.normal(size=(50, dim))
    emb = (centers[rng.integers(0, 50, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)
    write_block_emb(str(tmp_path / "embedder"), emb)

    from realm_jax.convert.tf_checkpoint import load_block_emb

    meta = build_blocks_from_files(blocks, str(tmp_path / "store"), titles, progress=False)
    store = BlockStore(tmp_path / "store")
    assert meta["num_blocks"] == len(store) == n
    assert [store.text(i) for i in (0, 4_321, n - 1)] == [texts[0], texts[4_321], texts[-1]]
    block_emb = load_block_emb(str(tmp_path / "embedder"), dim)
    assert len(block_emb) == len(store)

    queries = (centers[rng.integers(0, 50, 64)] + 0.3 * rng.normal(size=(64, dim))).astype(
        np.float32
    )
    true_scores, true_ids = numpy_top_k(queries, emb, 10)
    scores, ids = ExactSearcher(block_emb).search(queries, 10)
    np.testing.assert_array_equal(ids, true_ids)
    np.testing.assert_allclose(scores, true_scores, rtol=1e-5)
    # ScaNN's brute force sums in another order: near-ties (< 1e-5 relative) may swap places.
    brute_scores, brute_ids = ScannSearcher.build(block_emb, ScannParams(0, 0, 0)).search(
        queries, 10
    )
    np.testing.assert_array_equal(np.sort(brute_ids, 1), np.sort(true_ids, 1))
    np.testing.assert_allclose(brute_scores, true_scores, rtol=1e-5)
    tree = ScannSearcher.build(block_emb)  # 100 leaves, 10 searched: approximate
    recall = recall_at_k(tree.search(queries, 10)[1], true_ids)
    print(f"10,000 released-format blocks: exact = numpy top-10; ScaNN tree recall@10 {recall:.3f}")
    assert recall >= 0.95
