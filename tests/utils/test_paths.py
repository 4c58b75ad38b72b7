"""check_output: the output paths refused before anything is written."""

import os

import pytest

from realm_jax.errors import ConfigError
from realm_jax.utils.paths import check_output


def test_a_writable_new_path_is_returned(tmp_path):
    path = str(tmp_path / "out.jsonl")
    assert check_output(path, [str(tmp_path / "in.jsonl")]) == path
    assert check_output(str(tmp_path / "store"), [str(tmp_path / "in.jsonl")], directory=True)


@pytest.mark.parametrize("path", ["", "  ", None])
def test_an_empty_path_is_refused(path):
    with pytest.raises(ConfigError, match="^--output is empty; give a path to write$"):
        check_output(path)


def test_an_input_is_never_an_output(tmp_path):
    source = tmp_path / "corpus.jsonl"
    source.write_text("{}\n")
    link = tmp_path / "link.jsonl"
    os.symlink(source, link)
    for path in (str(source), str(link), str(tmp_path / "." / "corpus.jsonl")):
        with pytest.raises(ConfigError, match="is an input; give another path"):
            check_output(path, [str(source)])


def test_a_directory_output_must_not_hold_an_input(tmp_path):
    source = tmp_path / "data" / "corpus.jsonl"
    source.parent.mkdir()
    source.write_text("{}\n")
    for path in (str(tmp_path), str(tmp_path / "data"), str(tmp_path / "data") + "/"):
        with pytest.raises(ConfigError, match=f"holds the input {source}"):
            check_output(path, [str(source)], flag="--output", directory=True)
    assert check_output(str(tmp_path / "data2"), [str(source)], directory=True)  # a sibling


def test_a_file_output_needs_a_file_path_in_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; give a file path"):
        check_output(str(tmp_path))
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is not a directory"):
        check_output(str(tmp_path / "f" / "out.jsonl"))


def test_a_directory_output_below_a_file_is_refused(tmp_path):
    """Made with its missing parents, so the nearest existing parent must be a directory (was
    '[Errno 17] File exists' naming the file, from build_blocks)."""
    (tmp_path / "f").write_text("x")
    for path in (tmp_path / "f" / "store", tmp_path / "f" / "a" / "b"):
        with pytest.raises(ConfigError, match=f"^--output {path}: {tmp_path / 'f'} is not a dir"):
            check_output(str(path), directory=True)
    assert check_output(str(tmp_path / "new" / "deeper" / "store"), directory=True)


def test_a_directory_output_that_is_a_file_is_refused(tmp_path):
    """A run's --workdir or build_blocks' --output naming an existing file: one line, the file
    kept (build_blocks would otherwise replace it with a store)."""
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=f"^--workdir {tmp_path / 'f'}: a file, not a dir"):
        check_output(str(tmp_path / "f"), flag="--workdir", directory=True)
    assert (tmp_path / "f").read_text() == "x"
