"""Optional dependencies: import one, or fail with one line naming the pip extra that installs it.

TensorFlow and TensorFlow Datasets are the ``[tf]`` extra, needed only to read TF checkpoints,
ORQA's ``examples.tfr`` and for the TFDS builder; training, indexing and answering run without.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from realm_jax.errors import MissingExtraError

_NAMES = {"tensorflow": "TensorFlow", "tensorflow_datasets": "TensorFlow Datasets"}


def require(module_name: str, extra: str, purpose: str) -> ModuleType:
    """``module_name`` imported, or MissingExtraError: ``<purpose> needs <name>: pip install ...``.

    ``purpose`` is what the caller was doing, e.g. ``"reading TF checkpoints"``. A module that is
    installed but fails on a missing dependency of its own gets that module named too.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        name = _NAMES.get(module_name, module_name)
        root = module_name.split(".")[0]
        missing = e.name or root
        why = "" if missing.split(".")[0] == root else f" (it failed to import {missing})"
        raise MissingExtraError(
            f"{purpose} needs {name}{why}: pip install 'realm-jax[{extra}]'", name=module_name
        ) from e
