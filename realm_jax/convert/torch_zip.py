"""Read a PyTorch ``torch.save`` zip checkpoint (``pytorch_model.bin``) into numpy, without torch.

The zip holds ``<root>/data.pkl`` (a pickle whose tensors are persistent ids pointing at storages)
and ``<root>/data/<key>`` (raw little-endian storage bytes). We unpickle with a restricted
Unpickler that maps torch's rebuild functions to numpy views; anything else is refused.
"""

from __future__ import annotations

import collections
import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported torch storage type {name}")
        dtype = _STORAGE_DTYPES[name]
        if dtype == "bfloat16":
            import ml_dtypes

            dtype = ml_dtypes.bfloat16
        self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    if not size:
        return storage[offset : offset + 1].reshape(()).copy()
    itemsize = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, zf: zipfile.ZipFile, root: str):
        super().__init__(file)
        self._zf, self._root, self._cache = zf, root, {}

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, backward_hooks: data
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        # ("storage", storage_type, key, location, numel)
        _, storage_type, key, _, _ = pid
        if key not in self._cache:
            raw = self._zf.read(f"{self._root}/data/{key}")
            self._cache[key] = np.frombuffer(raw, dtype=storage_type.dtype)
        return self._cache[key]


def load_torch_zip(path: str) -> dict[str, np.ndarray]:
    """Returns the state dict stored in a ``torch.save`` zip file as numpy arrays."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a PyTorch zip checkpoint ({e})") from None
    with zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        if not pkl:
            raise ValueError(f"{path}: no data.pkl inside; not a PyTorch zip checkpoint")
        root = pkl[0][: -len("/data.pkl")]
        with zf.open(pkl[0]) as f:
            obj = _Unpickler(f, zf, root).load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")
    return dict(obj)
