"""A full disk (a real ENOSPC from a tmpfs) while the trainer saves a checkpoint (orbax).

Synchronous and asynchronous saves: the error (raised by ``save`` or, asynchronously, by
``wait``) is one OSError line naming the step's directory, where orbax's own is a ValueError
carrying tensorstore's message, or an OSError naming no file; orbax's temporary directory of the
step is removed; the step saved before still restores; once there is room again the same object
saves the same step (orbax's manager, after a failed asynchronous save, raises that error again on
later waits and saves: it is replaced).
"""

import os

import jax
import numpy as np
import pytest

from realm_jax.models.bert import tiny_config
from realm_jax.models.realm import RealmConfig, init_params
from realm_jax.run.checkpoints import Checkpoints
from realm_jax.run.state import TrainState, bert_adamw
from tests.faults.disk import assert_one_line_enospc, leftovers

# A failed save leaves orbax's sibling tensorstore writes running; when they finish, on an event
# loop orbax has closed, Python reports "Event loop is closed" as unraisable: not ours.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def state():
    cfg = RealmConfig(tiny_config().replace(vocab_size=100), proj_size=8, share_embedders=False)
    one = np.ones((1, 6), np.int32)
    params = init_params(
        cfg.retriever(), jax.random.PRNGKey(0), one, one, one[:, None], one[:, None]
    )
    return TrainState.create(params, bert_adamw(1e-3, 10, 1))


def _shifted(state: TrainState, step: int) -> TrainState:
    """Another state per step (parameters + step), so that a restore shows which step it read."""
    params = jax.tree.map(lambda x: np.asarray(x) + step, state.params)
    return state.replace(step=state.step + step, params=params)


def _assert_restores(directory: str, step: int, state: TrainState) -> None:
    reader = Checkpoints(directory, read_only=True)
    assert reader.latest_step() == step
    restored = reader.restore_params(step)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(_shifted(state, step).params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    reader.close()


@pytest.mark.parametrize("async_save", [False, True], ids=["sync", "async"])
def test_save_on_a_full_disk(disk, state, async_save):
    directory = os.path.join(disk.path, "checkpoints")
    checkpoints = Checkpoints(directory, max_to_keep=3, async_save=async_save)
    checkpoints.save(1, _shifted(state, 1))
    checkpoints.wait()
    disk.fill()
    with pytest.raises(OSError) as caught:
        checkpoints.save(2, _shifted(state, 2))
        checkpoints.wait()
    assert_one_line_enospc(caught.value, directory)
    assert caught.value.filename == os.path.join(directory, "2")
    checkpoints.wait()  # what the trainer does on its way out: the error is not raised again
    assert leftovers(directory) == []
    _assert_restores(directory, 1, state)
    disk.make_room()
    checkpoints.save(2, _shifted(state, 2))  # the same save again, in the same process
    checkpoints.wait()
    assert leftovers(directory) == []
    _assert_restores(directory, 2, state)
    checkpoints.close()
