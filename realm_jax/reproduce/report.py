"""Tables (markdown + JSON) and training-curve plots of a reproduction, from its run directories."""

from __future__ import annotations

import json
import os

from realm_jax.data.jsonl import atomic_write
from realm_jax.reproduce.plan import Row
from realm_jax.train.loop import METRICS_FILE


def read_metrics(workdir: str, split: str) -> list[dict]:
    """The ``split`` ("train" / "eval") records of a run's metrics.jsonl, in order."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; did the run start?")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    # A resumed run logs steps after its checkpoint again: the last record of a step wins.
    by_step = {r["step"]: r for r in records if r["split"] == split}
    return [by_step[s] for s in sorted(by_step)]


def refresh_lag(realm_workdir: str) -> int:
    """Steps an index lagged behind training at most (window means) in a REALM run; >= 1."""
    lags = [r.get("staleness", 0.0) for r in read_metrics(realm_workdir, "train")]
    return max(1, round(max(lags, default=1.0)))


def zero_shot_recall(root: str, source: str | None) -> float | None:
    """Recall@5 of a pre-trained retriever before fine-tuning (Table 2's second column).

    A REALM run's last evaluation scores its final index; an ICT retriever's is the REALM run's
    step-0 evaluation (it starts from ICT's index).
    """
    if source is None:
        return None
    run = "realm" if source == "ict" else source
    evals = [r for r in read_metrics(os.path.join(root, run), "eval") if "recall_at_5" in r]
    if not evals:
        return None
    record = evals[0] if source == "ict" else evals[-1]
    if source == "ict" and record["step"] != 0:
        return None
    return record["recall_at_5"]


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def table(
    rows: list[Row], results: dict, root: str, title: str, zero_shot: bool = False
) -> tuple[str, dict]:
    """The markdown table and its JSON record: EM / recall@5 per dataset (+ zero-shot recall)."""
    datasets = list(dict.fromkeys(d for row in rows for d in row.runs))
    header = ["System"]
    for d in datasets:
        header += [f"{d} EM", f"{d} R@5"]
    if zero_shot:
        header.append("zero-shot R@5")
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]  # fmt: skip
    record_rows = []
    for row in rows:
        cells, record = [row.label], {"system": row.label}
        for d in datasets:
            scores = results[row.label].get(d)
            for key in ("exact_match", "recall_at_5"):
                cells.append(_cell(scores[key] if scores else None))
            record[d] = scores
        if zero_shot:
            record["zero_shot_recall_at_5"] = zero_shot_recall(root, row.pretrain)
            cells.append(_cell(record["zero_shot_recall_at_5"]))
        lines.append("| " + " | ".join(cells) + " |")
        record_rows.append(record)
    counts = {d: next((results[r.label][d]["n"] for r in rows if d in results[r.label]), 0)
              for d in datasets}  # fmt: skip
    lines += ["", "EM and R@5 (an answer string in the top-5 evidence blocks) in percent over "
              + ", ".join(f"{n} {d} questions" for d, n in counts.items()) + "."]  # fmt: skip
    return "\n".join(lines) + "\n", {"title": title, "rows": record_rows, "questions": counts}


def write_table(root: str, name: str, markdown: str, record: dict) -> None:
    with atomic_write(os.path.join(root, f"{name}.md")) as f:
        f.write(markdown)
    with atomic_write(os.path.join(root, f"{name}.json")) as f:
        f.write(json.dumps(record, indent=1) + "\n")


def plot_realm_curves(realm_workdir: str, output: str, title: str = "REALM pre-training") -> None:
    """PNG of MLM loss, retrieval utility, index staleness and zero-shot recall@5 over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, evals = read_metrics(realm_workdir, "train"), read_metrics(realm_workdir, "eval")
    steps = [r["step"] for r in train]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    panels = [
        (axes[0, 0], "loss", "MLM loss (nats per masked token)"),
        (axes[0, 1], "retrieval_utility", "retrieval utility (nats)"),
        (axes[1, 0], "staleness", "index staleness (steps)"),
    ]
    for ax, key, label in panels:
        ax.plot(steps, [r.get(key, float("nan")) for r in train], marker=".", label="train")
        held = [r for r in evals if key in r]
        if held:
            ax.plot([r["step"] for r in held], [r[key] for r in held], "s--", label="held out")
            ax.legend()
        ax.set(xlabel="step", ylabel=label)
        ax.grid(alpha=0.3)
    ax = axes[1, 1]
    held = [r for r in evals if "recall_at_5" in r]
    ax.plot([r["step"] for r in held], [r["recall_at_5"] for r in held], "s-")
    ax.set(xlabel="step", ylabel="zero-shot recall@5 (%)")
    ax.grid(alpha=0.3)
    fig.suptitle(title)
    tmp = output + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, output)
