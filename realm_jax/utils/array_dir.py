"""Directories of 1-D ``.npy`` arrays: streamed to disk, published atomically, read by memory map.

A store (blocks, salient spans) is a directory of ``.npy`` files plus ``meta.json``. It is written
into a temporary sibling directory and renamed into place only when complete, so a reader never
sees a half-written store and a failed build leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator

import numpy as np

from realm_jax.utils.jsonl import fsync_directory
from realm_jax.utils.writes import naming, write_array_bytes

META_FILE = "meta.json"
# np.lib.format pads a 1-D header to 128 bytes for any length up to ~1e60 (checked at close).
_HEADER_BYTES = 128


class NpyAppender:
    """Writes a 1-D ``.npy`` file chunk by chunk, without knowing its final length up front."""

    def __init__(self, path: str, dtype: np.dtype | str):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.length = 0
        self._file = open(path, "wb")
        self._file.write(b"\0" * _HEADER_BYTES)  # the real header is written at close

    def append(self, values: Iterable | np.ndarray) -> None:
        array = np.asarray(values, dtype=self.dtype).reshape(-1)
        with naming(self.path):
            self._file.write(array.tobytes())
        self.length += array.size

    def close(self) -> None:
        header = io.BytesIO()
        write_npy_header(header, self.dtype, (self.length,))
        if len(header.getvalue()) != _HEADER_BYTES:
            raise RuntimeError(f"{self.path}: unexpected .npy header size")
        with naming(self.path):
            self._file.seek(0)
            self._file.write(header.getvalue())
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def abort(self) -> None:
        self._file.close()


def write_npy_header(f, dtype: np.dtype | str, shape: tuple[int, ...]) -> None:
    """A version 1.0 ``.npy`` header for a C-order array (the version ScaNN's reader accepts);
    the array's bytes follow it."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(f, header)


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` consecutive items (the last may be shorter): one disk write per list."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_array(path: str, array: np.ndarray) -> None:
    """Writes one array as ``.npy`` and fsyncs it (inside a directory being built)."""
    with naming(path), open(path, "wb") as f:
        write_npy_header(f, array.dtype, array.shape)
        write_array_bytes(f, array)
        f.flush()
        os.fsync(f.fileno())


def write_meta(directory: str, meta: dict) -> None:
    path = os.path.join(directory, META_FILE)
    with naming(path), open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def read_meta(directory: str | os.PathLike) -> dict:
    """``meta.json`` of a store, or FileNotFoundError naming the directory."""
    path = os.path.join(directory, META_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory}: not a finished store (no {META_FILE})")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_arrays(directory: str | os.PathLike, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Memory-mapped arrays ``<name>.npy`` of a store (nothing is read until indexed)."""
    return {n: np.load(os.path.join(directory, f"{n}.npy"), mmap_mode="r") for n in names}


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[str]:
    """Yields a temporary directory that becomes ``path`` only if the block succeeds.

    With ``overwrite`` an existing ``path`` is replaced (moved aside, then deleted after the
    rename); without it an existing ``path`` is an error before any work is done.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite to replace it)")
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
    try:
        yield tmp
        fsync_directory(tmp)
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".old")
            os.replace(path, os.path.join(old, name))
        os.replace(tmp, path)
        fsync_directory(parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
