"""Concurrent questions gathered into one model call: a short window, a maximum batch.

``QuestionBatcher.ask`` is awaited by each HTTP request; one task takes the first waiting
question, whatever else is already waiting, and, when the previous batch held more than one
question (others are asking), what arrives within ``window_s`` after it, up to ``max_batch``, and
answers them in one call on the model thread. While that call runs, new questions wait, so under
load the batches grow by themselves and throughput with them; a lone client never waits for the
window. Batches are padded to the next power of two (at most
``max_batch``), so the model compiles one shape per power of two, each once (``warm_up``).

Everything that touches the model (answers, corpus edits) runs on that one thread, in order: an
edit never runs beside a batch, and a batch after an edit reads the new corpus.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence

# answer(questions, batch_size) -> one prediction dict or one exception per question
AnswerFn = Callable[[Sequence[str], int], list]


def batch_shape(n: int, max_batch: int) -> int:
    """The compiled batch size for ``n`` questions: the next of 1, 2, 4, 8, 12, 16, 24, 32, 48,
    ... (powers of two, and 1.5 times them from 8: at most a third of a batch is padding), at
    most ``max_batch``."""
    power = 1 << max(0, n - 1).bit_length()  # the next power of two
    size = power * 3 // 4 if power >= 16 and n <= power * 3 // 4 else power
    return min(max_batch, size)


def batch_shapes(max_batch: int) -> list[int]:
    """Every shape ``batch_shape`` returns for 1..max_batch questions."""
    return sorted({batch_shape(n, max_batch) for n in range(1, max_batch + 1)})


class QuestionBatcher:
    """Runs ``answer`` over batches of concurrently asked questions (see the module docstring).

    ``start()`` and ``close()`` run in the server's event loop (its lifespan); ``stats`` counts
    batches and questions answered and the largest batch so far.
    """

    def __init__(self, answer: AnswerFn, max_batch: int = 32, window_s: float = 0.002):
        if max_batch < 1 or window_s < 0:
            raise ValueError(f"max_batch {max_batch} < 1 or window_s {window_s} < 0")
        self.answer, self.max_batch, self.window_s = answer, max_batch, window_s
        self.model_thread = concurrent.futures.ThreadPoolExecutor(1, "realm-jax-model")
        self.stats = {"batches": 0, "questions": 0, "padded_questions": 0, "largest_batch": 0,
                      "model_seconds": 0.0}
        self._last_size = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def warm_up(self, question: str) -> list[float]:
        """Compiles every batch shape (blocking; before serving). Seconds per shape."""
        seconds = []
        for size in batch_shapes(self.max_batch):
            start = time.perf_counter()
            self.answer([question] * size, size)
            seconds.append(time.perf_counter() - start)
        return seconds

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._serve(), name="realm-jax-batcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.model_thread.shutdown(wait=True)

    async def ask(self, question: str) -> dict:
        """The prediction for one question (raises what ``answer`` gave for it)."""
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((question, future))
        return await future

    async def run_exclusive(self, fn: Callable, *args):
        """``fn(*args)`` on the model thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self.model_thread, fn, *args)

    async def _gather(self) -> list[tuple[str, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        # One question last time: no one else is asking, so waiting would only add latency.
        deadline = loop.time() + (self.window_s if self._last_size > 1 else 0.0)
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [(q, f) for q, f in batch if not f.cancelled()]  # a client that went away

    async def _serve(self) -> None:
        while True:
            batch = await self._gather()
            if not batch:
                continue
            questions = [q for q, _ in batch]
            self._last_size, shape = len(questions), batch_shape(len(questions), self.max_batch)
            start = time.perf_counter()
            try:
                results = await self.run_exclusive(self.answer, questions, shape)
            except Exception as e:  # noqa: BLE001 - each waiting request reports it
                results = [e] * len(batch)
            self.stats["batches"] += 1
            self.stats["questions"] += len(batch)
            self.stats["padded_questions"] += shape
            self.stats["largest_batch"] = max(self.stats["largest_batch"], len(batch))
            self.stats["model_seconds"] += time.perf_counter() - start
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
