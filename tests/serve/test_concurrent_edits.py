"""Two writers of one run at once, readers meanwhile, and a writer killed at each publish step.

On a copy of the facts run (conftest.py). Two spawned processes make ``TRIALS`` corpus adds each,
meeting at a barrier before every one so that the two edits of a trial race for the workdir lock,
while this process reloads the newest version and asks it a question over and over. The edits
are in-process ``apply_edit`` calls (what ``realm-jax corpus add`` runs once the model is loaded):
a ``realm-jax`` process per edit spends most of its time importing and restoring the model, so
the test uses the real command where it matters, for a killed writer and a lock timeout.
"""

import json
import logging
import multiprocessing
import os
import queue
import time

import pytest
from filelock import FileLock

from realm_jax.data.tokenization import shared_tokenizer
from realm_jax.errors import JsonlError
from realm_jax.index import corpus_edit, versions
from realm_jax.index.corpus_edit import apply_edit, check_records, load_serving, reindex
from realm_jax.run.files import RunDir, read_run_config
from realm_jax.run.model_setup import restore_run_params
from realm_jax.serve.api import RealmQA
from realm_jax.serve.cli import main
from tests.serve.cli_helpers import run_cli, write_edit_file

TRIALS = 20
SHARED_EVERY = 5  # every 5th trial both writers add the same id: one must be refused
AMBER = "what is the capital of Amber?"


class Killed(BaseException):
    """The writer dies here: nothing after this point runs, no clean-up either."""


def _doc(doc_id: str, city: str = "Quito") -> dict:
    text = f"The capital of Zone {doc_id} is {city}."
    return {"id": doc_id, "title": f"Zone {doc_id}", "text": text}


def _add(workdir, config, tokenizer, doc, source):
    records = check_records([dict(doc, line=1)], "add", source)
    return apply_edit(workdir, config, "add", records, source, tokenizer)


def _root(workdir):
    return versions.version_root(workdir)


def _assert_only_published_versions(workdir):
    latest = versions.latest_version(workdir)
    assert sorted(os.listdir(_root(workdir))) == sorted(["LATEST", *map(str, range(1, latest + 1))])


def _assert_present(serving, doc):
    """``doc`` is live in ``serving``: one block, its own title and text."""
    [row] = serving.meta["docs"][doc["id"]]
    view = serving.view
    assert not view.dead[row] and (view.title(row), view.text(row)) == (doc["title"], doc["text"])


def _assert_absent(serving, doc):
    view = serving.view
    assert doc["id"] not in serving.meta["docs"]
    assert all(view.title(r) != doc["title"] for r in range(len(view)) if not view.dead[r])


# ---------------------------------------------------------------------------------------------
# Two writers at once, a reader meanwhile.


def _editor(workdir, tag, barrier, results):
    """One writer process: TRIALS adds, each started at the barrier with the other writer's."""
    waits = []

    class Count(logging.Handler):
        def emit(self, record):
            waits.append(record.getMessage())

    logging.getLogger("realm_jax.run.lock").addHandler(Count())
    config, tokenizer = read_run_config(workdir), shared_tokenizer()
    for t in range(TRIALS):
        shared = t % SHARED_EVERY == SHARED_EVERY - 1
        doc = _doc(f"both-{t}" if shared else f"{tag}-{t}", city=tag)
        barrier.wait(timeout=120)
        try:
            info = _add(workdir, config, tokenizer, doc, f"{tag}-{t}.jsonl")
            results.put((tag, doc["id"], info["version"], None))
        except JsonlError as e:
            results.put((tag, doc["id"], None, str(e)))
    results.put((tag, "waits", len(waits), None))


def _read_and_ask(qa: RealmQA):
    """What ``RealmQA`` loads for the newest version (``load_openqa_run``: the corpus view, its
    searcher and rows; the checkpoint and the compiled query encoder kept), then one question;
    checks the version is whole and the evidence is blocks of it. Returns the version."""
    serving = load_serving(qa.workdir, qa.config)
    data = qa.answerer.data
    data.store, data.retriever.searcher = serving.view, serving.searcher
    data.block_emb = serving.block_emb
    version, docs, view = serving.version, serving.meta["docs"], serving.view
    assert serving.meta["deltas"] == list(range(1, version + 1)) and len(docs) == version
    for doc_id, rows in docs.items():  # every edit of the version, whole
        assert [view.title(r) for r in rows] == [f"Zone {doc_id}"]
    [p] = qa.ask(AMBER)
    assert len(p["evidence"]) == 5
    for e in p["evidence"]:
        b = e["block"]
        assert 0 <= b < len(view) and not view.dead[b]
        assert (e["title"], e["text"]) == (view.title(b), view.text(b))
    return version


