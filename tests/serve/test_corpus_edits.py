"""Knowledge lives in the corpus: change a document, the answer follows, with no training step.

On the facts model (conftest.py): ``realm-jax ask`` answers from a document, ``realm-jax corpus
replace`` states another fact in it, and the same question gets the new answer with the edited
block as evidence. An edit embeds only the changed documents' blocks (counted, and timed).
"""

import json
import os

import jax
import numpy as np
import pytest

from realm_jax.data.tokenization import Tokenizer
from realm_jax.index import corpus_edit
from realm_jax.index.store import IndexStore
from realm_jax.models.retriever import Embedder
from realm_jax.openqa.answerer import question_ids
from realm_jax.run.files import read_run_config
from realm_jax.run.model_setup import realm_config, restore_run_params
from tests.serve.cli_helpers import run_cli, write_edit_file

AMBER = "what is the capital of Amber?"


def _checkpoint_files(workdir):
    root = os.path.join(workdir, "checkpoints")
    return sorted(
        (os.path.relpath(os.path.join(d, f), root), os.path.getsize(os.path.join(d, f)))
        for d, _, files in os.walk(root) for f in files
    )


def test_replace_changes_the_answer_without_training(run_copy, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, AMBER, "--color", "never")
    assert code == 0 and "A: London" in out
    assert "1. [" in out and "Amber (block 0)" in out and "[[London]]" in out
    checkpoints = _checkpoint_files(run_copy)

    oslo = {"id": 0, "title": "Amber", "text": "The capital of Amber is Oslo."}
    edit = write_edit_file(tmp_path / "edit.jsonl", [oslo])
    code, out, _ = run_cli(capsys, "corpus", "replace", "--workdir", run_copy, edit)
    assert code == 0, out
    info = json.loads(out.strip().splitlines()[-1])
    with capsys.disabled():
        print(out.strip().splitlines()[0])
    assert (info["embedded_blocks"], info["blocks_removed"], info["live_blocks"]) == (1, 1, 8)

    code, out, _ = run_cli(
        capsys, "ask", "--workdir", run_copy, AMBER, "--color", "never", "--json"
    )
    p = json.loads(out)
    assert p["prediction"] == "Oslo"
    top = p["evidence"][0]
    assert top["block"] == p["answer_block"] == 8  # the edited document's new block
    assert top["text"] == "The capital of Amber is Oslo." and top["title"] == "Amber"
    s, e = p["answer_chars"]
    assert top["text"][s:e] == "Oslo"
    assert all(ev["block"] != 0 for ev in p["evidence"])  # the superseded block is gone
    assert _checkpoint_files(run_copy) == checkpoints  # no training step, no new checkpoint
    code, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, AMBER, "--color", "always")
    assert "\033[1;33mOslo\033[0m" in out  # the span, highlighted in the terminal


def test_edit_cost_follows_the_changed_documents(run_copy, tmp_path, capsys):
    """1 document -> 1 block embedded; 3 -> 3; the corpus is never re-embedded by an edit."""
    docs = [json.loads(line) for line in open(read_run_config(run_copy).data.corpus)]
    timings = []
    for n in (1, 3):
        edit = write_edit_file(tmp_path / f"e{n}.jsonl", docs[:n])
        code, out, _ = run_cli(capsys, "corpus", "replace", "--workdir", run_copy, edit)
        info = json.loads(out.strip().splitlines()[-1])
        assert code == 0 and info["embedded_blocks"] == info["blocks_added"] == n
        timings.append((n, info["embed_seconds"], info["seconds"]))
    code, out, _ = run_cli(capsys, "index", "--workdir", run_copy)
    full = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and full["embedded_blocks"] == 8 + 1 + 3  # every row, dead ones too
    with capsys.disabled():
        print(f"edits (documents, embed s, total s): {timings}; re-index {full['seconds']} s")
    code, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, AMBER, "--json")
    assert json.loads(out)["prediction"] == "London"  # answers from the re-embedded index


