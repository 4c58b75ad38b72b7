"""The MIPS benchmark at toy size: every method runs, exact ones are exact, the JSON is whole."""

import json

import pytest

from realm_jax.benchmarks.mips import mips_main
from realm_jax.benchmarks.mips_sweep import SweepPoint, best_at, matched_recall_rows, pareto_front


def test_best_at_picks_the_fastest_point_that_reaches_the_recall():
    points = [
        SweepPoint("a", "x=1", 1.0, 1.0, qps=900.0, recall=0.80),
        SweepPoint("a", "x=2", 1.0, 1.0, qps=500.0, recall=0.96),
        SweepPoint("a", "x=4", 1.0, 1.0, qps=300.0, recall=0.995),
        SweepPoint("b", "-", 2.0, 3.0, qps=100.0, recall=1.0),
    ]
    assert {m: p.setting for m, p in best_at(points, 0.95).items()} == {"a": "x=2", "b": "-"}
    assert best_at(points, 0.999).keys() == {"b"}
    assert [p.setting for p in pareto_front(points)] == ["x=1", "x=2", "x=4", "-"]
    rows = matched_recall_rows(points, (0.9, 0.999))
    assert rows[0] == ["a", 1.0, 1.0, "500 (x=2)", "not reached"]
    assert rows[1][3:] == ["100 (-)", "100 (-)"]


def test_mips_main_times_every_method_and_prints_the_json_line(capsys, tmp_path):
    plot = str(tmp_path / "recall_qps.png")
    result = mips_main(n=4000, dim=16, num_queries=40, k=10, rounds=1, num_clusters=20,
                       noise=0.6, plot=plot)
    out = capsys.readouterr().out
    printed = json.loads(out.strip().splitlines()[-1])
    for key in ("exact_qps", "jax_exact_qps", "scann_qps", "raw_scann_qps", "faiss_flat_qps",
                "scann_qps_at_095", "best_faiss_qps_at_095", "best_faiss_method",
                "compute_limit_qps"):
        assert key in printed, key
    assert printed["best_faiss_method"].startswith("faiss")
    for method in ("faiss FlatIP", "faiss IVFFlat", "faiss HNSWFlat", "ScannSearcher (ours)"):
        assert method in out, method
    # Exact search is exact: the ExactSearcher row and faiss flat reach recall 1.
    exact = next(line for line in out.splitlines() if line.startswith("| ExactSearcher"))
    assert exact.split("|")[4].strip() == "1.000", exact
    flat = [line for line in out.splitlines() if line.startswith("| faiss FlatIP")]
    assert flat and "(exact=-)" in flat[0] and "not reached" not in flat[0]
    assert (tmp_path / "recall_qps.png").stat().st_size > 0
    saved = json.loads((tmp_path / "recall_qps.json").read_text())
    assert {p["method"].split(" (")[0] for p in saved} >= {"faiss FlatIP", "ScannSearcher"}
    assert result["scann_vs_best_faiss_at_095"] == pytest.approx(
        result["scann_qps_at_095"] / result["best_faiss_qps_at_095"]
    )
