"""experiments/evaluate_predictions.py as a user runs it: JSON last line, exit 1 on bad input."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "experiments", "evaluate_predictions.py")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, env=env, cwd=REPO
    )


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_exact_match_with_a_missing_prediction(tmp_path):
    references = _write_jsonl(
        tmp_path / "refs.jsonl",
        [
            {"question": "who sang help", "answer": ["The Beatles"]},
            {"question": "capital of france", "answer": ["Paris", "Paris, France"]},
            {"question": "capital of italy", "answer": ["Rome"]},
            {"question": "no prediction for me", "answer": ["x"]},
        ],
    )
    predictions = _write_jsonl(
        tmp_path / "preds.jsonl",
        [
            {"question": "who sang help", "prediction": "beatles."},
            {"question": "capital of france", "prediction": "paris france"},
            {"question": "capital of italy", "prediction": "Milan"},
            {"question": "not a reference", "prediction": "x"},
            {"question": "capital of italy", "prediction": "Rome"},  # repeated: this one counts
        ],
    )
    result = _run("--predictions", predictions, "--references", references)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"exact_match": 75.0, "n": 4}
    # Scored as ORQA scores them, but not silently: one warning each, naming the file.
    assert f"{predictions}:5: 1 line(s) repeat a question predicted before" in result.stderr
    assert f"{predictions}: 1 prediction(s) for questions that {references} does not hold" \
        in result.stderr


def test_regex_flag(tmp_path):
    references = _write_jsonl(
        tmp_path / "CuratedTrec.refs.jsonl",
        [
            {"question": "q1", "answer": ["Sept?(ember)?|Feb(ruary)?"]},
            {"question": "q2", "answer": ["Sievert \\(Sv\\)\\"]},  # uncompilable: never right
        ],
    )
    predictions = _write_jsonl(
        tmp_path / "preds.jsonl",
        [{"question": "q1", "prediction": "September"}, {"question": "q2", "prediction": "x"}],
    )
    result = _run("--predictions", predictions, "--references", references, "--regex")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"exact_match": 50.0, "n": 2}
    assert "answer regex 'Sievert \\\\(Sv\\\\)\\\\' does not compile (error: " in result.stderr
    assert "it never matches" in result.stderr and "Traceback" not in result.stderr


def test_malformed_file_gives_one_line_error_and_exit_1(tmp_path):
    references = _write_jsonl(tmp_path / "refs.jsonl", [{"question": "q", "answer": ["a"]}])
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text('{"question": "q", "prediction": "a"}\n{"question": "q",\n')
    result = _run("--predictions", str(predictions), "--references", references)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{predictions}:2: malformed JSON" in lines[0]

    missing_field = _write_jsonl(tmp_path / "nofield.jsonl", [{"question": "q"}])
    result = _run("--predictions", str(missing_field), "--references", references)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {missing_field}:1: missing field 'prediction'"
