"""A disk that fills up when a test says so: a small tmpfs mounted under the test's tmp_path.

The writes under test then fail with a real ENOSPC from the kernel, at whatever write(), flush()
or fsync() the code makes, instead of a patched function that only a chosen call would reach.
Mounting needs root (the tests' container runs as root, locally and in CI); where it is refused
the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator

import pytest

FILLER = ".filler"  # at the top of the disk, outside every directory a test writes into


class SmallDisk:
    """A mounted tmpfs at ``path``: ``fill`` takes its free space, ``make_room`` gives it back."""

    def __init__(self, path: str):
        self.path = path
        self.filler = os.path.join(path, FILLER)

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Grows the filler file until at most ``leave`` bytes are free (tmpfs counts whole
        4 KiB pages, so a write larger than what is left fails with ENOSPC)."""
        chunk = b"\xff" * (1 << 20)
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while (want := self.free_bytes() - leave) > 0:
                try:
                    os.write(fd, chunk[:want])
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        assert self.free_bytes() <= leave + 4096

    def make_room(self) -> None:
        os.remove(self.filler)


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True)


@contextlib.contextmanager
def small_disk(path: str, size: int) -> Iterator[SmallDisk]:
    """A tmpfs of ``size`` bytes mounted at ``path`` for the block; unmounted after it (lazily
    if a file on it is still open or mapped)."""
    os.makedirs(path, exist_ok=True)
    try:
        mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path)
    except FileNotFoundError:
        pytest.skip("no mount command: a small tmpfs is needed to fill a disk")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (root is needed to fill a disk): "
                    f"{mounted.stderr.strip()}")
    try:
        yield SmallDisk(path)
    finally:
        if _run("umount", path).returncode != 0:
            _run("umount", "-l", path)


def assert_one_line_enospc(error: BaseException, under: str) -> None:
    """``error`` is an ENOSPC OSError whose message is one line naming a path under ``under``."""
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC, repr(error)
    assert "\n" not in str(error), str(error)
    assert error.filename and os.fspath(error.filename).startswith(under), str(error)
    assert os.fspath(error.filename) in str(error)


def leftovers(root: str) -> list[str]:
    """Temporary files and directories (``*.tmp``, orbax's ``*.orbax-checkpoint-tmp*``) anywhere
    under ``root``: what a failed writer must not leave behind."""
    found = []
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            if name.endswith(".tmp") or ".orbax-checkpoint-tmp" in name:
                found.append(os.path.relpath(os.path.join(parent, name), root))
    return sorted(found)
