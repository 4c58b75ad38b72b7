"""Which runs reproduce the paper's Tables 1 and 2 at a scale, and how they chain.

A ``Run`` is one training stage: a config file of ``experiments/configs/`` (with its ``:args``)
plus overrides, trained into ``<root>/<name>``. A ``Row`` of a table names the fine-tuned open-QA
run it scores on each dataset and, for Table 2, the pre-training run whose zero-shot retrieval
recall it reports. Runs come in dependency order: ICT (the retriever's warm start), the MLM warm
start of the encoder, REALM pre-training from both, then fine-tuning.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from realm_jax.reproduce.metrics import refresh_lag

SCALES = ("mini", "long", "tiny")
# The long variant (make reproduce-long) is the mini scale with a longer REALM stage (its
# config's ":long" settings); ICT, the MLM warm start and fine-tuning are mini's.
LONG_STAGES = ("realm",)
# What each scale's Table 1 reproduces, printed when it starts and written into the table.
SCALE_NOTES = {
    "mini": "the default (goal 45 minutes; 91-98 on a 2-core machine): every stage, REALM "
            "pre-training 30 steps (too few to move the retriever; `make reproduce-long` is the "
            "run that measures that, with its control)",
    "long": "the long variant: REALM pre-training 150 steps and its stopped-gradient control, "
            "the run that measures whether REALM pre-training teaches the retriever",
    "tiny": "a smoke test of the pipeline (random 2-layer BERT): its figures mean nothing",
}
DATASETS = ("mini_nq", "mini_squad")
TABLES = (1, 2)


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # the workdir under the root
    stage: str  # ict, mlm, realm or openqa
    config: str  # "<file>.py[:args]" under experiments/configs/
    # Dotted config fields -> values; "{root}" in a string becomes the root directory; a
    # callable gets the root and is called just before the run (a value measured by earlier runs).
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    runs: dict[str, str]  # dataset -> open-QA run scored on it
    pretrain: str | None = None  # the run whose zero-shot recall@5 Table 2 lists
    note: str = ""


def _file(stage: str, scale: str, *args: str) -> str:
    args = tuple(a for a in args if a)
    if scale == "tiny" or (scale == "long" and stage in LONG_STAGES):
        args += (scale,)
    return f"{stage}_mini.py" + (":" + ",".join(args) if args else "")


def _openqa(name: str, scale: str, dataset: str, init: dict, *args: str) -> Run:
    squad = "squad" if dataset == "mini_squad" else ""
    return Run(name, "openqa", _file("openqa", scale, *args, squad), init)


# REALM pre-training's starting points: the ICT retriever and the MLM-warm-started encoder.
_REALM_INIT = {"init.ict_workdir": "{root}/ict", "init.mlm_workdir": "{root}/mlm"}
_ORQA_INIT = {"init.ict_workdir": "{root}/ict"}  # ORQA: the ICT retriever, no REALM pre-training
# The control: REALM with no gradient into f(x, z); the encoder learns, the retriever stays at its
# ICT start. Table 2 fine-tunes it; the long Table 1 reports its zero-shot change beside REALM's.
CONTROL = "realm_control"
_CONTROL_OVERRIDES = {"realm.retriever_gradient": False}


def _pretraining(scale: str) -> list[Run]:
    return [
        Run("ict", "ict", _file("ict", scale)),
        Run("mlm", "mlm", _file("mlm", scale), dict(_ORQA_INIT)),  # hard negatives, gate
        Run("realm", "realm", _file("realm", scale), dict(_REALM_INIT)),
    ]


def table1(scale: str, datasets: tuple[str, ...] = DATASETS) -> tuple[list[Run], list[Row]]:
    """BM25 + reader, ORQA (ICT retriever, no REALM pre-training) and REALM, fine-tuned per set."""
    _check(scale, datasets)
    systems = [
        ("bm25", "BM25 + reader", {}, ("bm25",)),
        ("orqa", "ORQA (ICT retriever)", dict(_ORQA_INIT), ()),
        ("realm", "REALM", {"init.pretrain_workdir": "{root}/realm"}, ()),
    ]
    runs, rows = _pretraining(scale), []
    if scale == "long":
        runs.append(Run(CONTROL, "realm", _file("realm", scale),
                        {**_REALM_INIT, **_CONTROL_OVERRIDES}))
    for key, label, init, args in systems:
        names = {d: f"openqa_{key}_{d.removeprefix('mini_')}" for d in datasets}
        runs += [_openqa(names[d], scale, d, init, *args) for d in datasets]
        rows.append(Row(label, names, pretrain={"orqa": "ict", "realm": "realm"}.get(key)))
    return runs, rows


def _stale_age(root: str) -> int:
    return 30 * refresh_lag(f"{root}/realm")


def table2(scale: str) -> tuple[list[Run], list[Row]]:
    """REALM's ablations on mini NQ: mixed retriever / encoder, other maskers, a stale index,
    and a control run with no gradient into the retriever score f(x, z).

    The ORQA fine-tuning on mini NQ (Table 1's, reused when Table 1 ran under the same root) is
    trained too, without a row: it is every row's reference for the paired differences.
    """
    _check(scale, ("mini_nq",))
    d = "mini_nq"
    realm, ict = "{root}/realm", "{root}/ict"
    ablations = {
        "realm_random_token": {"realm.masker": "random_token"},
        "realm_random_span": {"realm.masker": "random_span"},
        # 30x the steps the main run's index lagged; no swap before the index is that old
        # (free-running: a swap schedule and min_index_age exclude each other).
        "realm_stale": {"index.swap_lag": 0, "index.min_index_age": _stale_age},
        CONTROL: _CONTROL_OVERRIDES,
    }
    runs = _pretraining(scale)
    runs += [
        Run(name, "realm", _file("realm", scale), {**_REALM_INIT, **over})
        for name, over in ablations.items()
    ]
    runs.append(_openqa("openqa_orqa_nq", scale, d, dict(_ORQA_INIT)))
    fine = {
        "openqa_realm_nq": ({"init.pretrain_workdir": realm}, "realm"),
        "openqa_realm_retriever_nq": (
            {"init.pretrain_workdir": realm, "init.pretrain_parts": "retriever"}, "realm"
        ),
        "openqa_realm_encoder_nq": (
            {"init.pretrain_workdir": realm, "init.pretrain_parts": "encoder",
             "init.ict_workdir": ict}, "ict"
        ),
        **{f"openqa_{n}_nq": ({"init.pretrain_workdir": f"{{root}}/{n}"}, n) for n in ablations},
    }
    runs += [_openqa(name, scale, d, init) for name, (init, _) in fine.items()]
    labels = {
        "openqa_realm_nq": "REALM",
        "openqa_realm_retriever_nq": "REALM retriever + baseline encoder",
        "openqa_realm_encoder_nq": "REALM encoder + baseline retriever",
        "openqa_realm_random_token_nq": "random uniform masks",
        "openqa_realm_random_span_nq": "random span masks",
        "openqa_realm_stale_nq": "30x stale MIPS",
        "openqa_realm_control_nq": "REALM, retriever gradient stopped (control)",
    }
    rows = [Row(labels[name], {d: name}, pretrain=src) for name, (_, src) in fine.items()]
    return runs, rows


def plan(table: int, scale: str, datasets: tuple[str, ...] = DATASETS):
    if table not in TABLES:
        raise ValueError(f"table {table}: expected 1 or 2")
    return table1(scale, datasets) if table == 1 else table2(scale)


def _check(scale: str, datasets: tuple[str, ...]) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r}: expected one of {', '.join(SCALES)}")
    unknown = set(datasets) - set(DATASETS)
    if unknown or not datasets:
        raise ValueError(f"datasets {sorted(unknown) or '(none)'}: expected some of {DATASETS}")


def resolve(value: Any, root: str) -> Any:
    """An override's value for a run under ``root``."""
    if callable(value):
        return value(root)
    return value.replace("{root}", root) if isinstance(value, str) else value
