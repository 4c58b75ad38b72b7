"""A full disk (a real ENOSPC from a tmpfs) while a corpus edit publishes its version.

On a copy of the facts run (conftest.py) on a tmpfs just larger than it. The disk is filled just
before the version's meta.json or LATEST is written (``RealmQA.replace``), or before ``realm-jax
corpus add`` starts (the new blocks fail to write). Each time: one OSError line naming the file
(``error: ...`` and exit status 1 on the command line), LATEST unchanged, the previous version
still answers, nothing temporary left (a version renamed into place but not named by LATEST, the
LATEST case, is removed by the next edit, as after a kill); once there is room again the same edit
succeeds: the replaced fact is answered, the added document is live.
"""

import os
import shutil

import pytest

from realm_jax.index import versions
from realm_jax.index.corpus_edit import load_serving
from realm_jax.serve.api import RealmQA
from tests.faults.disk import assert_one_line_enospc, leftovers, small_disk
from tests.serve.cli_helpers import run_cli, write_edit_file

AMBER = "what is the capital of Amber?"  # London in the facts corpus (document 0)
OSLO = {"id": 0, "title": "Amber", "text": "The capital of Amber is Oslo."}
ZONE = {"id": "zone-9", "title": "Zone 9", "text": "The capital of Zone 9 is Quito."}


def _bytes_under(root: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


@pytest.fixture
def run_on_small_disk(facts_run, tmp_path):
    """(disk, workdir): the facts run copied onto a tmpfs with 4 MiB to spare (a whole 4 KiB page
    per file, plus the edit's own files: tens of KiB)."""
    files = sum(len(names) for _, _, names in os.walk(facts_run))
    size = _bytes_under(facts_run) + 4096 * files + (4 << 20)
    with small_disk(str(tmp_path / "disk"), size) as disk:
        workdir = os.path.join(disk.path, "facts")
        shutil.copytree(facts_run, workdir)
        yield disk, workdir


def _assert_previous_version_serves(workdir: str) -> None:
    assert versions.latest_version(workdir) is None  # the run's own corpus: no edit published
    assert RealmQA(workdir).ask(AMBER)[0]["prediction"] == "London"


# Where the disk fills, and the file whose write then fails (under serving/corpus/).
FAILS = {"write_version": os.path.join("1.tmp", "meta.json"), "write_latest": versions.LATEST}


@pytest.mark.parametrize("step", list(FAILS))
def test_api_edit_on_a_full_disk(run_on_small_disk, monkeypatch, step):
    disk, workdir = run_on_small_disk
    qa = RealmQA(workdir)
    publish_step = getattr(versions, step)

    def fill_first(*args):
        disk.fill()
        return publish_step(*args)

    with monkeypatch.context() as patch:
        patch.setattr(versions, step, fill_first)
        with pytest.raises(OSError) as caught:
            qa.replace([OSLO])
    root = versions.version_root(workdir)
    assert_one_line_enospc(caught.value, workdir)
    assert caught.value.filename == os.path.join(root, FAILS[step])
    assert leftovers(workdir) == []
    # LATEST failed after the rename: version 1 is whole on disk but not published.
    assert os.path.isdir(os.path.join(root, "1")) == (step == "write_latest")
    _assert_previous_version_serves(workdir)
    disk.make_room()
    assert qa.replace([OSLO])["version"] == 1  # the edit first removes an unpublished version 1
    assert sorted(os.listdir(root)) == ["1", versions.LATEST] and leftovers(workdir) == []
    assert qa.ask(AMBER)[0]["prediction"] == "Oslo"


def test_cli_add_on_a_full_disk(run_on_small_disk, tmp_path, capsys):
    disk, workdir = run_on_small_disk
    edit = write_edit_file(tmp_path / "add.jsonl", [ZONE])
    disk.fill()
    code, out, err = run_cli(capsys, "corpus", "add", "--workdir", workdir, edit)
    assert code == 1 and out == ""
    [line] = err.splitlines()
    new_version = os.path.join(versions.version_root(workdir), "1.tmp")
    assert line.startswith(f"error: [Errno 28] No space left on device: '{new_version}/"), line
    with capsys.disabled():
        print(f"\n{line}")
    assert leftovers(workdir) == []
    _assert_previous_version_serves(workdir)
    disk.make_room()
    code, out, err = run_cli(capsys, "corpus", "add", "--workdir", workdir, edit)
    assert code == 0 and "corpus version 1: add 1 document(s)" in out, err
    assert versions.latest_version(workdir) == 1 and leftovers(workdir) == []
    serving = load_serving(workdir, RealmQA(workdir).config)
    [row] = serving.meta["docs"][ZONE["id"]]
    assert (serving.view.title(row), serving.view.text(row)) == (ZONE["title"], ZONE["text"])