@pytest.mark.slow
def test_two_writers_at_once_lose_no_edit_and_readers_see_whole_versions(
    run_copy, monkeypatch, capsys
):
    qa = RealmQA(run_copy)
    monkeypatch.setenv("XLA_FLAGS", "")  # the writers use one CPU device, as the run trained
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    writers = [ctx.Process(target=_editor, args=(run_copy, tag, barrier, results))
               for tag in ("p", "q")]
    start = time.perf_counter()
    for w in writers:
        w.start()
    reads, rows = [], []
    try:
        while any(w.is_alive() for w in writers):
            reads.append(_read_and_ask(qa))
            time.sleep(0.2)  # leave the writers most of the 2 cores
            while True:
                try:
                    rows.append(results.get_nowait())
                except queue.Empty:
                    break
    finally:
        for w in writers:
            w.join(timeout=60)
            if w.is_alive():
                w.terminate()
    seconds = time.perf_counter() - start
    assert [w.exitcode for w in writers] == [0, 0]
    while len(rows) < 2 * TRIALS + 2:
        rows.append(results.get(timeout=10))
    assert reads == sorted(reads)  # a reader never goes back to an older version

    waits = sum(n for _, doc_id, n, _ in rows if doc_id == "waits")
    edits = [r for r in rows if r[1] != "waits"]
    published = {(tag, doc_id): v for tag, doc_id, v, _ in edits if v is not None}
    refused = [(tag, doc_id, err) for tag, doc_id, v, err in edits if v is None]
    shared = {f"both-{t}" for t in range(TRIALS) if t % SHARED_EVERY == SHARED_EVERY - 1}
    assert sorted(doc_id for _, doc_id, _ in refused) == sorted(shared)  # one of each pair
    for _, doc_id, err in refused:
        assert "\n" not in err and f"id {doc_id} is already in the corpus" in err
    # Every other edit published exactly once, as its own version, numbered without a gap.
    assert sorted(published.values()) == list(range(1, 2 * TRIALS - len(shared) + 1))
    assert versions.latest_version(run_copy) == len(published)
    _assert_only_published_versions(run_copy)
    serving = load_serving(run_copy, qa.config)
    for (tag, doc_id), version in published.items():
        _assert_present(serving, _doc(doc_id, city=tag))
        with open(os.path.join(_root(run_copy), str(version), "meta.json")) as f:
            assert json.load(f)["source"].startswith(f"{tag}-")
    assert waits > 0  # the writers did meet at the lock
    with capsys.disabled():
        print(f"\n{TRIALS} trials of 2 concurrent edits: {len(published)} published, "
              f"{len(refused)} refused (same id), {waits} lock waits, {len(reads)} reads "
              f"(versions {reads[0]}..{reads[-1]}), {seconds:.1f} s")


# ---------------------------------------------------------------------------------------------
# Killed writers.


def _killer(original, when: str):
    """A publish step that dies before it runs, after it ran, or (LATEST) half-way."""

    def step(*args):
        if when == "after":
            original(*args)
        elif when == "inside":  # killed in LATEST's atomic write: its temporary file stays
            with open(os.path.join(_root(args[0]), ".LATEST.k1ll3d.tmp"), "w") as f:
                f.write("99\n")
        raise Killed(f"{original.__name__} ({when})")

    return step


KILL_POINTS = [  # (publish step, where it dies, whether the edit is then published)
    ("write_version", "before", False),  # blocks and arrays written, no meta.json
    ("rename_version", "before", False),  # <v>.tmp/ complete, not renamed
    ("write_latest", "before", False),  # <v>/ renamed, LATEST not moved
    ("write_latest", "inside", False),
    ("write_latest", "after", True),  # LATEST moved, the command never exited 0
]


def test_an_edit_killed_at_each_step_of_its_publish(run_copy, monkeypatch):
    config, tokenizer = read_run_config(run_copy), shared_tokenizer()
    acknowledged = []
    for i, (step, when, published) in enumerate(KILL_POINTS):
        killed = _doc(f"killed-{i}")
        with monkeypatch.context() as m:
            m.setattr(corpus_edit, "discard", lambda path: None)
            m.setattr(versions, step, _killer(getattr(versions, step), when))
            with pytest.raises(Killed):
                _add(run_copy, config, tokenizer, killed, "killed.jsonl")
        latest = versions.latest_version(run_copy) or 0
        if not published:  # something was left behind, which the next edit must clear
            assert {f"{latest + 1}.tmp", str(latest + 1)} & set(os.listdir(_root(run_copy)))
        doc = _doc(f"next-{i}")
        info = _add(run_copy, config, tokenizer, doc, f"next-{i}.jsonl")
        assert info["version"] == latest + 1  # the half-published number is reused
        acknowledged.append(doc)
        serving = load_serving(run_copy, config)
        for d in acknowledged:
            _assert_present(serving, d)
        (_assert_present if published else _assert_absent)(serving, killed)
        _assert_only_published_versions(run_copy)


