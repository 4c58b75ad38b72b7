"""experiments/reproduce.py: the plans chain correctly, the tables' paired differences from ORQA
and gate read hand-made run files, and a tiny Table 1 runs end to end.

The tiny run (ICT, MLM, REALM, three fine-tunings on mini NQ, 16 test questions each) is a
subprocess as a user runs it; its table must hold the scores evaluate.py gives for the same runs,
a second invocation must skip every finished run, and a third, in another directory from the
same ICT and MLM runs, must give the same figures (REALM's index is refreshed asynchronously).
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from realm_jax.errors import ConfigError
from realm_jax.reproduce import metrics, plan, report, runner, zero_shot
from realm_jax.reproduce.compare import compare_reproductions, table_figures
from realm_jax.reproduce.plan import Row

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "experiments", "configs")


@pytest.mark.parametrize("table", plan.TABLES)
@pytest.mark.parametrize("scale", plan.SCALES)
def test_plan_runs_come_after_the_runs_they_start_from(table, scale, tmp_path):
    runs, rows = plan.plan(table, scale)
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    root = str(tmp_path)
    (tmp_path / "realm").mkdir()  # the stale-index run measures the main REALM run's lag
    (tmp_path / "realm" / "metrics.jsonl").write_text(
        '{"step": 1, "split": "train", "staleness": 2.4}\n'
    )
    for i, run in enumerate(runs):
        config = runner.run_config(run, root, CONFIGS)  # every override names a real field
        assert config.stage == run.stage
        for field in ("init.ict_workdir", "init.pretrain_workdir", "init.mlm_workdir"):
            source = config.init.get(field.split(".")[1])
            if source:
                assert os.path.basename(source) in names[:i], (run.name, source)
        if run.stage == "realm":  # every REALM run starts from ICT's retriever and MLM's encoder
            assert config.init.ict_workdir == f"{root}/ict"
            assert config.init.mlm_workdir == f"{root}/mlm"
            assert config.realm.retriever_gradient == (run.name != "realm_control")
        if run.name == "realm_stale":
            assert config.index.min_index_age == 60  # 30 x the main run's max staleness (2)
        if scale == "long":  # only REALM runs take the long settings
            assert run.config.endswith(":long") == (run.stage == "realm"), run.config
    assert names[:3] == ["ict", "mlm", "realm"]
    assert runner.reference_run("mini_nq") in names  # every row's reference for vs_orqa
    for row in rows:
        assert set(row.runs.values()) <= set(names)
        assert row.pretrain in (None, *names)
    assert len(rows) == (3 if table == 1 else 7)
    # The control's zero-shot change is reported beside REALM's in the long Table 1 and Table 2.
    assert (plan.CONTROL in names) == (table == 2 or scale == "long")
    if table == 2:
        control = next(r for r in rows if r.runs["mini_nq"] == "openqa_realm_control_nq")
        assert control.label == "REALM, retriever gradient stopped (control)"
        assert control.pretrain == "realm_control"


def test_bad_plan_arguments():
    with pytest.raises(ValueError, match="scale 'huge'"):
        plan.plan(1, "huge")
    with pytest.raises(ValueError, match="mini_trec"):
        plan.plan(1, "mini", ("mini_trec",))
    config = runner.load_config(CONFIGS, "realm_mini.py")
    with pytest.raises(ConfigError, match="realm.maskr: no such config field"):
        runner.set_field(config, "realm.maskr", "random_span")


def _write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_gate_and_refresh_lag_read_the_runs_metrics(tmp_path):
    assert report.gate(str(tmp_path)) is None  # no MLM run yet
    _write_jsonl(tmp_path / "realm" / "metrics.jsonl", [
        {"step": 5, "split": "train", "loss": 3.0, "staleness": 1.0},
        {"step": 10, "split": "eval", "recall_at_5": 35.5},
    ])
    assert metrics.refresh_lag(str(tmp_path / "realm")) == 1
    evals = [
        {"step": 0, "split": "eval", "mlm_accuracy": 0.1, "oracle_utility": 0.0, "loss": 9.0},
        {"step": 5, "split": "train", "loss": 3.0},
        {"step": 150, "split": "eval", "mlm_accuracy": 0.42, "oracle_utility": 0.8,
         "null_mlm_accuracy": 0.3, "oracle_fraction": 0.6, "num_masks": 512.0, "loss": 2.0},
    ]
    _write_jsonl(tmp_path / "mlm" / "metrics.jsonl", evals)
    gate = report.gate(str(tmp_path))
    assert gate == {"mlm_accuracy": 0.42, "oracle_utility": 0.8, "null_mlm_accuracy": 0.3,
                    "oracle_fraction": 0.6, "num_masks": 512.0, "step": 150}
    line = report.gate_line(gate)
    assert "step 150" in line and "0.420" in line and "0.800 nats" in line and "512 masks" in line
    assert "not measured" in report.gate_line(None)


def _per_question(root, name, correct, gold):
    """A run's per-question file under root, and the scores ``runner.evaluate`` would return."""
    pairs = enumerate(zip(correct, gold, strict=True))
    records = [{"question": f"q{i}", "answers": ["a"], "prediction": "a" if c else "b",
                "correct": c, "gold_in_top5": g} for i, (c, g) in pairs]
    relative = f"{runner.PER_QUESTION_DIR}/{name}.mini_nq.test.jsonl"
    _write_jsonl(root / relative, records)
    n = len(records)
    return {"exact_match": 100.0 * sum(correct) / n, "recall_at_5": 100.0 * sum(gold) / n, "n": n,
            "per_question": relative}


