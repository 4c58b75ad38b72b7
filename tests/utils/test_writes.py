"""Writes that name their file on failure, and arrays written through ``file.write``.

``write_array`` writes the header and bytes itself (``ndarray.tofile``, which ``np.save`` uses,
loses the errno when a disk fills mid-write): its files must stay byte-identical to ``np.save``'s
(of the C-order copy: a Fortran-order array is stored in C order and loads equal).
The full-disk cases themselves are in tests/faults.
"""

import errno
import io
import os

import numpy as np
import pytest

from realm_jax.utils.array_dir import write_array
from realm_jax.utils.writes import naming

ARRAYS = {
    "float32 2-D": np.arange(12, dtype=np.float32).reshape(3, 4),
    "Fortran order": np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
    "a strided view": np.arange(20, dtype=np.int32)[::3],
    "empty": np.zeros((0, 16), np.float32),
    "0-d": np.array(7, np.int64),
    "bytes": np.array([b"a", b"bcd"], "S20"),
    "bool": np.array([True, False, True]),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_write_array_is_np_save(tmp_path, name):
    array = ARRAYS[name]
    path = str(tmp_path / "a.npy")
    write_array(path, array)
    expected = io.BytesIO()
    np.save(expected, array.copy(order="C"))
    with open(path, "rb") as f:
        assert f.read() == expected.getvalue()
    loaded = np.load(path)
    assert loaded.dtype == array.dtype and np.array_equal(loaded, array)


def test_naming_adds_the_path_to_an_error_without_one():
    with pytest.raises(OSError) as caught, naming("/data/x.npy"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/data/x.npy"
    assert str(caught.value) == "[Errno 28] No space left on device: '/data/x.npy'"
    with pytest.raises(FileNotFoundError) as caught, naming("/data/x.npy"):
        open("/nonexistent/y", "rb")  # names its own file: kept
    assert caught.value.filename == "/nonexistent/y"
    with pytest.raises(OSError, match="^4 requested and 2 written$"), naming("/data/x.npy"):
        raise OSError("4 requested and 2 written")  # no errno to give: unchanged
