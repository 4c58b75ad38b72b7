"""The top-level model API: ``realm_jax.load_run`` / ``export_hf`` / ``RealmQA`` are the functions
their modules define, loaded on first use, so ``import realm_jax`` alone stays light."""

import subprocess
import sys

import pytest

import realm_jax
from realm_jax.convert.export_hf import export_hf
from realm_jax.run.model_setup import load_run
from realm_jax.serve.api import RealmQA


def test_names_are_the_modules_objects():
    assert realm_jax.load_run is load_run
    assert realm_jax.export_hf is export_hf
    assert realm_jax.RealmQA is RealmQA
    assert set(realm_jax.__all__) == {"load_run", "export_hf", "RealmQA", "__version__"}


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'train_everything'"):
        realm_jax.train_everything  # noqa: B018


def test_import_alone_does_not_import_jax():
    code = "import sys, realm_jax; print('jax' in sys.modules, realm_jax.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", realm_jax.__version__]