def test_vs_orqa_pairs_each_row_with_the_reference_by_question(tmp_path):
    n = 8
    orqa_correct, orqa_gold = [True, False] * 4, [True, True, False, False] * 2
    scores = {
        "openqa_orqa_nq": _per_question(tmp_path, "openqa_orqa_nq", orqa_correct, orqa_gold),
        "same": _per_question(tmp_path, "same", orqa_correct, orqa_gold),
        "one_more": _per_question(tmp_path, "one_more", [True] * 2 + orqa_correct[2:], orqa_gold),
    }
    references = {"mini_nq": scores["openqa_orqa_nq"]}
    rows = [Row(name, {"mini_nq": name}) for name in scores]
    diffs = {r.label: report.vs_orqa(r, {"mini_nq": scores[r.label]}, references, str(tmp_path))
             for r in rows}
    assert diffs["openqa_orqa_nq"] == {"mini_nq": None}  # the reference row itself: null
    same = diffs["same"]["mini_nq"]
    for key in ("em", "recall_at_5"):
        assert same[key] == {"estimate": 0.0, "ci95": [0.0, 0.0]}
    one_more = diffs["one_more"]["mini_nq"]
    assert one_more["em"]["estimate"] == pytest.approx(100.0 / n)
    lo, hi = one_more["em"]["ci95"]
    assert 0.0 <= lo <= 100.0 / n <= hi
    assert one_more["recall_at_5"] == {"estimate": 0.0, "ci95": [0.0, 0.0]}
    # No reference (ORQA not trained): no differences.
    assert report.vs_orqa(rows[2], {"mini_nq": scores["one_more"]}, {"mini_nq": None},
                          str(tmp_path)) == {"mini_nq": None}

    # Matched by question text, not by position.
    path = tmp_path / scores["one_more"]["per_question"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join(reversed(lines)) + "\n")
    again = report.vs_orqa(rows[2], {"mini_nq": scores["one_more"]}, references, str(tmp_path))
    assert again == diffs["one_more"]

    # The table: each figure with its difference; ORQA's row none.
    results = {r.label: {"mini_nq": scores[r.label]} for r in rows}
    markdown, record = report.table(rows, results, str(tmp_path), "T", references)
    assert "| openqa_orqa_nq | 50.0 | 50.0 |" in markdown
    em = one_more["em"]
    assert f"| one_more | 62.5 (+12.5 [+{em['ci95'][0]:.1f}, +{em['ci95'][1]:.1f}]) |" in markdown
    assert "10,000 resamples, seed 0" in markdown and "8 mini_nq questions" in markdown
    assert [r["vs_orqa"] for r in record["rows"]] == [diffs[r.label] for r in rows]

    # Different questions: a clear error.
    _write_jsonl(path, [{"question": "q0", "correct": True, "gold_in_top5": True}])
    with pytest.raises(ValueError, match="not over the same questions: 7 only in ORQA's"):
        report.vs_orqa(rows[2], {"mini_nq": scores["one_more"]}, references, str(tmp_path))


def test_pretrain_zero_shot_reads_cached_records(tmp_path):
    def cache(run, hits, ranks):
        (tmp_path / run).mkdir()
        (tmp_path / run / runner.DONE_FILE).write_text("{}")
        records = [{"question": f"q{i}", "recall_at_5": h, "reciprocal_rank": r}
                   for i, (h, r) in enumerate(zip(hits, ranks, strict=True))]
        _write_jsonl(pathlib.Path(zero_shot.records_path(str(tmp_path), run, "mini_nq")), records)

    cache("ict", [True, False, False, False], [1.0, 0.0, 0.0, 0.5])
    cache("realm", [True, True, False, False], [1.0, 0.5, 0.0, 0.5])
    root, sets = str(tmp_path), ("mini_nq",)
    assert report.pretrain_zero_shot(root, None, sets) is None
    assert report.pretrain_zero_shot(root, "realm_stale", sets) is None  # not finished
    ict = report.pretrain_zero_shot(root, "ict", sets)
    assert ict == {"recall_at_5": 25.0, "mrr": 0.375, "change_vs_ict": None}
    realm = report.pretrain_zero_shot(root, "realm", sets)
    assert realm["recall_at_5"] == 50.0 and realm["mrr"] == 0.5
    assert realm["change_vs_ict"]["recall_at_5"]["estimate"] == 25.0
    assert realm["change_vs_ict"]["mrr"]["estimate"] == pytest.approx(0.125)


