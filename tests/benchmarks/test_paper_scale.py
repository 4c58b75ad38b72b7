"""The paper-scale benchmark's code path at a size a test can afford (the full run is recorded in
experiments/benchmarks/RESULTS.md): streamed exact reference, sample-then-stream ScaNN build over a
memory map, IndexStore publish and load."""

import json

import numpy as np
import pytest

from realm_jax.benchmarks.paper_scale import FileRows, paper_scale_main, write_embeddings
from realm_jax.index.searcher import BFLOAT16


@pytest.mark.parametrize("dtype", [np.float32, BFLOAT16])
def test_file_rows_read_what_the_memory_map_holds(tmp_path, dtype):
    centers = np.random.default_rng(0).standard_normal((8, 16), dtype=np.float32)
    path = str(tmp_path / "emb.npy")
    emb = write_embeddings(path, 1000, centers, 0.5, np.dtype(dtype), seed=3, chunk=300)
    rows = FileRows(path, np.dtype(dtype))
    assert rows.shape == emb.shape and len(rows) == 1000
    for cut in (slice(0, 7), slice(290, 610), slice(995, 1200)):
        np.testing.assert_array_equal(rows[cut].view(np.uint8), np.asarray(emb[cut]).view(np.uint8))


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_paper_scale_small_run(tmp_path, capsys, dtype):
    # 60,000 rows: above ScaNN's 50,000-row training sample, so the rows are streamed in.
    record = paper_scale_main(60_000, 32, dtype, 200, 256, 0.6, str(tmp_path))
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) == json.loads(json.dumps(record))
    # The published-and-loaded index answers as the built one (float32 rounding; near-ties).
    assert float(record["loaded_max_rel_diff"]) <= 1e-5 and record["loaded_same_ids"] >= 0.99
    assert record["n"] == 60_000 and record["recall_at_10"] >= 0.9, record
    assert 0 < record["peak_rss_gib"] < 4, record
