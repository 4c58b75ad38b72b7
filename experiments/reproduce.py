r"""Reproduces the paper's Table 1 (or Table 2's ablations) at CPU scale, end to end.

  python experiments/reproduce.py                      # make reproduce: Table 1, mini scale
  python experiments/reproduce.py --scale=long --workdir=runs/reproduce_long   # make reproduce-long
  python experiments/reproduce.py --table=2            # make reproduce-ablations
  python experiments/reproduce.py --scale=tiny --workdir=/tmp/t   # smoke test, ~5 minutes

Table 1 trains ICT (the retriever's warm start), the MLM warm start of the encoder, REALM
pre-training from both with an asynchronous index refresh, then fine-tunes three systems on each
of mini NQ and mini SQuAD: BM25 + reader, ORQA (the ICT retriever, no REALM pre-training) and
REALM. Each is scored on the test split (EM and recall@5): all 534 mini NQ test questions and a
fixed sample (seed 0) of 534 of mini SQuAD's 2,276, which keeps the evaluations to ~5 of the 45
minutes (``--max_test_questions=0``: all). Every figure comes with its difference from ORQA on
the same questions and a paired bootstrap 95% interval; the table also gives the zero-shot dev
retrieval (recall@5, MRR) of the ICT start vs after REALM, and the MLM warm start's gate.
The long variant (``--scale=long``) trains REALM for 150 steps instead of 30
(``realm_mini.py:long``) and adds the control run (no gradient into the retriever), whose
zero-shot change is reported beside REALM's; it is the run that measures whether REALM
pre-training teaches the retriever.

Table 2 adds REALM runs with random-token masks, random-span masks, a 30x stale index and a
control with no gradient into the retriever, and fine-tunes on mini NQ with REALM's retriever or
encoder swapped for the baseline's (and ORQA, the reference of the differences); it also lists
each retriever's zero-shot dev recall@5 and its change from the ICT start.

Everything goes under ``--workdir`` (default ``runs/reproduce``): one directory per run,
``table1.md`` / ``table1.json`` (``table2.*``; the JSON also holds the command, date, machine and
each run's wall time) and ``realm_curves.png`` (MLM loss, retrieval utility, index staleness and
zero-shot recall over REALM pre-training).
Starting the same command again skips finished runs and resumes an interrupted one.
``--set field=value`` overrides a config field in every run (e.g. ``--set num_train_steps=2``).
"""

import datetime
import json
import os
import sys
import time

from absl import app, flags

from realm_jax.benchmarks.common import machine_info
from realm_jax.errors import USER_ERRORS
from realm_jax.reproduce import plan, report, runner, zero_shot
from realm_jax.train.launch import quiet_logs
from realm_jax.utils import devices

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

_WORKDIR = flags.DEFINE_string("workdir", "runs/reproduce", "Runs, tables and plots go here.")
_TABLE = flags.DEFINE_enum("table", "1", ["1", "2"], "1: main results; 2: ablations.")
_SCALE = flags.DEFINE_enum(
    "scale", "mini", list(plan.SCALES),
    "mini (MiniLM), long (mini with a longer REALM stage: make reproduce-long) or tiny.",
)
_DATASETS = flags.DEFINE_list("datasets", list(plan.DATASETS), "Table 1's question sets.")
_MAX_TEST = flags.DEFINE_integer(
    "max_test_questions", 534, "Score a fixed sample of n test questions per set (0: all).",
    lower_bound=0,
)
_SET = flags.DEFINE_multi_string("set", [], "field=value config override for every run.")
_ISOLATE = flags.DEFINE_bool(
    "isolate", True, "Each run and evaluation in its own process (peak memory: the largest one's)."
)


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep:
            raise app.UsageError(f"--set {pair!r}: expected field=value")
        try:
            out[field] = json.loads(value)
        except json.JSONDecodeError:
            out[field] = value  # a plain string
    return out


TITLES = {1: "Table 1: open-QA test EM and recall@5", 2: "Table 2: ablations on mini NQ"}


def reproduce(table: int, root: str) -> None:
    start = time.perf_counter()
    datasets = tuple(_DATASETS.value)
    title = f"{TITLES[table]} ({_SCALE.value} scale)"
    print(f"reproducing the paper's {title}: {plan.SCALE_NOTES[_SCALE.value]}", flush=True)
    runs, rows = plan.plan(table, _SCALE.value, datasets)
    seconds = runner.run_all(runs, root, CONFIGS, _overrides(_SET.value))
    results = runner.evaluate_rows(rows, root, "test", _MAX_TEST.value)
    sets = list(dict.fromkeys(d for row in rows for d in row.runs))
    references = runner.evaluate_references(sets, root, "test", _MAX_TEST.value)
    markdown, record = report.table(rows, results, root, title, references,
                                    zero_shot_column=table == 2)
    if table == 1:
        record["zero_shot"] = zero_shot.zero_shot(root, "ict", "realm", datasets)
        record["gate"] = report.gate(root)
        markdown += "\n" + report.zero_shot_paragraph(record["zero_shot"])
        if any(run.name == plan.CONTROL for run in runs):
            record["zero_shot_control"] = zero_shot.zero_shot(root, "ict", plan.CONTROL, datasets)
            markdown += "\n" + report.zero_shot_paragraph(record["zero_shot_control"], "control")
        markdown += "\n" + report.gate_line(record["gate"])
    report.plot_realm_curves(os.path.join(root, "realm"), os.path.join(root, "realm_curves.png"))
    markdown += f"\nScale: {plan.SCALE_NOTES[_SCALE.value]}.\n"
    record |= {
        "scale": _SCALE.value,
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "run_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "wall_seconds_this_invocation": round(time.perf_counter() - start, 1),
    }
    report.write_table(root, f"table{table}", markdown, record)
    print(markdown)
    print(f"wrote {root}/table{table}.md, table{table}.json, realm_curves.png "
          f"in {(time.perf_counter() - start) / 60:.1f} min")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_logs()
    devices.use_memory_saving_cpu_schedule()  # before JAX starts here or in the runs' processes
    runner.ISOLATE = _ISOLATE.value
    try:
        reproduce(int(_TABLE.value), _WORKDIR.value)
    except (*USER_ERRORS, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"interrupted: rerun the same command to resume in {_WORKDIR.value}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    app.run(main)