def _reproduce(env, workdir):
    cmd = [sys.executable, os.path.join(REPO, "experiments", "reproduce.py"), "--scale=tiny",
           "--datasets=mini_nq", "--max_test_questions=16", f"--workdir={workdir}"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)


@pytest.mark.slow
def test_tiny_table1_end_to_end_then_resumes(tmp_path):
    # The three reproductions share a persistent compilation cache: only the first compiles.
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    first = _reproduce(env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((tmp_path / "table1.json").read_text())
    systems = [r["system"] for r in record["rows"]]
    assert systems == ["BM25 + reader", "ORQA (ICT retriever)", "REALM"]
    markdown = (tmp_path / "table1.md").read_text()
    assert "reproducing the paper's Table 1" in first.stdout
    for row in record["rows"]:
        scores = row["mini_nq"]
        assert scores["n"] == 16
        assert 0.0 <= scores["exact_match"] <= 100.0 and 0.0 <= scores["recall_at_5"] <= 100.0
        em, recall = scores["exact_match"], scores["recall_at_5"]
        assert f"| {row['system']} | {em:.1f}" in markdown and f"{recall:.1f}" in markdown
        if row["system"] == "ORQA (ICT retriever)":
            assert row["vs_orqa"] == {"mini_nq": None}
            assert f"| {row['system']} | {em:.1f} | {recall:.1f} |" in markdown
        else:
            diff = row["vs_orqa"]["mini_nq"]
            for key in ("em", "recall_at_5"):
                lo, hi = diff[key]["ci95"]
                assert lo <= diff[key]["estimate"] <= hi
    assert set(record["zero_shot"]) == {"start", "realm", "change", "n_questions", "per_set"}
    assert record["zero_shot"]["n_questions"] > 0 and "Zero-shot retrieval" in markdown
    assert {"mlm_accuracy", "oracle_utility", "hard_utility"} <= set(record["gate"])
    assert "MLM warm-start gate" in markdown
    hard = f"the ICT retriever's best block without the span {record['gate']['hard_utility']:.3f}"
    assert hard in markdown
    assert set(record["run_seconds"]) == {
        "ict", "mlm", "realm", "openqa_bm25_nq", "openqa_orqa_nq", "openqa_realm_nq"
    }
    for run in record["run_seconds"]:  # each trained in its own process, its peak recorded
        done = json.loads((tmp_path / run / "reproduce.json").read_text())
        assert 0.1 < done["peak_rss_gib"] < 64, run
    png = (tmp_path / "realm_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # The table's REALM row is what evaluate.py reports for that run.
    from realm_jax.openqa.predict import evaluate_run

    direct = evaluate_run(str(tmp_path / "openqa_realm_nq"), "mini_nq", "test", max_questions=16)
    realm = record["rows"][2]["mini_nq"]
    np.testing.assert_allclose(
        [direct["exact_match"], direct["recall_at_5"]], [realm["exact_match"], realm["recall_at_5"]]
    )

    again = _reproduce(env, tmp_path)  # every run finished: skipped, scores cached
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before") == 6 and "evaluating" not in again.stdout
    assert json.loads((tmp_path / "table1.json").read_text())["rows"] == record["rows"]

    # A second reproduction gives the same figures, although its REALM stage refreshes the
    # index asynchronously (on realm_mini.py:tiny's swap schedule). It reuses the first one's
    # ICT and MLM runs (their run-to-run identity is test_determinism's) and retrains REALM and
    # the fine-tunings.
    realm_config = json.loads((tmp_path / "realm" / "config.json").read_text())
    assert realm_config["index"]["mode"] == "async" and realm_config["index"]["swap_lag"] == 2
    for run in ("ict", "mlm"):
        shutil.copytree(tmp_path / run, tmp_path / "rerun" / run)
    rerun = _reproduce(env, tmp_path / "rerun")
    assert rerun.stdout.count("done before") == 2, rerun.stdout[-2000:]
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    second = json.loads((tmp_path / "rerun" / "table1.json").read_text())
    for key in ("rows", "zero_shot", "gate"):
        assert table_figures(second[key]) == table_figures(record[key]), key
    items = compare_reproductions(str(tmp_path), str(tmp_path / "rerun"))
    assert len(items) == 6 and all(d is None for _, d in items), items  # table + 5 per-question
