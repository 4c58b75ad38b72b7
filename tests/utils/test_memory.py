"""release_free_memory hands freed heap pages back: resident memory drops, values untouched."""

import sys

import pytest

from realm_jax.utils.memory import _malloc_trim, release_free_memory


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="utf-8") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux") or _malloc_trim() is None,
                    reason="glibc's malloc_trim only")
def test_freed_chunks_between_live_ones_are_returned():
    # 2,000 chunks of 100 KiB (heap-allocated: under glibc's mmap threshold); every other one is
    # freed, so the free memory lies between live chunks where free() alone cannot return it.
    chunks = [bytes([i % 251]) * (100 << 10) for i in range(2000)]
    before = _rss_mib()
    del chunks[::2]
    held = _rss_mib()
    release_free_memory()
    after = _rss_mib()
    # ~98 MiB were freed; the trim returns most of it (each freed chunk keeps a page or two).
    assert held - after > 50, (before, held, after)
    assert all(c == bytes([(2 * i + 1) % 251]) * (100 << 10) for i, c in enumerate(chunks))


def test_it_is_safe_to_call_anywhere():
    release_free_memory()
    release_free_memory()
