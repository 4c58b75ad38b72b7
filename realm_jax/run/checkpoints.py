"""Trainer checkpoints (orbax) and the part of them the re-indexer reads.

Layout of a checkpoint directory:
  <dir>/<step>/default/...  orbax PyTree ``{"step", "params", "opt_state"}`` (a TrainState minus tx)
  <dir>/embedder.json       the document tower's shape (``EmbedderSpec``), written once
  <dir>/DONE                the trainer has finished: the refresher indexes the last step and exits

Orbax writes each step into a temporary directory and renames it when complete, so a reader only
ever lists finished steps. A save that fails for want of disk (or another filesystem error) is an
OSError naming the step (raised by ``save`` or, for an asynchronous save, ``wait`` or the next
``save``); its temporary directory is removed and the steps saved before are untouched.
``restore_embedder_params`` reads the document tower's arrays alone.
A finished step can still be damaged later (a truncated or deleted file): ``restore_latest_good``
then falls back to the newest step that restores, and the trainer moves the broken one aside to
``<dir>/<step>.corrupt`` (orbax lists only ``<dir>/<step>``) so that it can save that step again.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp

from realm_jax.errors import CheckpointError
from realm_jax.models.realm import EmbedderSpec, embedder_params, embedder_path
from realm_jax.run.state import TrainState
from realm_jax.utils.jsonl import atomic_write, read_json

T = TypeVar("T")

log = logging.getLogger(__name__)

SPEC_FILE = "embedder.json"
DONE_FILE = "DONE"
# What restoring a damaged step raises: tensorstore's NOT_FOUND / OUT_OF_RANGE / DATA_LOSS (a
# deleted, truncated or overwritten array file) and a bad _METADATA (JSONDecodeError, pytree
# structure error) are ValueErrors; a missing item directory is a KeyError; a step directory
# gone since the listing is a FileNotFoundError.
RESTORE_ERRORS = (OSError, ValueError, KeyError)
ORBAX_TMP = ".orbax-checkpoint-tmp"  # <step><ORBAX_TMP>...: a step being written
_OS_ERROR_CODE = re.compile(r"os_error_code='(\d+)'")


def write_embedder_spec(directory: str, spec: EmbedderSpec) -> None:
    os.makedirs(directory, exist_ok=True)
    with atomic_write(os.path.join(directory, SPEC_FILE)) as f:
        json.dump(spec.to_dict(), f, indent=1)


def read_embedder_spec(directory: str) -> EmbedderSpec:
    path = os.path.join(directory, SPEC_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; the trainer writes it with its first checkpoint")
    return EmbedderSpec.from_dict(read_json(path))


def mark_done(directory: str) -> None:
    """Tells the refresher the trainer has finished (it indexes the last step, then exits)."""
    with atomic_write(os.path.join(directory, DONE_FILE)) as f:
        f.write("done\n")


def is_done(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, DONE_FILE))


class Checkpoints:
    """One orbax CheckpointManager over ``directory``: the trainer saves, the refresher reads."""

    def __init__(
        self,
        directory: str,
        max_to_keep: int | None = 3,
        async_save: bool = True,
        read_only: bool = False,
        embedder_spec: EmbedderSpec | None = None,
        alone: bool = False,
    ):
        """``alone``: used by this process only (a refresher thread of one trainer process);
        otherwise orbax expects every process of a ``jax.distributed`` job to take part."""
        self.directory = os.path.abspath(directory)
        self._read_only = read_only
        self._saving: int | None = None  # the step of an asynchronous save not waited for
        multiprocessing = ocp.options.MultiprocessingOptions()
        if alone and jax.process_count() > 1:
            me = jax.process_index()
            multiprocessing = ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"alone{me}"
            )
        if read_only:
            # Spelled out: orbax warns when read_only overrides its saving defaults.
            options = ocp.CheckpointManagerOptions(
                read_only=True, save_interval_steps=0, create=False, max_to_keep=None,
                multiprocessing_options=multiprocessing,
            )
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save,
                multiprocessing_options=multiprocessing,
            )
            if embedder_spec is not None:
                write_embedder_spec(self.directory, embedder_spec)
        self._options = options
        self._manager = self._new_manager()

    def _new_manager(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(
            self.directory, item_handlers=ocp.PyTreeCheckpointHandler(), options=self._options
        )

    def save(self, step: int, state: TrainState) -> None:
        """Saves a host (unreplicated) train state; with async_save the write runs in background."""
        tree = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
        if jax.process_count() > 1:
            # pmap leaves host-local arrays, which orbax cannot save across hosts; every process
            # holds the same replicated values, so numpy copies are saved (process 0 writes them).
            tree = jax.device_get(tree)
        self.wait()  # a failed asynchronous save is reported now, naming its own step
        with self._save_errors(step):
            self._manager.save(step, args=ocp.args.PyTreeSave(tree))
        self._saving = step

    @contextlib.contextmanager
    def _save_errors(self, step: int) -> Iterator[None]:
        """A save that failed for want of disk (or another filesystem error) becomes a one-line
        OSError naming the step's directory; orbax's temporary directory of it is removed."""
        try:
            yield
        except Exception as e:
            error = disk_error(e, self._step_dir(step))
            if error is None:
                raise
            # A manager whose asynchronous save failed raises that error again on every wait,
            # save and close: it is replaced, so that closing or saving again works. Closing it
            # also waits for the writes still in flight, which would recreate the directory.
            with contextlib.suppress(Exception):
                self._manager.close()
            for name in os.listdir(self.directory):
                if name.startswith(f"{step}{ORBAX_TMP}"):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
            self._manager = self._new_manager()
            collect_failed_restore()  # orbax's tasks holding the same error, without tracebacks
            raise error from e

    def latest_step(self) -> int | None:
        """The newest finished step on disk (re-listed on every call), or None."""
        if not os.path.isdir(self.directory):
            return None
        self._manager.reload()
        return self._manager.latest_step()

    def restore_embedder_params(self, step: int) -> dict:
        """The document tower's ``{"params": ...}`` of ``step`` as numpy arrays (reads no more)."""
        params_meta = self._manager.item_metadata(step).tree["params"]
        item = jax.tree.map(lambda _: 0, embedder_params(params_meta)["params"])
        for key in reversed(("params", *embedder_path(params_meta))):
            item = {key: item}  # the tower's place in the saved tree; the rest is not read
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        out = self._manager.restore(
            step, args=ocp.args.PyTreeRestore(item, restore_args=restore_args, partial_restore=True)
        )
        return embedder_params(out["params"])

    def restore_params(self, step: int) -> dict:
        """The model parameters of ``step`` as numpy arrays (the optimiser state is not read)."""
        params_meta = self._manager.item_metadata(step).tree["params"]
        item = {"params": jax.tree.map(lambda _: 0, params_meta)}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        out = self._manager.restore(
            step, args=ocp.args.PyTreeRestore(item, restore_args=restore_args, partial_restore=True)
        )
        return out["params"]

    def restore_state(self, step: int, template: TrainState) -> TrainState:
        """The full train state of ``step``, shaped like ``template`` (to resume training)."""
        tree = {"step": template.step, "params": template.params, "opt_state": template.opt_state}
        if jax.process_count() > 1:  # as saved: numpy on every process, replicated by the loop
            restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        else:
            restore_args = ocp.checkpoint_utils.construct_restore_args(tree)  # template's shardings
        out = self._manager.restore(
            step, args=ocp.args.PyTreeRestore(tree, restore_args=restore_args)
        )
        return template.replace(**out)

    def restore_latest_good(
        self, template: TrainState
    ) -> tuple[int, TrainState] | tuple[None, None]:
        """The newest step whose full train state restores into ``template``, and that state
        (``newest_that_restores``)."""
        return self.newest_that_restores(lambda step: self.restore_state(step, template))

    def newest_that_restores(
        self, restore: Callable[[int], T]
    ) -> tuple[int, T] | tuple[None, None]:
        """The newest step for which ``restore(step)`` succeeds, and what it returned; (None,
        None) when there is no step.

        Each newer step that fails to restore gets one warning with the reason; unless the
        manager is read-only it is also moved aside to ``<step>.corrupt`` (only once an older
        step restored: when none does, e.g. a template of another model, nothing is moved), so
        the trainer can save that step number again. Raises ``CheckpointError`` if none restores.
        """
        failed: list[tuple[int, str]] = []
        for step in sorted(self.all_steps(), reverse=True):
            try:
                restored = restore(step)
            except RESTORE_ERRORS as e:
                failed.append((step, _first_line(e)))
                _install_drop_closed_loop_callbacks()  # before the next restore's loop closes
                continue
            if failed:
                collect_failed_restore()
            moved = self._set_aside([bad for bad, _ in failed])
            for bad, reason in failed:
                aside = f"; moved it to {moved[bad]}" if bad in moved else ""
                log.warning("checkpoint %s does not restore (%s)%s; using step %d instead",
                            self._step_dir(bad), reason, aside, step)
            return step, restored
        if failed:
            collect_failed_restore()
            for bad, reason in failed:
                log.warning("checkpoint %s does not restore (%s)", self._step_dir(bad), reason)
            steps = ", ".join(str(bad) for bad, _ in failed)
            raise CheckpointError(
                f"{self.directory}: none of its checkpoints restores (steps {steps}; "
                f"step {failed[0][0]}: {failed[0][1]})"
            )
        return None, None

    def all_steps(self) -> list[int]:
        """The finished steps on disk (re-listed on every call), oldest first."""
        if not os.path.isdir(self.directory):
            return []
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _set_aside(self, steps: list[int]) -> dict[int, str]:
        """Renames the directories of ``steps`` to ``<step>.corrupt`` (unless read-only);
        returns the new paths. Process 0 renames, then every process re-lists."""
        if not steps or self._read_only:
            return {}
        moved = {}
        if jax.process_index() == 0:
            for step in steps:
                path = self._step_dir(step)
                if not os.path.isdir(path):
                    continue  # gone already (the FileNotFoundError case)
                n, aside = 0, f"{path}.corrupt"
                while os.path.exists(aside):
                    n += 1
                    aside = f"{path}.corrupt-{n}"
                os.rename(path, aside)
                moved[step] = aside
        if jax.process_count() > 1:
            ocp.multihost.sync_global_processes("realm_jax_checkpoint_set_aside")
        self._manager.reload()  # forget the moved steps: saving one of their numbers must work
        return moved

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        step, self._saving = self._saving, None
        if step is None:
            self._manager.wait_until_finished()
            return
        with self._save_errors(step):
            self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def collect_failed_restore() -> None:
    """A restore that failed leaves orbax's asyncio tasks holding the same exception; collect them
    now, with asyncio's "Task exception was never retrieved" logging off (the failure has been
    reported in one line), so that dozens of traceback lines do not reach stderr later."""
    _install_drop_closed_loop_callbacks()
    asyncio_log = logging.getLogger("asyncio")
    level = asyncio_log.level
    asyncio_log.setLevel(logging.CRITICAL)
    try:
        gc.collect()
    finally:
        asyncio_log.setLevel(level)


