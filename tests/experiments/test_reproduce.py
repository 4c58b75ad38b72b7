"""experiments/reproduce.py: the plans chain correctly, and a tiny Table 1 runs end to end.

The tiny run (ICT, REALM, three fine-tunings on mini NQ, 16 test questions each) is a subprocess as
a user runs it; its table must hold the scores evaluate.py gives for the same runs, and a second
invocation must skip every finished run.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from realm_jax.reproduce import plan, report, runner
from realm_jax.train.model_setup import ConfigError

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
        for field in ("init.ict_workdir", "init.pretrain_workdir"):
            source = config.init[field.split(".")[1]]
            if source:
                assert os.path.basename(source) in names[:i], (run.name, source)
        if run.name == "realm_stale":
            assert config.index.min_index_age == 60  # 30 x the main run's max staleness (2)
    for row in rows:
        assert set(row.runs.values()) <= set(names)
        assert row.pretrain in (None, *names)
    assert len(rows) == (3 if table == 1 else 6)


def test_bad_plan_arguments():
    with pytest.raises(ValueError, match="scale 'huge'"):
        plan.plan(1, "huge")
    with pytest.raises(ValueError, match="mini_trec"):
        plan.plan(1, "mini", ("mini_trec",))
    config = runner.load_config(CONFIGS, "realm_mini.py")
    with pytest.raises(ConfigError, match="realm.maskr: no such config field"):
        runner.set_field(config, "realm.maskr", "random_span")


def test_zero_shot_recall_reads_the_realm_runs_evals(tmp_path):
    (tmp_path / "realm").mkdir()
    records = [
        {"step": 0, "split": "eval", "recall_at_5": 30.0},
        {"step": 5, "split": "train", "loss": 3.0, "staleness": 1.0},
        {"step": 10, "split": "eval", "recall_at_5": 35.5},
    ]
    lines = "".join(json.dumps(r) + "\n" for r in records)
    (tmp_path / "realm" / "metrics.jsonl").write_text(lines)
    assert report.zero_shot_recall(str(tmp_path), "ict") == 30.0  # REALM's step 0 = ICT's index
    assert report.zero_shot_recall(str(tmp_path), "realm") == 35.5
    assert report.zero_shot_recall(str(tmp_path), None) is None
    assert report.refresh_lag(str(tmp_path / "realm")) == 1


def _reproduce(env, workdir):
    cmd = [sys.executable, os.path.join(REPO, "experiments", "reproduce.py"), "--scale=tiny",
           "--datasets=mini_nq", "--max_test_questions=16", f"--workdir={workdir}"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)


def test_tiny_table1_end_to_end_then_resumes(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=8")  # fmt: skip
    first = _reproduce(env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((tmp_path / "table1.json").read_text())
    systems = [r["system"] for r in record["rows"]]
    assert systems == ["BM25 + reader", "ORQA (ICT retriever)", "REALM"]
    markdown = (tmp_path / "table1.md").read_text()
    for row in record["rows"]:
        scores = row["mini_nq"]
        assert scores["n"] == 16
        assert 0.0 <= scores["exact_match"] <= 100.0 and 0.0 <= scores["recall_at_5"] <= 100.0
        em, recall = scores["exact_match"], scores["recall_at_5"]
        assert f"| {row['system']} | {em:.1f} | {recall:.1f} |" in markdown
    assert set(record["run_seconds"]) == {
        "ict", "realm", "openqa_bm25_nq", "openqa_orqa_nq", "openqa_realm_nq"
    }  # fmt: skip
    png = (tmp_path / "realm_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # The table's REALM row is what evaluate.py reports for that run.
    from realm_jax.train.evaluate import evaluate_run

    direct = evaluate_run(str(tmp_path / "openqa_realm_nq"), "mini_nq", "test", max_questions=16)
    realm = record["rows"][2]["mini_nq"]
    np.testing.assert_allclose(
        [direct["exact_match"], direct["recall_at_5"]], [realm["exact_match"], realm["recall_at_5"]]
    )

    again = _reproduce(env, tmp_path)  # every run finished: skipped, scores cached
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before") == 5 and "evaluating" not in again.stdout
    assert json.loads((tmp_path / "table1.json").read_text())["rows"] == record["rows"]
