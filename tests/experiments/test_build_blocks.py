"""experiments/build_blocks.py as a user runs it: a store with spans, or one stderr line."""

import itertools
import json
import os
import subprocess
import sys

from realm_jax.assets import MINI_PASSAGES
from realm_jax.data.blocks import BlockStore
from realm_jax.data.salient_spans import SalientSpans

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "experiments", "build_blocks.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=REPO
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
