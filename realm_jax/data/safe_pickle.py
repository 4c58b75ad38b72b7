"""Object arrays of text from ``.npy`` files, loaded without running anything their pickle names.

``np.save`` writes an object array as a ``.npy`` header followed by ``pickle.dump(array)``. The
pickle of a 1-D object array of bytes/str references only ``ALLOWED_GLOBALS``: ``_reconstruct``
(``numpy._core.multiarray`` since numpy 2, ``numpy.core.multiarray`` before), ``numpy.ndarray``
and ``numpy.dtype``; under pickle protocol 2 (``np.save`` before numpy 1.17) each bytes object is
also ``_codecs.encode(text, "latin1")``, and ``b""`` is ``bytes()``. The unpickler here maps these
names to inert stand-ins (``_Global``) and refuses every other global; the array is then rebuilt
from the checked records, so neither a named callable nor numpy's own ``__setstate__`` ever runs
on the file's data.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
from numpy.lib import format as npy_format

from realm_jax.errors import CorpusError

ALLOWED_GLOBALS = (
    "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "_codecs.encode",
    "__builtin__.bytes",
    "builtins.bytes",
)
# How numpy pickles dtype(object): "O8" on 64-bit hosts, "O4" on 32-bit ones.
_OBJECT_TYPECODES = ("O", "O4", "O8")
_HEADER_READERS = {
    (1, 0): npy_format.read_array_header_1_0,
    (2, 0): npy_format.read_array_header_2_0,
}


class _Refused(pickle.UnpicklingError):
    """A global outside ``ALLOWED_GLOBALS``; ``args[0]`` is its dotted name."""


class _Pickled:
    """A call the pickle made to ``_reconstruct``/``ndarray``/``dtype`` and the state it set."""

    __slots__ = ("kind", "args", "state")

    def __init__(self, kind: str, args: tuple):
        self.kind, self.args, self.state = kind, args, None

    def __setstate__(self, state):
        self.state = state


class _Global:
    """An allowed global as the pickle sees it (``kind``: its name); it never calls the real one.

    ``encode`` and ``bytes`` return text bytes for exactly ``(str, "latin1")`` and ``()``; the
    numpy names return a ``_Pickled`` record of the call.
    """

    __slots__ = ("kind",)

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, *args):
        if self.kind == "encode":
            if len(args) == 2 and type(args[0]) is str and args[1] == "latin1":
                return args[0].encode("latin1")
            raise pickle.UnpicklingError("_codecs.encode is allowed only as (str, 'latin1')")
        if self.kind == "bytes":
            if args:
                raise pickle.UnpicklingError("bytes is allowed only without arguments")
            return b""
        return _Pickled(self.kind, args)

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"state set on the global {self.kind}")


class _Unpickler(pickle.Unpickler):
    """Resolves only ``ALLOWED_GLOBALS``, each to a fresh ``_Global``; raises ``_Refused`` else."""

    def find_class(self, module, name):
        dotted = f"{module}.{name}"
        if dotted not in ALLOWED_GLOBALS:
            raise _Refused(dotted)
        return _Global(name)


def _is_object_dtype(dtype) -> bool:
    return (
        isinstance(dtype, _Pickled)
        and dtype.kind == "dtype"
        and len(dtype.args) > 0
        and isinstance(dtype.args[0], str)
        and dtype.args[0] in _OBJECT_TYPECODES
    )


def _rebuild(path: str, obj, length: int) -> np.ndarray:
    """The array a loaded pickle describes if it holds ``length`` bytes/str; else CorpusError."""
    if not isinstance(obj, _Pickled) or obj.kind != "_reconstruct":
        what = f"a call to {obj.kind}" if isinstance(obj, _Pickled) else type(obj).__name__
        raise CorpusError(f"{path}: the pickle holds {what}, not an array")
    array_type = obj.args[0] if obj.args else None
    if not isinstance(array_type, _Global) or array_type.kind != "ndarray":
        raise CorpusError(f"{path}: the pickle rebuilds something other than a numpy.ndarray")
    state = obj.state
    if isinstance(state, tuple) and len(state) == 4:  # written before the state had a version
        state = (1, *state)
    if not isinstance(state, tuple) or len(state) != 5:
        raise CorpusError(f"{path}: the pickled array has no (version, shape, dtype, order, data)")
    _, shape, dtype, _, items = state
    if not _is_object_dtype(dtype):
        raise CorpusError(f"{path}: the pickled array's dtype is not object")
    ints = isinstance(shape, tuple) and len(shape) < 8 and all(type(n) is int for n in shape)
    if not ints or shape != (length,):
        got = shape if ints else type(shape).__name__
        raise CorpusError(
            f"{path}: the pickled array's shape {got} is not the header's ({length},)"
        )
    if not isinstance(items, list) or len(items) != length:
        what = f"a list of {len(items)}" if isinstance(items, list) else type(items).__name__
        raise CorpusError(f"{path}: the pickled array's data is {what}, not a list of {length}")
    for i, item in enumerate(items):
        if item.__class__ is not bytes and item.__class__ is not str:
            raise CorpusError(
                f"{path}: element at index {i} is {type(item).__name__}, not bytes or str"
            )
    array = np.empty(length, dtype=object)
    array[:] = items
    return array


def load_object_npy(path: str | os.PathLike) -> np.ndarray:
    """The 1-D object array of bytes/str that ``np.save`` wrote at ``path``, run-nothing loaded.

    CorpusError (one line naming the file) for a missing file, a file that is not ``.npy``, a header
    that is not a 1-D object array, a pickle naming a global outside ``ALLOWED_GLOBALS`` (the
    message names it), a truncated or corrupt pickle, or an element that is not bytes or str.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorpusError(f"{path}: no such file")
    with open(path, "rb") as f:
        try:
            version = npy_format.read_magic(f)
        except ValueError:
            raise CorpusError(f"{path}: not a .npy file (no .npy magic string)") from None
        if version not in _HEADER_READERS:
            raise CorpusError(f"{path}: unsupported .npy format version {version[0]}.{version[1]}")
        try:
            shape, _, dtype = _HEADER_READERS[version](f)
        except ValueError:
            raise CorpusError(f"{path}: not a .npy file (unreadable header)") from None
        if dtype != np.dtype(object) or len(shape) != 1:
            raise CorpusError(f"{path}: expected a 1-D object array of bytes, got {dtype} {shape}")
        try:
            obj = _Unpickler(f, encoding="ASCII").load()  # np.load's default encoding
        except _Refused as refused:
            name = refused.args[0][:200]
            raise CorpusError(
                f"{path}: refusing to unpickle global {name!r}; "
                f"an object array of text needs only {', '.join(ALLOWED_GLOBALS)}"
            ) from None
        except Exception as e:  # EOFError, UnpicklingError, TypeError from a bad call, ...
            raise CorpusError(f"{path}: truncated or corrupt pickle ({type(e).__name__})") from None
    return _rebuild(path, obj, shape[0])
