"""compare_reproductions: a rerun's figures against another run's, ignoring only paths, times,
date and machine."""

import json
import os
import subprocess
import sys

from realm_jax.reproduce.compare import compare_reproductions, first_difference, table_figures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORD = {
    "title": "Table 1", "date": "2026-12-06", "machine": {"cpu": "x"}, "run_seconds": {"ict": 1},
    "rows": [{"label": "REALM", "mini_nq": {"em": 8.8, "per_question": "/a/p.jsonl"},
              "vs_orqa": {"mini_nq": {"em": {"estimate": -1.7, "ci95": [-4.3, 0.9]}}}}],
    "gate": {"mlm_accuracy": 18.0, "seconds": 3.0},
}


def _write(root, record, lines):
    (root / "per_question").mkdir(parents=True)
    (root / "table1.json").write_text(json.dumps(record))
    (root / "per_question" / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_only_paths_times_date_and_machine_are_ignored():
    figures = table_figures(RECORD)
    assert set(figures) == {"rows", "gate"} and figures["gate"] == {"mlm_accuracy": 18.0}
    assert "per_question" not in figures["rows"][0]["mini_nq"]
    other = json.loads(json.dumps(RECORD))
    other["rows"][0]["vs_orqa"]["mini_nq"]["em"]["ci95"][1] = 1.0
    assert first_difference(figures, table_figures(other)) == (
        "rows[0].vs_orqa.mini_nq.em.ci95[1]: 0.9 != 1.0")
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "b: only in the second"


def test_a_rerun_is_compared_figure_by_figure_and_question_by_question(tmp_path):
    lines = [{"question": "q1", "correct": True}, {"question": "q2", "correct": False}]
    _write(tmp_path / "a", RECORD, lines)
    moved = {**RECORD, "date": "2026-12-07", "machine": {"cpu": "y"}}
    moved["rows"] = [{**RECORD["rows"][0], "mini_nq": {"em": 8.8, "per_question": "/b/p.jsonl"}}]
    _write(tmp_path / "b", moved, lines)
    assert compare_reproductions(str(tmp_path / "a"), str(tmp_path / "b")) == [
        ("table1.json", None), ("per_question/r.jsonl", None)]

    changed = {**RECORD, "gate": {"mlm_accuracy": 18.1}}
    _write(tmp_path / "c", changed, [lines[0], {**lines[1], "correct": True}])
    assert compare_reproductions(str(tmp_path / "a"), str(tmp_path / "c")) == [
        ("table1.json", "gate.mlm_accuracy: 18.0 != 18.1"),
        ("per_question/r.jsonl", "1 of 2 questions differ, first at line 2")]

    script = [os.path.join(REPO, "experiments", "compare_reproductions.py"),
              f"--first={tmp_path / 'a'}"]
    same = subprocess.run([sys.executable, *script, f"--second={tmp_path / 'b'}"],
                          capture_output=True, text=True)
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout.splitlines()[-1]) == {"identical": True, "items": 2,
                                                        "different": []}
    differ = subprocess.run([sys.executable, *script, f"--second={tmp_path / 'c'}"],
                            capture_output=True, text=True)
    assert differ.returncode == 1 and '"identical": false' in differ.stdout
    missing = subprocess.run([sys.executable, *script, f"--second={tmp_path / 'none'}"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "table1.json: not found" in missing.stderr
