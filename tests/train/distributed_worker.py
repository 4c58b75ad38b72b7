"""One process of tests/train/test_distributed.py: ``distributed_worker.py <id> <port> <dir>``.

Joins a 2-process JAX cluster on localhost (CPU, 2 devices each, gloo collectives) the way the
scripts' ``--distributed`` does (``train.distributed.initialize``), then:
  1. takes its share of a global batch of 8 as every loop does (``input_pipeline.process_rows``)
     and psums its rows across all 4 devices of both processes;
  2. saves a train state through orbax (``Checkpoints``, collectively) and restores it;
  3. runs the refresher on ``<dir>/ckpt`` (prepared by the test): each process embeds its shards
     of ``<dir>/blocks.npz``, process 0 merges, builds and publishes ``<dir>/index``;
  4. runs a refresher on process 0 alone (``distributed=False``, as AsyncIndex's thread) into
     ``<dir>/index_solo`` while process 1 waits at a barrier.
Prints one JSON line.
"""

import dataclasses
import json
import logging
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main(process_id: int, port: int, directory: str) -> None:
    from realm_jax.utils.devices import initialize

    logging.basicConfig(level=logging.INFO)  # as experiments/refresh.py; then 0's alone
    initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
    from realm_jax.data.input_pipeline import process_rows
    from realm_jax.index.refresher import RefreshConfig, Refresher
    from realm_jax.run.checkpoints import Checkpoints
    from realm_jax.run.state import TrainState, bert_adamw
    from realm_jax.utils.devices import shard, sync

    rows = process_rows(8)  # this process's rows of the global batch
    global_batch = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    local = shard({"x": global_batch[rows]})["x"]  # [local devices, per device, 3]
    total = jax.pmap(lambda x: jax.lax.psum(x.sum(0), "batch"), axis_name="batch")(local)

    params = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    state = TrainState.create(params, bert_adamw(1e-3, 10, 1))
    checkpoints = Checkpoints(os.path.join(directory, "state"), async_save=False)
    checkpoints.save(3, jax.device_get(state))
    restored = checkpoints.restore_state(3, jax.device_get(state))
    checkpoints.close()
    same = jax.tree.all(jax.tree.map(np.array_equal, restored.params, params))

    shards = []
    config = RefreshConfig(
        os.path.join(directory, "ckpt"), os.path.join(directory, "index"),
        os.path.join(directory, "blocks.npz"), batch_size=64, max_len=32, poll_seconds=0.05,
        progress=False, shard_rows=500,
    )
    refresher = Refresher(config, on_phase=lambda p, s: p == "embed:shard" and shards.append(s))
    published = refresher.run()

    # 4. A refresher of one process only (AsyncIndex's thread on process 0): it must not wait for
    # the others, which go straight on to a barrier it reaches when done.
    solo = []
    if jax.process_index() == 0:
        alone = dataclasses.replace(config, index_dir=os.path.join(directory, "index_solo"))
        Refresher(alone, on_phase=lambda p, s: p == "embed:shard" and solo.append(s),
                  distributed=False).run()
    sync("worker:solo_refresh")
    print(json.dumps({
        "process": jax.process_index(), "processes": jax.process_count(),
        "devices": jax.device_count(), "local_devices": jax.local_device_count(),
        "rows": [rows.start, rows.stop], "psum": np.asarray(total)[0].tolist(),
        "checkpoint_restored": bool(same), "published": published, "shards_embedded": len(shards),
        "solo_shards": len(solo),
    }))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
