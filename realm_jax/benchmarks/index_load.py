"""What an index load costs at paper size: the default (sampled) check against the full one.

13,353,718 x 128 block embeddings (synthetic, ``paper_scale.write_embeddings``) are published
through ``IndexStore.publish`` (the checksums are computed there, once), then checked and loaded:
``verify`` with the sampled digest (the default of every load) and with the full SHA-256
(``realm-jax index --verify``), each from a cold page cache (the file's pages dropped with
``posix_fadvise(DONTNEED)``) and again warm; and a whole ``IndexStore.load`` (check + memory map
+ exact searcher) with each check.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np

from realm_jax.benchmarks.common import format_table, json_line, machine_info
from realm_jax.benchmarks.mips import clustered_vectors
from realm_jax.benchmarks.paper_scale import write_embeddings
from realm_jax.index.exact import ExactSearcher
from realm_jax.index.searcher import BFLOAT16
from realm_jax.index.store import EMBEDDINGS, IndexStore


def drop_cached_pages(directory: str) -> None:
    """Asks the kernel to drop the page cache of every file under ``directory`` (no root)."""
    for parent, _, names in os.walk(directory):
        for name in names:
            fd = os.open(os.path.join(parent, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


class _NoSearcher:
    """Publishes as an exact-search index without building one (its save writes nothing)."""

    kind, recall = "exact", {}

    def save(self, directory: str, shared_dataset: str | None = None) -> None:
        del directory, shared_dataset


def index_load_main(n: int, dim: int, workdir: str, rounds: int = 2) -> dict:
    print(f"machine: {machine_info()}")
    os.makedirs(workdir, exist_ok=True)
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((64, dim), dtype=np.float32)
    source = os.path.join(workdir, "emb.npy")
    emb = write_embeddings(source, n, centers, 0.6, BFLOAT16, seed=1)
    store = IndexStore(os.path.join(workdir, "index"), keep=1)
    t = time.perf_counter()
    meta = store.publish(0, emb, _NoSearcher(), embeddings_file=source)
    publish_s = time.perf_counter() - t
    size = meta["files"][EMBEDDINGS]["bytes"]
    directory = store.step_dir(0)
    timings: dict[str, list[float]] = {}

    def timed(name: str, fn, cold: bool) -> None:
        if cold:
            drop_cached_pages(directory)
        t = time.perf_counter()
        fn()
        timings.setdefault(name, []).append(time.perf_counter() - t)

    for _ in range(rounds):
        for full in (False, True):
            label = "full" if full else "sampled"
            timed(f"verify {label}, cold", lambda f=full: store.verify(0, full=f), cold=True)
            timed(f"verify {label}, warm", lambda f=full: store.verify(0, full=f), cold=False)
            timed(f"load {label}, cold",
                  lambda f=full: IndexStore(store.root, full_check=f).load(), cold=True)
    query = clustered_vectors(centers, 4, 0.6, rng)
    loaded = store.load()
    assert isinstance(loaded.searcher, ExactSearcher) and loaded.block_emb.shape == (n, dim)
    loaded.searcher.search(query, 10)  # the loaded index answers
    rows = [[name, min(v), max(v)] for name, v in timings.items()]
    print(format_table(["phase", "best s", "worst s"], rows))
    best = {name: min(v) for name, v in timings.items()}
    record = {
        "benchmark": "index_load", "n": n, "dim": dim, "embeddings_bytes": size,
        "publish_s": round(publish_s, 2), "rounds": rounds,
        **{name.replace(", ", "_").replace(" ", "_") + "_s": round(v, 3)
           for name, v in best.items()},
    }
    shutil.rmtree(workdir)
    print(json_line(record))
    return record
