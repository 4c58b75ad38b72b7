"""experiments/build_blocks.py as a user runs it: a store with spans, or one stderr line."""

import itertools
import json
import os
import subprocess
import sys

import pytest

from realm_jax.assets import MINI_PASSAGES
from realm_jax.data.blocks import BlockStore
from realm_jax.data.salient_spans import SalientSpans

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "experiments", "build_blocks.py")


def _run(*args: str, cwd: str = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_builds_blocks_and_salient_spans(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    with open(MINI_PASSAGES, encoding="utf-8") as f:
        corpus.write_text("".join(itertools.islice(f, 10)), encoding="utf-8")
    out = tmp_path / "blocks"
    result = _run(
        "--corpus", str(corpus), "--output", str(out), "--max_len", "128", "--salient_spans"
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads(result.stdout.strip().splitlines()[-1])
    store = BlockStore(out)
    assert meta["num_blocks"] == len(store) > 10 and meta["max_len"] == 128
    assert meta["num_salient_spans"] == SalientSpans(store).meta["num_spans"] > 0


def test_bad_input_is_one_stderr_line_and_exit_1(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"title": "a", "text": "b."}\n{"title": "a"}\n', encoding="utf-8")
    result = _run("--corpus", str(corpus), "--output", str(tmp_path / "blocks"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {corpus}:2: missing field 'text'"
    assert os.listdir(tmp_path) == ["corpus.jsonl"]


@pytest.mark.parametrize("output", ["", ".", "{dir}", "{corpus}"])
def test_an_output_that_is_empty_or_holds_the_input_is_refused(tmp_path, output, monkeypatch):
    """--output= with --overwrite once meant the current directory, deleted with the corpus in
    it; an empty path, the input's directory or the input itself is refused before any write."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"title": "a", "text": "b."}\n', encoding="utf-8")
    output = output.format(dir=tmp_path, corpus=corpus)
    result = _run("--corpus", str(corpus), f"--output={output}", "--overwrite", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    if not output:
        message = "--output is empty"
    else:
        message = "is an input" if output == str(corpus) else "holds the input"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --output") and message in lines[0]
    assert os.listdir(tmp_path) == ["corpus.jsonl"]
