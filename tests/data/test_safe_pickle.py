"""Object-array .npy loading that runs nothing from the file: crafted pickles are refused in one
line, genuine arrays of bytes/str load as np.load loads them."""

import io
import os
import pickle

import numpy as np
import pytest

from realm_jax.data.released_blocks import iter_block_records
from realm_jax.data.safe_pickle import ALLOWED_GLOBALS, load_object_npy
from realm_jax.errors import CorpusError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXTS = [b"Alan Turing was an English mathematician.", "Z\u00fcrich", b"", b"caf\xc3\xa9"]


class _Calls:
    """Pickles as ``func(*args)``: how a crafted file makes ``pickle.load`` call anything."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write_npy(path, payload: bytes, shape=(1,), descr="|O") -> None:
    """A .npy file: a genuine header, then ``payload`` where the array's pickle goes."""
    with open(path, "wb") as f:
        header = {"shape": shape, "fortran_order": False, "descr": descr}
        np.lib.format.write_array_header_1_0(f, header)
        f.write(payload)


def _error(path) -> str:
    with pytest.raises(CorpusError) as error:
        load_object_npy(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


class _RecordingUnpickler(pickle.Unpickler):
    """Unpickles a trusted pickle as usual, noting the ``module.name`` of each global it needs."""

    def __init__(self, file):
        super().__init__(file)
        self.names = set()

    def find_class(self, module, name):
        self.names.add(f"{module}.{name}")
        return super().find_class(module, name)


def _globals(payload: bytes) -> set[str]:
    """The ``module.name`` of every global a pickle references."""
    unpickler = _RecordingUnpickler(io.BytesIO(payload))
    unpickler.load()
    return unpickler.names


def test_numpy_object_array_pickles_reference_only_the_allowed_globals():
    array = np.array(TEXTS, dtype=object)
    for protocol in (2, 3, 4, 5):
        names = _globals(pickle.dumps(array, protocol=protocol))
        assert names <= set(ALLOWED_GLOBALS), (protocol, names)
        assert {"numpy.ndarray", "numpy.dtype"} <= names
        assert names & {"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct"}


@pytest.mark.parametrize(
    "payload, refused",
    [
        (b"cos\nsystem\n(Vtouch {marker}\ntR.", "os.system"),
        (b"cbuiltins\nopen\n(V{marker}\nVw\ntR.", "builtins.open"),
        (
            b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93V__import__('os').system('touch {marker}')"
            b"\n\x85R.",
            "builtins.eval",
        ),
    ],
)
def test_crafted_pickle_is_refused_and_never_runs(tmp_path, payload, refused):
    marker = tmp_path / "pwned"
    path = tmp_path / "block_records.npy"
    _write_npy(path, payload.replace(b"{marker}", str(marker).encode()))
    message = _error(path)
    assert f"refusing to unpickle global {refused!r}" in message
    assert not marker.exists()
    with pytest.raises(CorpusError, match="refusing to unpickle global"):
        list(iter_block_records(path))
    assert not marker.exists()


def test_call_hidden_in_an_element_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "block_records.npy"
    np.save(path, np.array([b"fine", _Calls(os.system, f"touch {marker}")], dtype=object))
    refused = f"{os.system.__module__}.system"  # posix.system on Linux
    assert f"refusing to unpickle global {refused!r}" in _error(path)
    assert not marker.exists()


def test_array_pickle_with_raw_data_is_refused(tmp_path):
    """Numpy's own setstate would be handed raw bytes for an object dtype; the stand-ins never."""
    path = tmp_path / "block_records.npy"
    raw = pickle.dumps(np.arange(2, dtype=np.int64), protocol=4)
    _write_npy(path, raw, shape=(2,))
    assert "the pickled array's dtype is not object" in _error(path)
    as_objects = raw.replace(b"\x8c\x02i8", b"\x8c\x02O8")
    assert as_objects != raw
    _write_npy(path, as_objects, shape=(2,))
    assert "the pickled array's data is bytes, not a list of 2" in _error(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_genuine_object_array_loads_as_np_load(tmp_path, protocol):
    path = tmp_path / "block_records.npy"
    array = np.array(TEXTS, dtype=object)
    _write_npy(path, pickle.dumps(array, protocol=protocol), shape=(len(TEXTS),))
    loaded = load_object_npy(path)
    expected = np.load(path, allow_pickle=True)
    assert loaded.dtype == object and loaded.shape == (len(TEXTS),)
    assert loaded.tolist() == expected.tolist() == TEXTS
    assert [type(x) for x in loaded] == [type(x) for x in TEXTS]


def test_np_save_file_loads_as_np_load(tmp_path):
    path = tmp_path / "block_records.npy"
    np.save(path, np.array([t.encode() for t in ("one block", "two", "")], dtype=object))
    loaded = load_object_npy(path)
    np.testing.assert_array_equal(loaded, np.load(path, allow_pickle=True))
    assert list(iter_block_records(path)) == [("", "one block"), ("", "two"), ("", "")]


def test_bad_arrays_and_files_are_one_line_errors(tmp_path):
    path = tmp_path / "block_records.npy"
    np.save(path, np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object))
    assert "expected a 1-D object array of bytes, got object (2, 2)" in _error(path)
    np.save(path, np.array([b"a", 7], dtype=object))
    assert "element at index 1 is int, not bytes or str" in _error(path)
    np.save(path, np.array([b"a", {"text": b"b"}], dtype=object))
    assert "element at index 1 is dict, not bytes or str" in _error(path)
    np.save(path, np.array([b"a", [b"b"]], dtype=object))
    assert "element at index 1 is list, not bytes or str" in _error(path)
    np.save(path, np.zeros(3, np.float32))
    assert "expected a 1-D object array of bytes, got float32 (3,)" in _error(path)
    # A 1-D header over a 2-D pickle (np.save never writes one).
    _write_npy(path, pickle.dumps(np.array([[b"a"]], dtype=object), protocol=4))
    assert "shape (1, 1) is not the header's (1,)" in _error(path)
    _write_npy(path, pickle.dumps([b"a"], protocol=4))
    assert "the pickle holds list, not an array" in _error(path)


def test_truncated_and_foreign_files_are_one_line_errors(tmp_path):
    path = tmp_path / "block_records.npy"
    np.save(path, np.array([b"some block text"] * 20, dtype=object))
    whole = path.read_bytes()
    for cut in (len(whole) - 1, len(whole) - 40, 140):
        path.write_bytes(whole[:cut])
        assert "truncated or corrupt pickle (" in _error(path)
    path.write_bytes(whole[:30])
    assert "not a .npy file (unreadable header)" in _error(path)
    path.write_bytes(whole[:5])
    assert "not a .npy file (no .npy magic string)" in _error(path)
    path.write_text("Alan Turing was an English mathematician.\n")
    assert "not a .npy file (no .npy magic string)" in _error(path)
    path.write_bytes(pickle.dumps(np.array([b"a"], dtype=object)))
    assert "not a .npy file" in _error(path)
    assert "no such file" in _error(tmp_path / "nothing.npy")


def test_no_source_loads_pickles_through_numpy():
    word = "allow" + "_pickle"  # split so this file is not a hit itself
    hits = []
    for top in ("realm_jax", "experiments"):
        for root, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith(".py"):
                    file = os.path.join(root, name)
                    with open(file, encoding="utf-8") as f:
                        if word in f.read():
                            hits.append(os.path.relpath(file, REPO))
    assert hits == []
