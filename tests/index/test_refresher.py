"""Which checkpoint the refresher indexes next: the newest (free-running), or on a swap schedule
every scheduled one in order, then the last one once the trainer is done."""

from realm_jax.index.refresher import pick_step


def test_free_running_skips_to_the_newest_but_finishes_a_begun_pass():
    assert pick_step([0, 2, 4, 6], current=0, begun=[], done=False) == 6
    assert pick_step([0, 2, 4, 6], current=0, begun=[4], done=False) == 4
    assert pick_step([0, 2, 4, 6], current=0, begun=[1, 8], done=False) == 6  # gone / not yet
    assert pick_step([0, 2], current=2, begun=[], done=True) is None
    assert pick_step([], current=-1, begun=[], done=False) is None


def test_in_order_indexes_each_scheduled_checkpoint_oldest_first():
    steps = [2, 4, 5, 6]  # 5: an interrupted run's checkpoint, off the schedule
    assert pick_step(steps, current=0, begun=[], done=False, in_order_every=2) == 2
    assert pick_step(steps, current=2, begun=[6], done=False, in_order_every=2) == 4
    assert pick_step(steps, current=4, begun=[], done=False, in_order_every=2) == 6
    assert pick_step(steps, current=6, begun=[], done=False, in_order_every=2) is None
    assert pick_step([4, 5], current=4, begun=[], done=False, in_order_every=2) is None
    # Done: the final checkpoint (deterministic either way), whatever lies between.
    assert pick_step([4, 6, 7], current=4, begun=[], done=True, in_order_every=2) == 7