_previous_unraisablehook = sys.unraisablehook


def _drop_closed_loop_callbacks(unraisable) -> None:
    """``sys.unraisablehook`` once a restore has failed: tensorstore's reads of that restore still
    complete later and call back into orbax's event loop, closed by then, each printing a
    "RuntimeError: Event loop is closed" traceback; those are dropped, anything else is not."""
    closed = unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == (
        "Event loop is closed")
    if not closed:
        _previous_unraisablehook(unraisable)


def _install_drop_closed_loop_callbacks() -> None:
    global _previous_unraisablehook
    if sys.unraisablehook is not _drop_closed_loop_callbacks:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _drop_closed_loop_callbacks


def disk_error(e: Exception, path: str) -> OSError | None:
    """``e`` as a one-line OSError naming ``path`` when it is a filesystem error (an OSError, or
    tensorstore's error carrying an ``os_error_code``, e.g. 28: no space left), else None."""
    if isinstance(e, OSError):
        return OSError(e.errno, e.strerror, e.filename or path) if e.errno else None
    code = _OS_ERROR_CODE.search(str(e))
    return OSError(int(code[1]), os.strerror(int(code[1])), path) if code else None


def _first_line(e: Exception) -> str:
    """``Type: first line of the message``, without the specs tensorstore appends to it."""
    message = e.args[0] if isinstance(e, KeyError) and e.args else e
    lines = str(message).strip().splitlines()
    first = lines[0].split(" [tensorstore_spec", 1)[0] if lines else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def save_checkpoint(
    directory: str, step: int, state: TrainState, embedder_spec: EmbedderSpec | None = None
) -> None:
    """Saves ``state`` at ``step`` synchronously (a one-off; a run keeps a ``Checkpoints``)."""
    checkpoints = Checkpoints(directory, async_save=False, embedder_spec=embedder_spec)
    checkpoints.save(step, state)
    checkpoints.close()


def restore_embedder_params(directory: str, step: int | None = None) -> dict:
    """The document tower's params at ``step`` (default: the newest step) as numpy arrays."""
    checkpoints = Checkpoints(directory, read_only=True)
    step = checkpoints.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"{directory}: no finished checkpoint")
    return checkpoints.restore_embedder_params(step)
