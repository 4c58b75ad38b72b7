"""The launch scripts as a user runs them (subprocesses, tiny configs).

pretrain.py SIGKILLed after a checkpoint resumes from it and logs the same losses as an
uninterrupted run; predict.py + evaluate_predictions.py give the EM evaluate.py reports; bad
inputs are an ``error:`` line and exit 1 with nothing written. The subprocesses share a
persistent compilation cache, so only the first run of each program pays for XLA.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "experiments", "configs")
NQ_TRAIN = os.path.join(REPO, "realm_jax", "data", "openqa_files", "mini", "nq.train.jsonl")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("jax_cache"))
    return dict(
        os.environ,
        PYTHONPATH=REPO,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


def _cmd(script, *args):
    return [sys.executable, os.path.join(REPO, "experiments", script), *args]


def _run(env, script, *args):
    return subprocess.run(_cmd(script, *args), capture_output=True, text=True, env=env, cwd=REPO)


def _losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f) if r["split"] == "train"]


def _pretrain_args(workdir):
    return (f"--config={CONFIGS}/realm_mini.py:tiny", f"--workdir={workdir}",
            "--config.num_train_steps=8")


@pytest.mark.slow
def test_pretrain_killed_after_a_checkpoint_resumes_identically(tmp_path, env):
    # The reference run also proves --compilation_cache_dir (over the env's cache directory).
    reference = _run(env, "pretrain.py", *_pretrain_args(tmp_path / "a"),
                     f"--compilation_cache_dir={tmp_path / 'xla_cache'}")
    assert reference.returncode == 0, reference.stderr[-2000:]
    assert os.listdir(tmp_path / "xla_cache")
    expected = dict(_losses(tmp_path / "a"))
    assert sorted(expected) == list(range(1, 9))

    checkpoint = tmp_path / "b" / "checkpoints" / "2"  # orbax renames it in place when complete
    with open(tmp_path / "killed.log", "w") as log:
        cmd = _cmd("pretrain.py", *_pretrain_args(tmp_path / "b"))
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 300
        while not checkpoint.is_dir() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    saved = sorted(int(n) for n in os.listdir(tmp_path / "b" / "checkpoints") if n.isdigit())
    assert saved and max(saved) < 8
    before = len(_losses(tmp_path / "b"))

    resumed = _run(env, "pretrain.py", *_pretrain_args(tmp_path / "b"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = _losses(tmp_path / "b")[before:]
    assert [s for s, _ in after] == list(range(max(saved) + 1, 9))  # from the last checkpoint
    diff = max(abs(loss - expected[s]) for s, loss in after)
    print(f"killed after checkpoint {max(saved)}; resumed steps {[s for s, _ in after]}; "
          f"max |loss - uninterrupted| {diff:.2e}")
    np.testing.assert_allclose(
        [loss for _, loss in after], [expected[s] for s, _ in after], rtol=0, atol=1e-6
    )


@pytest.mark.slow
def test_predict_and_evaluate_predictions_match_evaluate(tmp_path, env):
    workdir = tmp_path / "openqa"
    trained = _run(env, "finetune.py", f"--config={CONFIGS}/openqa_mini.py:tiny",
                   f"--workdir={workdir}")
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert set(json.loads(trained.stdout.strip().splitlines()[-1])) == {
        "exact_match", "recall_at_5", "n",
    }
    with open(NQ_TRAIN, encoding="utf-8") as f:
        rows = [json.loads(next(f)) for _ in range(6)]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    predictions = tmp_path / "predictions.jsonl"

    predicted = _run(env, "predict.py", f"--checkpoint={workdir}", f"--questions={questions}",
                     f"--output={predictions}")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    records = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    assert [r["question"] for r in records] == [r["question"] for r in rows]
    for r in records:
        assert set(r) == {
            "question",
            "prediction",
            "probability",
            "score",
            "evidence",
            "answer_block",
            "answer_chars",
        }
        assert 1 <= len(r["evidence"]) <= 5
        assert all(set(e) == {"block", "title", "text", "probability"} for e in r["evidence"])

    # References that the predictions match for half the questions: EM is 50 either way.
    references = tmp_path / "references.jsonl"
    answers = [[p["prediction"]] if i % 2 == 0 else r["answer"]
               for i, (p, r) in enumerate(zip(records, rows, strict=True))]
    references.write_text(
        "".join(json.dumps({"question": r["question"], "answer": a}) + "\n"
                for r, a in zip(rows, answers, strict=True)),
        encoding="utf-8",
    )
    scored = _run(env, "evaluate_predictions.py", "--predictions", str(predictions),
                  "--references", str(references))
    assert scored.returncode == 0, scored.stderr[-2000:]
    official = json.loads(scored.stdout.strip().splitlines()[-1])

    evaluated = _run(env, "evaluate.py", f"--checkpoint={workdir}", f"--questions={references}")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    ours = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert ours["exact_match"] == official["exact_match"] >= 50.0
    assert ours["n"] == official["n"] == 6 and 0.0 <= ours["recall_at_5"] <= 100.0


def test_bad_inputs_are_one_error_line_and_exit_1(tmp_path, env):
    workdir = tmp_path / "run"
    bad = _run(env, "ict.py", f"--config={CONFIGS}/ict_mini.py:tiny", f"--workdir={workdir}",
               "--config.model.bert=huge")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: model.bert='huge': not base")
    assert not workdir.exists()  # nothing written

    missing = _run(env, "predict.py", f"--checkpoint={workdir}", "--questions=nope.jsonl",
                   f"--output={tmp_path / 'p.jsonl'}")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1] == "error: nope.jsonl: no such file"
    assert not (tmp_path / "p.jsonl").exists()


def test_dry_run_prints_the_full_scale_parameter_counts(tmp_path, env):
    """REALM's open-QA model is ~330M with the index's frozen document tower (Table 1)."""
    out = _run(env, "finetune.py", f"--config={CONFIGS}/openqa_nq.py", "--dry_run")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "+ frozen document tower    329,038,593  (329.0M)" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1])["total"] == 219_457_665
    pretrain = _run(env, "pretrain.py", f"--config={CONFIGS}/realm_ccnews.py", "--dry_run")
    assert pretrain.returncode == 0, pretrain.stderr[-2000:]
    assert json.loads(pretrain.stdout.strip().splitlines()[-1])["total"] == 219_685_818
    no_workdir = _run(env, "ict.py", f"--config={CONFIGS}/ict_mini.py:tiny")
    assert no_workdir.returncode == 1
    assert no_workdir.stderr.strip().splitlines()[-1] == (
        "error: --workdir is required (unless --dry_run)"
    )
