"""One trained open-QA model for the product tests: openqa_facts.py (8 invented facts).

Trained once per test session (the xdist workers share it) in a subprocess on one CPU device: the
2-layer MiniLM model's AdamW update (22M parameters) would be replicated on each of 8 simulated
devices, 4x slower, and the pmapped paths are exercised by tests/train. ~30 s here."""

import os
import shutil
import subprocess
import sys

import pytest
from filelock import FileLock

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def facts_run(tmp_path_factory, worker_id):
    """The trained run, read-only; trained once per test session, not once per xdist worker
    (the workers share their base directory's parent and take turns through a file lock)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if worker_id != "master" else base
    workdir, done = root / "facts_shared" / "facts", root / "facts_shared" / "TRAINED"
    with FileLock(str(root / "facts_shared.lock")):
        if not done.exists():
            shutil.rmtree(workdir.parent, ignore_errors=True)  # a failed attempt's leftovers
            workdir.parent.mkdir()
            env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="", JAX_PLATFORMS="cpu")
            cmd = [sys.executable, os.path.join(REPO, "experiments", "finetune.py"),
                   f"--config={os.path.join(REPO, 'experiments', 'configs', 'openqa_facts.py')}",
                   f"--workdir={workdir}"]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            assert out.returncode == 0, out.stderr[-3000:]
            done.touch()
    return str(workdir)


@pytest.fixture
def run_copy(facts_run, tmp_path):
    """A private copy of the trained run (its block cache is shared, read-only)."""
    workdir = str(tmp_path / "facts")
    shutil.copytree(facts_run, workdir)
    return workdir

