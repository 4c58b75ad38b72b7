r"""A bounded load test of ``realm-jax serve`` on loopback: questions/s and p50 / p99 latency at 1,
8 and 32 concurrent clients, with batching and without (``--max_batch 1``); none may be lost.

  XLA_FLAGS= .venv/bin/python experiments/finetune.py \
      --config=experiments/configs/openqa_facts.py --workdir=runs/facts     # the demo run, ~40 s
  XLA_FLAGS= .venv/bin/python experiments/benchmarks/serve_load.py --workdir=runs/facts  # ~3 min

Clients and server share the machine's cores (2 here), so the figures are a floor. Goal: with
batching, questions/s at 32 clients >= 4x at 1 client. Last line: {"benchmark": "serve_load",
"qps_1": ..., "qps_32": ..., "ratio_32_to_1": ..., "lost": ..., "unbatched_qps_32": ...}.
"""

from __future__ import annotations

import logging
import os

os.environ.setdefault("USE_TF", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.assets import FACTS_QUESTIONS  # noqa: E402
from realm_jax.benchmarks.common import format_table, json_line, machine_info  # noqa: E402
from realm_jax.benchmarks.serve_load import (  # noqa: E402
    ServerProcess,
    demo_questions,
    load_levels,
)

flags.DEFINE_string("workdir", "runs/facts", "A fine-tuned open-QA run (default: the demo run).")
flags.DEFINE_string("questions", FACTS_QUESTIONS, "jsonl of {question, answer} to ask, cycled.")
flags.DEFINE_list("clients", ["1", "8", "32"], "Levels of concurrency.")
flags.DEFINE_integer("requests", 2000, "Questions sent per level.")
flags.DEFINE_integer("max_batch", 32, "The server's --max_batch with batching.")
flags.DEFINE_bool("unbatched", True, "Also measure the server with --max_batch 1.")

HEADERS = ["max_batch", "clients", "requests", "lost", "questions/s", "p50 ms", "p99 ms",
           "mean batch", "model ms/question", "model busy"]


def main(argv):
    del argv
    f = flags.FLAGS
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request costs the clients
    if not os.path.isfile(os.path.join(f.workdir, "config.json")):
        raise SystemExit(f"error: --workdir {f.workdir}: not a run directory (train the demo run "
                         "with the command in this script's docstring)")
    questions, levels = demo_questions(f.questions), [int(c) for c in f.clients]
    print(machine_info(), flush=True)
    rows, results = [], {}
    for max_batch in [f.max_batch] + ([1] if f.unbatched else []):
        with ServerProcess(f.workdir, max_batch) as server:
            print(f"max_batch {max_batch}: {server.url}", flush=True)
            for r in load_levels(server.url, questions, levels, f.requests):
                results[(max_batch, r["clients"])] = r
                rows.append([max_batch, r["clients"], r["requests"], r["lost"],
                             r["questions_per_s"], r["p50_ms"], r["p99_ms"], r["mean_batch"],
                             r["model_ms_per_question"], r["model_busy"]])
                print(format_table(HEADERS, rows[-1:]).splitlines()[-1], flush=True)
                if r["first_failure"]:
                    print(f"  first failure: {r['first_failure']}", flush=True)
    print(format_table(HEADERS, rows))
    low, high = results[(f.max_batch, min(levels))], results[(f.max_batch, max(levels))]
    record = {"benchmark": "serve_load", "requests_per_level": f.requests,
              "qps_1": low["questions_per_s"], "qps_32": high["questions_per_s"],
              "ratio_32_to_1": high["questions_per_s"] / low["questions_per_s"],
              "p50_ms_32": high["p50_ms"], "p99_ms_32": high["p99_ms"],
              "model_busy_32": high["model_busy"],
              "lost": sum(r["lost"] for r in results.values())}
    if f.unbatched:
        record["unbatched_qps_32"] = results[(1, max(levels))]["questions_per_s"]
    print(json_line(record))


if __name__ == "__main__":
    app.run(main)
