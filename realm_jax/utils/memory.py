"""Freed heap memory handed back to the operating system (glibc's ``malloc_trim``).

XLA's compiler and the host-side work of each train step free a lot of memory that glibc keeps in
its arenas, resident, for reuse; XLA's step scratch is a separate large mapping that cannot reuse
it, so the kept memory adds to every later step's peak. Measured on REALM mini's train step with
an embedding pass beside it (2 cores, 1 CPU device): resident memory after the first step 2.33 ->
1.44 GiB once trimmed, the peak of the next steps 6.26 -> 5.80 GiB. Trimming changes no result.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
        return None


def release_free_memory() -> None:
    """``malloc_trim(0)``: returns the free pages of every glibc arena to the system (a no-op
    where the C library is not glibc). Takes milliseconds; call it between steps, not in them."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
