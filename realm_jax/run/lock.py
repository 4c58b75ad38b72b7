"""The writer lock of a run directory: one corpus edit or re-index writes ``serving/`` at a time.

``workdir_lock`` holds ``<workdir>/.lock`` (an OS file lock, ``filelock``; the kernel releases it
when its holder exits or is killed, so a dead writer never blocks the next one) from reading the
newest corpus version to publishing the next. A second writer says once on stderr that it waits,
then waits up to ``timeout`` seconds (negative: for ever) and gives up with a ``WorkdirBusyError``
naming the workdir and the timeout. Readers (``realm-jax ask``, ``RealmQA``) never take it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from filelock import FileLock, Timeout

from realm_jax.errors import WorkdirBusyError
from realm_jax.run.files import RunDir

EDIT_LOCK_TIMEOUT = 600.0  # seconds a writer waits for another one (``--lock_timeout``)
log = logging.getLogger(__name__)


@contextlib.contextmanager
def workdir_lock(workdir: str, timeout: float = EDIT_LOCK_TIMEOUT, what: str = "edit"
                 ) -> Iterator[None]:
    """Holds the writer lock of ``workdir`` for the block; ``what`` names the writer."""
    path = RunDir(workdir).lock
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        limit = "until it is done" if timeout < 0 else f"up to {timeout:g} s"
        log.warning("%s waits for another writer of %s to finish (lock file %s held), %s",
                    what, workdir, path, limit)
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise WorkdirBusyError(
                f"{workdir}: another corpus edit or re-index still held {path} after "
                f"{timeout:g} s; {what} did nothing (retry, or give --lock_timeout)"
            ) from None
    try:
        yield
    finally:
        lock.release()
