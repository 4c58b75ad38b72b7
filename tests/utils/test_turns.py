"""Turns: one holder at a time, waiters served in the order they asked."""

import threading
import time

from realm_jax.utils.turns import Turns


def test_waiters_are_served_in_the_order_they_asked():
    turns, order, inside = Turns(), [], []
    turns.__enter__()  # held, so every worker below queues

    def worker(name):
        with turns:
            inside.append(name)
            order.append(name)
            assert inside == [name]  # nobody else holds it
            time.sleep(0.01)
            inside.remove(name)

    threads = []
    for name in range(6):
        t = threading.Thread(target=worker, args=(name,))
        t.start()
        threads.append(t)
        while turns._next_ticket < name + 2:  # this worker has taken its ticket
            time.sleep(0.001)
    turns.__exit__(None, None, None)
    for t in threads:
        t.join(10)
    assert order == list(range(6))


def test_a_thread_that_asks_again_at_once_waits_behind_a_waiter():
    """A plain Lock may hand itself back to the thread that just released it; Turns may not."""
    turns, order = Turns(), []
    started = threading.Event()

    def other():
        started.set()
        with turns:
            order.append("other")

    with turns:
        t = threading.Thread(target=other)
        t.start()
        started.wait(5)
        while turns._next_ticket < 2:
            time.sleep(0.001)
        order.append("first")
    with turns:  # asked after ``other``: served after it
        order.append("again")
    t.join(5)
    assert order == ["first", "other", "again"]
