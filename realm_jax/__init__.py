"""realm-jax: REALM (retrieval-augmented language model pre-training) in JAX/Flax.

The model API, loaded on first use (``import realm_jax`` itself imports no JAX)::

    config, model, params, step = realm_jax.load_run("runs/realm")  # parameters only
    realm_jax.export_hf("runs/realm", "out/query_tower", part="query")  # a HF BERT directory
    qa = realm_jax.RealmQA("runs/facts"); qa.ask("what is the capital of Amber?")
"""

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it.
_API = {
    "load_run": "realm_jax.run.model_setup",
    "export_hf": "realm_jax.convert.export_hf",
    "RealmQA": "realm_jax.serve.api",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'realm_jax' has no attribute {name!r}")
