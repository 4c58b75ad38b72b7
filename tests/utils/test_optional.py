"""Entry points that need the ``[tf]`` extra fail with one line naming it when TF is missing."""

import importlib
import sys
import types

import pytest

from realm_jax.convert.tf_checkpoint import TFVariables, load_block_emb, load_tf_checkpoint
from realm_jax.data import documents, released_blocks
from realm_jax.errors import USER_ERRORS, MissingExtraError
from realm_jax.utils.optional import require

PIP = "pip install 'realm-jax[tf]'"


@pytest.fixture
def no_tf(monkeypatch):
    """TensorFlow (and TFDS) unimportable, as when the ``[tf]`` extra is not installed."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


def _one_line(error: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def test_require_imports_or_names_the_extra(monkeypatch):
    assert require("json", "tf", "x") is sys.modules["json"]
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(MissingExtraError) as error:
        require("tensorflow", "tf", "doing this")
    assert str(error.value) == f"doing this needs TensorFlow: {PIP}"
    assert isinstance(error.value, USER_ERRORS) and isinstance(error.value, ImportError)


def test_require_names_a_broken_dependency(monkeypatch, tmp_path):
    (tmp_path / "half_installed.py").write_text("import no_such_module_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as error:
        require("half_installed", "tf", "doing this")
    _one_line(error, "needs half_installed (it failed to import no_such_module_here)", PIP)


@pytest.mark.usefixtures("no_tf")
def test_tf_checkpoint_reads_need_tf(tmp_path):
    prefix = tmp_path / "model.ckpt"
    (tmp_path / "model.ckpt.index").write_bytes(b"")
    for read in (
        lambda: TFVariables(str(prefix)),
        lambda: load_tf_checkpoint(str(prefix), None, "embedder"),
        lambda: load_block_emb(str(prefix)),
        lambda: TFVariables(str(tmp_path)),  # a model dir: finding its latest checkpoint needs TF
    ):
        with pytest.raises(MissingExtraError) as error:
            read()
        _one_line(error, "reading TF checkpoints needs TensorFlow", PIP)


@pytest.mark.usefixtures("no_tf")
def test_examples_tfr_needs_tf(tmp_path, tokenizer):
    for name in ("blocks.tfr", "titles.tfr", "examples.tfr"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(MissingExtraError) as error:
        next(released_blocks.iter_tfrecord_examples(tmp_path / "examples.tfr"))
    _one_line(error, "reading ORQA's examples.tfr needs TensorFlow", PIP)
    paths = [str(tmp_path / n) for n in ("blocks.tfr", "titles.tfr", "examples.tfr")]
    with pytest.raises(MissingExtraError):
        released_blocks.build_blocks_from_examples(*paths, tmp_path / "store", tokenizer,
                                                   progress=False)
    assert not (tmp_path / "store").exists()


@pytest.mark.usefixtures("no_tf")
def test_text_tfrecords_need_no_tf(tmp_path):
    path = tmp_path / "blocks.tfr"
    path.write_bytes(b"")  # no records; the pure-Python reader needs no TF
    assert list(documents.iter_tfrecord_strings(path)) == []


def _import_tfds_questions(monkeypatch):
    monkeypatch.delitem(sys.modules, "realm_jax.data.tfds_questions", raising=False)
    return importlib.import_module("realm_jax.data.tfds_questions")


@pytest.mark.usefixtures("no_tf")
def test_tfds_builder_needs_tf(monkeypatch):
    with pytest.raises(MissingExtraError) as error:
        _import_tfds_questions(monkeypatch)
    _one_line(error, "the realm_openqa TFDS builder needs TensorFlow:", PIP)


def test_tfds_builder_needs_tfds(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(MissingExtraError) as error:
        _import_tfds_questions(monkeypatch)
    _one_line(error, "the realm_openqa TFDS builder needs TensorFlow Datasets:", PIP)