def test_delete_then_add_back(run_copy, tmp_path, capsys):
    delete = write_edit_file(tmp_path / "d.jsonl", [{"id": 0}])
    assert run_cli(capsys, "corpus", "delete", "--workdir", run_copy, delete)[0] == 0
    _, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, AMBER, "--json")
    p = json.loads(out)
    assert all(e["title"] != "Amber" for e in p["evidence"]) and len(p["evidence"]) == 5
    lisbon = {"id": 0, "title": "Amber", "text": "The capital of Amber is Lisbon."}
    add = write_edit_file(tmp_path / "a.jsonl", [lisbon])
    assert run_cli(capsys, "corpus", "add", "--workdir", run_copy, add)[0] == 0
    _, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, AMBER, "--json")
    assert json.loads(out)["prediction"] == "Lisbon"


def test_evidence_probabilities_are_the_retrieval_distribution(run_copy, capsys):
    """p(z|x) recomputed here from the checkpoint and the index: softmax over the beam of the
    query tower's inner products (the beam holds every block, so it is the full p(z|x))."""
    code, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, AMBER, "--json")
    evidence = json.loads(out)["evidence"]
    config, params, _ = restore_run_params(run_copy)
    cfg = realm_config(config.model)
    tokenizer = Tokenizer()

    class Store:
        cls_id, sep_id = tokenizer.cls_id, tokenizer.sep_id

    ids = question_ids(Store, tokenizer, [AMBER], config.openqa.question_len)
    tower = {"params": params["params"]["retriever"]["embedder"]}
    q = Embedder(cfg.bert, cfg.proj_size, cfg.proj_layer_norm_eps).apply(
        tower, ids, (ids != 0).astype(np.int32)
    )
    block_emb = IndexStore(os.path.join(run_copy, "index")).load(0).block_emb
    p = np.asarray(jax.nn.softmax(np.asarray(block_emb, np.float32) @ np.asarray(q)[0]))
    shown = np.array([e["probability"] for e in evidence])
    np.testing.assert_allclose(shown, p[[e["block"] for e in evidence]], rtol=1e-5, atol=1e-7)
    assert shown.sum() <= 1.0 + 1e-6 and list(shown) == sorted(shown, reverse=True)
    with capsys.disabled():
        print(f"evidence p(z|x) {np.round(shown, 4).tolist()} (sum {shown.sum():.4f}, 8 blocks)")


@pytest.mark.parametrize("mode", ["arguments", "file"])
def test_ask_batch_mode_writes_predictions(run_copy, tmp_path, capsys, mode):
    out_path = str(tmp_path / "P.jsonl")
    questions = write_edit_file(tmp_path / "Q.jsonl", [{"question": AMBER}, {"question": "x y z"}])
    argv = ["--questions", questions, "--output", out_path] if mode == "file" else [AMBER]
    code, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, *argv)
    assert code == 0
    if mode == "file":
        rows = [json.loads(line) for line in open(out_path)]
        assert [r["question"] for r in rows] == [AMBER, "x y z"]
        assert rows[0]["prediction"] == "London"
        assert out.strip() == f"2 predictions written to {out_path}"


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_an_edit_that_fails_publishes_nothing(run_copy, tmp_path, capsys, monkeypatch, failure):
    """Killed while embedding (after its blocks were packed): no version, no temporary files."""

    birch = {"id": 1, "title": "Birch", "text": "The capital of Birch is Rome."}
    first = write_edit_file(tmp_path / "ok.jsonl", [birch])
    assert run_cli(capsys, "corpus", "replace", "--workdir", run_copy, first)[0] == 0
    serving = os.path.join(run_copy, "serving")
    before = sorted(os.listdir(os.path.join(serving, "corpus")))

    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(corpus_edit, "embed_blocks", broken)
    edit = write_edit_file(tmp_path / "e.jsonl", [{"id": 0, "title": "A", "text": "Amber is new."}])
    with pytest.raises(type(failure)):
        from realm_jax.serve.api import RealmQA

        RealmQA(run_copy).edit("replace", [{"id": 0, "title": "A", "text": "x", "line": 1}], edit)
    assert sorted(os.listdir(os.path.join(serving, "corpus"))) == before == ["1", "LATEST"]
    monkeypatch.undo()
    _, out, _ = run_cli(
        capsys, "ask", "--workdir", run_copy, "what is the capital of Birch?", "--json"
    )
    assert json.loads(out)["prediction"] == "Rome"  # version 1 still serves
