"""One process of tests/train/test_distributed.py: ``python distributed_worker.py <id> <port>``.

Joins a 2-process JAX cluster on localhost (CPU, 2 devices each, gloo collectives), takes its
share of a global batch of 8 the way every loop does (``input_pipeline.process_rows``), and psums
its rows across all 4 devices of both processes; prints one JSON line.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(process_id: int, port: int) -> None:
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
    from realm_jax.train.input_pipeline import process_rows
    from realm_jax.train.parallel import shard

    rows = process_rows(8)  # this process's rows of the global batch
    global_batch = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    local = shard({"x": global_batch[rows]})["x"]  # [local devices, per device, 3]
    total = jax.pmap(lambda x: jax.lax.psum(x.sum(0), "batch"), axis_name="batch")(local)
    print(json.dumps({
        "process": jax.process_index(), "processes": jax.process_count(),
        "devices": jax.device_count(), "local_devices": jax.local_device_count(),
        "rows": [rows.start, rows.stop], "psum": np.asarray(total)[0].tolist(),
    }))  # fmt: skip
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
