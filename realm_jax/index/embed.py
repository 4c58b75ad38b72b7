"""Embed a whole corpus with the document tower (Embed_doc), pmapped over local devices.

Blocks are sorted by length (longest first, so memory peaks at once) and cut into global batches
of ``batch_size``; each batch is padded only to its longest block, rounded up to ``pad_multiple``
(a few shapes, each compiled once per process). The host builds batch i+1 while the devices run
batch i. The output is ``[N, proj_size]`` in the corpus order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import flax.linen as nn
import jax
import numpy as np

from realm_jax.utils.devices import AXIS, replicate
from realm_jax.utils.progress import progress_bar
from realm_jax.utils.turns import Turns

INPUT_KEYS = ("input_ids", "input_mask", "token_type_ids")


class BlockSource(Protocol):
    """What embedding needs from a corpus: ``data.blocks.BlockStore`` has this shape."""

    lengths: np.ndarray  # [N] tokens in each block's ``[CLS] title [SEP] body [SEP]``

    def __len__(self) -> int: ...

    def block_inputs(self, indices: Sequence[int], max_len: int) -> dict[str, np.ndarray]:
        """int32 ``input_ids, input_mask, token_type_ids [n, max_len]`` of blocks ``indices``."""
        ...


class ArrayBlocks:
    """Blocks already tokenized in memory (int32 ``[N, L]`` arrays), as a ``BlockSource``."""

    def __init__(self, input_ids: np.ndarray, input_mask: np.ndarray, token_type_ids=None):
        if input_ids.shape != input_mask.shape or input_ids.ndim != 2:
            raise ValueError(f"input_ids {input_ids.shape} and input_mask {input_mask.shape}")
        types = np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        self.arrays = {"input_ids": input_ids, "input_mask": input_mask, "token_type_ids": types}
        self.lengths = input_mask.sum(1).astype(np.int32)
        self.max_len = input_ids.shape[1]

    def __len__(self) -> int:
        return len(self.lengths)

    def block_inputs(self, indices: Sequence[int], max_len: int) -> dict[str, np.ndarray]:
        rows = np.asarray(indices)
        out = {}
        for key, a in self.arrays.items():
            part = np.zeros((len(rows), max_len), np.int32)
            cut = a[rows, :max_len]
            part[:, : cut.shape[1]] = cut
            out[key] = part
        return out


def length_batches(
    lengths: np.ndarray, batch_size: int, max_len: int, pad_multiple: int = 32
) -> list[tuple[np.ndarray, int]]:
    """lengths [N] -> [(block indices [<= batch_size], padded length)], longest blocks first."""
    order = np.argsort(-np.minimum(lengths, max_len), kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        longest = int(min(lengths[idx].max(), max_len))
        batches.append((idx, min(max_len, -(-longest // pad_multiple) * pad_multiple)))
    return batches


class CorpusEmbedder:
    """Embed_doc over a corpus; keeps its pmapped function so shapes compile once per process.

    ``turns``: None dispatches the next batch before fetching the last one (two in flight: faster
    on an accelerator). A refresher thread that shares its process with a train step passes the
    ``Turns`` the step also takes: each batch is then computed and fetched in its own turn, so a
    batch never runs beside a step (REALM mini: 0.53 GiB of XLA scratch per batch of 128).
    """

    def __init__(
        self, embedder: nn.Module, devices: list | None = None, turns: Turns | None = None
    ):
        self.embedder = embedder
        self.devices = list(devices or jax.local_devices())
        self.turns = turns
        # (replicated params, ids, mask, types [devices, b, L]) -> [devices, b, dim]
        self.forward = jax.pmap(
            lambda p, ids, mask, types: embedder.apply(p, ids, mask, types),
            axis_name=AXIS,
            devices=self.devices,
        )

    def __call__(
        self,
        params: dict,
        blocks: BlockSource,
        batch_size: int = 256,
        max_len: int = 288,
        dtype: np.dtype | str = np.float32,
        pad_multiple: int = 32,
        progress: bool = True,
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embeds every block with ``params`` (the tower's ``{"params": ...}``) -> [N, dim].

        ``batch_size`` is global (rounded up to a multiple of the device count); ``on_batch``
        is called with the number of blocks done after each batch.
        """
        n_dev = len(self.devices)
        batch_size = -(-batch_size // n_dev) * n_dev
        batches = length_batches(blocks.lengths, batch_size, max_len, pad_multiple)
        replicated = replicate(params, self.devices)
        out = np.empty((len(blocks), self.embedder.proj_size), dtype)
        done = 0
        pending = None  # (indices, device result): fetched after the next batch is dispatched
        with progress_bar(total=len(blocks), desc="embed", unit="block", enabled=progress) as bar:
            for idx, seq_len in [*batches, (None, 0)]:
                launched = None
                if idx is not None:
                    inputs = blocks.block_inputs(_fill(idx, batch_size), seq_len)
                    shaped = [inputs[k].reshape(n_dev, -1, seq_len) for k in INPUT_KEYS]
                    if self.turns is None:
                        launched = (idx, self.forward(replicated, *shaped))
                    else:
                        with self.turns:  # computed and fetched before a step may run again
                            pending = (idx, np.asarray(self.forward(replicated, *shaped)))
                if pending is not None:
                    rows, emb = pending
                    out[rows] = np.asarray(emb).reshape(-1, out.shape[1])[: len(rows)]
                    done += len(rows)
                    bar.update(len(rows))
                    if on_batch is not None:
                        on_batch(done)
                pending = launched
        return out


def _fill(idx: np.ndarray, size: int) -> np.ndarray:
    """Pads a short last batch with repeats of its first block (their outputs are dropped)."""
    return np.concatenate([idx, np.full(size - len(idx), idx[0], idx.dtype)])


def embed_corpus(embedder: nn.Module, params: dict, blocks: BlockSource, **kwargs) -> np.ndarray:
    """One-off ``CorpusEmbedder(embedder)(params, blocks, **kwargs)`` -> [N, dim]."""
    return CorpusEmbedder(embedder)(params, blocks, **kwargs)
