"""A first-come, first-served lock: threads that share a process's memory take turns with it.

A REALM trainer with a thread refresher runs two large computations in one process: the train
step and the refresher's embedding batches. Run at once, the process needs the sum of their
scratch memory; taking turns, the larger of the two (REALM mini: a 3.7 GiB step and 0.53 GiB
batches). ``threading.Lock`` makes no promise of order, so a thread that releases and asks again
at once could keep it; here each waiter is served in the order it asked.
"""

from __future__ import annotations

import threading


class Turns:
    """A non-reentrant lock whose waiters are served in the order they asked (``with turns:``)."""

    def __init__(self):
        self._changed = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> Turns:
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._changed.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._serving += 1
            self._changed.notify_all()
