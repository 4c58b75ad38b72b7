"""The workdir writer lock: one writer at a time; another says once that it waits, then either gets
the lock when the first is done or gives up after its timeout with one line naming both."""

import logging
import threading
import time

import pytest
from filelock import FileLock, Timeout

from realm_jax.errors import USER_ERRORS, WorkdirBusyError
from realm_jax.run.files import RunDir
from realm_jax.run.lock import workdir_lock


def _waits(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "realm_jax.run.lock"]


def test_a_free_lock_is_taken_at_once_and_given_back(tmp_path, caplog):
    path = RunDir(str(tmp_path)).lock
    with caplog.at_level(logging.WARNING), workdir_lock(str(tmp_path), 5, "corpus add"):
        with pytest.raises(Timeout):
            FileLock(path).acquire(blocking=False)  # held: another writer could not take it
    assert _waits(caplog) == []
    other = FileLock(path)
    other.acquire(blocking=False)
    other.release()


def test_a_second_writer_waits_then_gives_up_with_one_line(tmp_path, caplog):
    holder = FileLock(RunDir(str(tmp_path)).lock)
    holder.acquire()
    try:
        start = time.perf_counter()
        with caplog.at_level(logging.WARNING), pytest.raises(WorkdirBusyError) as error:
            with workdir_lock(str(tmp_path), 0.3, "corpus add"):
                pytest.fail("entered a held lock")
        waited = time.perf_counter() - start
    finally:
        holder.release()
    message = str(error.value)
    assert isinstance(error.value, USER_ERRORS) and "\n" not in message
    assert str(tmp_path) in message and "0.3 s" in message and "corpus add" in message
    [wait] = _waits(caplog)
    assert "corpus add waits for another writer" in wait and RunDir(str(tmp_path)).lock in wait
    assert waited >= 0.3


def test_a_second_writer_goes_on_when_the_first_is_done(tmp_path, caplog):
    holder = FileLock(RunDir(str(tmp_path)).lock)
    holder.acquire()
    entered = []

    def second_writer():
        with workdir_lock(str(tmp_path), 30, "index"):
            entered.append(time.perf_counter())

    with caplog.at_level(logging.WARNING):
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.3)
        assert entered == []  # still waiting
        released = time.perf_counter()
        holder.release()
        thread.join(10)
    assert len(entered) == 1 and entered[0] >= released
    assert len(_waits(caplog)) == 1
