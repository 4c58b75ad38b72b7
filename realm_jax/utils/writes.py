"""Writes whose failures say where: a full disk or an I/O error is a one-line OSError naming a path.

``write()``, ``flush()`` and ``fsync()`` raise an OSError without a file name (``[Errno 28] No
space left on device``), and ``ndarray.tofile`` one without even an errno when the disk fills in
the middle of it (``N requested and M written``). ``naming`` adds the path to the first kind;
``write_array_bytes`` writes arrays through ``file.write``, which gives the errno.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO

import numpy as np


@contextlib.contextmanager
def naming(path: str | os.PathLike) -> Iterator[None]:
    """Re-raises an OSError of the block that names no file as the same error naming ``path``:
    ``[Errno 28] No space left on device: '<path>'``."""
    try:
        yield
    except OSError as e:
        if e.filename is not None or e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, os.fspath(path)) from e


def write_array_bytes(f: IO[bytes], array: np.ndarray) -> None:
    """The bytes of ``array`` in C order (what ``array.tofile(f)`` writes); a write cut short by
    a full disk raises ENOSPC."""
    f.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