def test_a_reindex_killed_before_its_version_leaves_a_usable_run(run_copy, monkeypatch):
    config, params, _ = restore_run_params(run_copy)
    tokenizer = shared_tokenizer()
    index_root = os.path.join(run_copy, versions.SERVING_INDEX)
    with monkeypatch.context() as m:  # dies after publishing its index step
        m.setattr(corpus_edit, "next_version", _killer(versions.next_version, "before"))
        with pytest.raises(Killed):
            reindex(run_copy, config, params, progress=False)
    assert "1" in os.listdir(index_root) and versions.latest_version(run_copy) is None
    _add(run_copy, config, tokenizer, _doc("a"), "a.jsonl")  # version 1, on the run's own index
    with monkeypatch.context() as m:  # dies after renaming its version, before LATEST
        m.setattr(corpus_edit, "discard", lambda path: None)
        m.setattr(versions, "write_latest", _killer(versions.write_latest, "before"))
        with pytest.raises(Killed):
            reindex(run_copy, config, params, progress=False)
    assert versions.latest_version(run_copy) == 1 and "2" in os.listdir(_root(run_copy))
    info = reindex(run_copy, config, params, progress=False)
    assert (info["version"], info["index_step"], info["embedded_blocks"]) == (2, 3, 9)
    assert sorted(n for n in os.listdir(index_root) if n.isdigit()) == ["3"]  # 1, 2 removed
    assert sorted(os.listdir(os.path.join(index_root, "towers"))) == ["3.npz"]
    _add(run_copy, config, tokenizer, _doc("b"), "b.jsonl")
    serving = load_serving(run_copy, config)
    assert serving.meta["index"] == {"dir": versions.SERVING_INDEX, "step": 3, "rows": 9}
    _assert_present(serving, _doc("a"))
    _assert_present(serving, _doc("b"))
    _assert_only_published_versions(run_copy)


def _killed_cli_edit(workdir, edit_file):
    """``realm-jax corpus add`` that dies (no clean-up, lock held) between renaming its version
    and moving LATEST."""
    versions.write_latest = lambda *args: os._exit(9)
    main(["corpus", "add", "--workdir", workdir, edit_file])


def test_a_killed_process_and_a_busy_lock_on_the_command_line(
    run_copy, tmp_path, monkeypatch, capsys
):
    killed = write_edit_file(tmp_path / "killed.jsonl", [_doc("killed")])
    monkeypatch.setenv("XLA_FLAGS", "")
    process = multiprocessing.get_context("spawn").Process(
        target=_killed_cli_edit, args=(run_copy, killed))
    process.start()
    process.join(300)
    assert process.exitcode == 9
    assert versions.latest_version(run_copy) is None and "1" in os.listdir(_root(run_copy))

    edit = write_edit_file(tmp_path / "next.jsonl", [_doc("next")])
    holder = FileLock(RunDir(run_copy).lock)  # another writer, still at work
    with holder:
        code, out, err = run_cli(capsys, "corpus", "add", "--workdir", run_copy, edit,
                              "--lock_timeout", "0.5")
    assert code == 1 and out == ""
    [waiting] = [line for line in err.splitlines() if "waits for another writer" in line]
    [error] = [line for line in err.splitlines() if line.startswith("error:")]
    assert waiting.startswith("warning: corpus add") and RunDir(run_copy).lock in waiting
    assert error == err.strip().splitlines()[-1]
    assert error.startswith(f"error: {run_copy}: ") and "0.5 s" in error
    assert versions.latest_version(run_copy) is None

    code, out, _ = run_cli(capsys, "corpus", "add", "--workdir", run_copy, edit)
    assert code == 0 and out.startswith("corpus version 1: add 1 document(s)")
    serving = load_serving(run_copy, read_run_config(run_copy))
    _assert_present(serving, _doc("next"))
    _assert_absent(serving, _doc("killed"))
    _assert_only_published_versions(run_copy)
    code, out, _ = run_cli(capsys, "ask", "--workdir", run_copy, AMBER, "--json")
    titles = [e["title"] for e in json.loads(out)["evidence"]]
    assert code == 0 and len(titles) == 5 and "Zone killed" not in titles
