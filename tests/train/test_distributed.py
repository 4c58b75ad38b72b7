"""Two CPU processes joined by ``jax.distributed`` on localhost: each reads only its share of the
global batch, and a psum over the 4 devices of both processes sums all of it."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_split_the_batch_and_psum_across_them():
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [
        subprocess.Popen([sys.executable, WORKER, str(i), str(port)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["process"] for r in results] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 4 and r["local_devices"] == 2
               for r in results)  # fmt: skip
    assert [r["rows"] for r in results] == [[0, 4], [4, 8]]  # disjoint shares, in order
    expected = np.arange(24, dtype=np.float32).reshape(8, 3).sum(0).tolist()
    assert all(r["psum"] == expected for r in results)  # every device sees the global sum
    print(f"2 processes x 2 devices: rows {[r['rows'] for r in results]}, psum {expected}")
