"""ICT trained by two ``jax.distributed`` processes (``experiments/ict.py --distributed``, 2 CPU
devices each) against one process with 4 devices: the same global batches split by process, the
same losses and parameters; process 0 alone writes metrics, prints and the final index; a restart
of both resumes from the orbax checkpoint they saved together."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from realm_jax.index.store import IndexStore
from realm_jax.run.checkpoints import Checkpoints

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "experiments", "configs", "ict_mini.py") + ":tiny"
ICT = [sys.executable, os.path.join(REPO, "experiments", "ict.py"), f"--config={CONFIG}"]


def _env(devices):
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")


def _two_processes(workdir):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = [f"--workdir={workdir}", "--distributed", f"--coordinator_address=localhost:{port}",
            "--num_processes=2"]
    procs = [subprocess.Popen([*ICT, *args, f"--process_id={i}"], env=_env(2), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return outs


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _close(a, b):  # float32 sums reduced across 2 processes vs within 1 (other order): 1e-5
    return np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_process_ict_equals_one_process(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    single = subprocess.run([*ICT, f"--workdir={one}"], env=_env(4), text=True,
                            capture_output=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    (out0, _), (out1, _) = _two_processes(two)

    # Prints and the final metrics line come from process 0 only (gloo's own lines aside).
    final = json.loads(out0.strip().splitlines()[-1])
    reference = json.loads(single.stdout.strip().splitlines()[-1])
    _close([final[k] for k in sorted(final)], [reference[k] for k in sorted(final)])
    assert "blocks; initial params" in out0 and "blocks; initial params" not in out1
    assert '{"accuracy"' not in out1

    # metrics.jsonl: written once, by process 0, with the one-process run's values.
    m1, m2 = _metrics(one), _metrics(two)
    assert [(r["step"], r["split"]) for r in m2] == [(r["step"], r["split"]) for r in m1]
    for a, b in zip(m1, m2, strict=True):
        _close([a["loss"], a["accuracy"]], [b["loss"], b["accuracy"]])

    # The checkpoint both processes saved (orbax) and the final index process 0 published.
    c1, c2 = Checkpoints(os.path.join(one, "checkpoints"), read_only=True), Checkpoints(
        os.path.join(two, "checkpoints"), read_only=True)
    assert c1.all_steps() == c2.all_steps() and c2.latest_step() == 4
    p1, p2 = c1.restore_embedder_params(4), c2.restore_embedder_params(4)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        _close(a, b)
    i1, i2 = (
        IndexStore(os.path.join(one, "index")).load(),
        IndexStore(os.path.join(two, "index")).load(),
    )
    assert i2.step == i1.step == 4
    _close(np.asarray(i2.block_emb), np.asarray(i1.block_emb))
    assert not [n for n in os.listdir(os.path.join(two, "index")) if n.startswith(".embed-")]

    # Both restarted: they restore the checkpoint together and report the same final metrics.
    (again0, err0), _ = _two_processes(two)
    assert "resumed from checkpoint 4" in err0
    assert json.loads(again0.strip().splitlines()[-1]) == final
    print(
        f"\n2 processes x 2 devices = 1 process x 4 devices: losses "
        f"{[round(r['loss'], 6) for r in m2 if r['split'] == 'train']}; resumed at 4"
    )
