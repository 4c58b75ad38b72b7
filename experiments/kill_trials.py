r"""Kills the tiny reproduction at random moments, resumes it, and checks the tables are the same.

  python experiments/kill_trials.py --workdir=/tmp/kill_trials --trials=5 --seed=0

First an uninterrupted ``experiments/reproduce.py --scale=tiny`` (the reference, timed); then,
per trial, the same command into a fresh directory, SIGKILLed with its whole process group (the
runs it spawned too) after a time drawn uniformly from [5 s, reference time - 5 s], and started
again to the end. A run that finishes before its kill (the compilation cache makes later runs
faster) is not counted: its time becomes the new upper bound and the trial is drawn again.
Each resumed reproduction is compared with the reference by
``realm_jax.reproduce.compare`` (table1.json without wall times, paths and dates, and every
per-question output file). The tiny REALM stage refreshes its index asynchronously on a swap
schedule, so each step's index is fixed and a resumed run is deterministic.

Prints one row per trial (kill time, the last progress line before the kill, the resumed run's
time, identical or the first difference) and a final JSON line; exits 1 if a trial differs.
All runs share one persistent compilation cache under ``--workdir``.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

from absl import app, flags

from realm_jax.reproduce.compare import compare_reproductions

REPRODUCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reproduce.py")

_WORKDIR = flags.DEFINE_string("workdir", None, "Where the reference and the trials go.")
_TRIALS = flags.DEFINE_integer("trials", 5, "Killed and resumed reproductions.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the kill times.")
_QUESTIONS = flags.DEFINE_integer(
    "max_test_questions", 16, "Test questions scored per set (as the tiny smoke test).",
    lower_bound=1,
)
flags.mark_flags_as_required(["workdir"])


def _command(workdir: str) -> list[str]:
    return [sys.executable, REPRODUCE, "--scale=tiny", "--datasets=mini_nq",
            f"--max_test_questions={_QUESTIONS.value}", f"--workdir={workdir}"]


def _environment(root: str) -> dict:
    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(root, "jax_cache"),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def _run_to_end(workdir: str, env: dict) -> float:
    """Runs the reproduction to its end (resuming what is there); its wall time in seconds."""
    start = time.perf_counter()
    with open(os.path.join(workdir + ".log"), "a", encoding="utf-8") as log:
        done = subprocess.run(_command(workdir), stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{workdir}: reproduce.py exited {done.returncode}; see {workdir}.log")
    return time.perf_counter() - start


def _run_and_kill(workdir: str, env: dict, after: float) -> str | float:
    """Starts the reproduction and SIGKILLs its process group ``after`` seconds later; returns the
    last line it had printed, or its wall time if it finished before the kill."""
    log_path = workdir + ".log"
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(_command(workdir), stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        try:
            process.wait(timeout=after)
            return time.perf_counter() - start
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with open(log_path, encoding="utf-8", errors="replace") as f:
        lines = [line.strip() for line in f.read().replace("\r", "\n").splitlines() if line.strip()]
    with open(log_path, "a", encoding="utf-8") as f:
        f.write(f"\n--- SIGKILL after {after:.1f} s; resuming ---\n")
    return lines[-1][:80] if lines else "(nothing printed)"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    root = os.path.abspath(_WORKDIR.value)
    os.makedirs(root, exist_ok=True)
    env = _environment(root)
    reference = os.path.join(root, "reference")
    print(f"reference: {' '.join(_command(reference)[1:])}", flush=True)
    reference_seconds = _run_to_end(reference, env)
    print(f"reference finished in {reference_seconds:.0f} s", flush=True)
    rng = random.Random(_SEED.value)
    rows = []
    longest = reference_seconds  # later runs reuse the compilation cache and finish sooner
    for trial in range(_TRIALS.value):
        workdir = os.path.join(root, f"trial{trial}")
        while True:  # a run that finishes before its kill is no trial: draw again, sooner
            after = rng.uniform(5.0, max(5.0, longest - 5.0))
            last_line = _run_and_kill(workdir, env, after)
            if isinstance(last_line, str):
                break
            print(f"trial {trial}: finished in {last_line:.0f} s, before the kill at {after:.0f} "
                  "s; drawn again", flush=True)
            longest = last_line
            shutil.rmtree(workdir)
        resumed = _run_to_end(workdir, env)
        items = compare_reproductions(reference, workdir)
        different = [f"{name}: {diff}" for name, diff in items if diff is not None]
        rows.append({"trial": trial, "killed_after_s": round(after, 1), "last_line": last_line,
                     "resumed_s": round(resumed, 1), "items": len(items),
                     "identical": not different, "different": different})
        state = "identical" if not different else f"DIFFERENT: {different[0]}"
        print(f"trial {trial}: killed after {after:6.1f} s at \"{last_line}\"; resumed in "
              f"{resumed:4.0f} s; {len(items)} items {state}", flush=True)
    identical = sum(r["identical"] for r in rows)
    print(f"{identical} of {len(rows)} resumed reproductions identical to the reference")
    print(json.dumps({"reference_s": round(reference_seconds, 1), "trials": rows,
                      "identical": identical, "of": len(rows)}))
    sys.exit(0 if identical == len(rows) else 1)


if __name__ == "__main__":
    app.run(main)
