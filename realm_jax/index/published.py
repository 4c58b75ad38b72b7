"""The index another run published at its latest checkpoint, read by the next stage: REALM's
seed index from the ICT run, the MLM warm start's hard negatives, the zero-shot evaluation."""

from __future__ import annotations

import os

from realm_jax.index.live import Snapshot, load_snapshot
from realm_jax.index.store import IndexStore
from realm_jax.models.realm import query_tower
from realm_jax.run.checkpoints import Checkpoints
from realm_jax.run.files import CHECKPOINT_DIR, INDEX_DIR, read_run_config
from realm_jax.run.model_setup import restore_run_params


def _latest_index(workdir: str, max_len: int, blocks_dir: str) -> tuple[str | None, int | None]:
    """(why run ``workdir`` has no usable index or None, the step of its latest checkpoint)."""
    source = read_run_config(workdir)
    if source.stage == "openqa":
        return "an open-QA run publishes no index", None
    length = source.ict.block_len if source.stage == "ict" else source.realm.cand_len
    if length != max_len:
        return f"its index embeds blocks cut to {length} wordpieces, not {max_len}", None
    if source.data.blocks_dir != blocks_dir:
        return f"its index is over data.blocks_dir={source.data.blocks_dir}, not {blocks_dir}", None
    step = Checkpoints(os.path.join(workdir, CHECKPOINT_DIR), read_only=True).latest_step()
    if step is None or step not in IndexStore(os.path.join(workdir, INDEX_DIR)).steps():
        return f"no index published at its latest checkpoint (step {step})", step
    return None, step


def source_index_problem(workdir: str, max_len: int, blocks_dir: str) -> str | None:
    """Why run ``workdir`` has no index that ``source_index`` can use, or None if it has one."""
    return _latest_index(workdir, max_len, blocks_dir)[0]


def source_index(workdir: str | None, max_len: int, blocks_dir: str) -> Snapshot | None:
    """The index another run published at its latest checkpoint, if built the way we need it."""
    if not workdir:
        return None
    problem, step = _latest_index(workdir, max_len, blocks_dir)
    if problem:
        return None
    return load_snapshot(IndexStore(os.path.join(workdir, INDEX_DIR)), step, exact=True)


def run_query_tower(workdir: str, snapshot: Snapshot) -> dict:
    """The query tower of run ``workdir`` at ``snapshot``'s step: the index's own tower when the
    run shares its towers, else the query tower restored from that step's checkpoint."""
    if read_run_config(workdir).model.share_embedders and snapshot.tower is not None:
        return snapshot.tower
    return query_tower(restore_run_params(workdir, snapshot.step)[1])
