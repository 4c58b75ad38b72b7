"""Tables (markdown + JSON) and training-curve plots of a reproduction, from its run directories."""

from __future__ import annotations

import json
import os

from realm_jax.reproduce import runner, stats, zero_shot
from realm_jax.reproduce.metrics import read_metrics
from realm_jax.reproduce.plan import DATASETS, Row
from realm_jax.run.files import METRICS_FILE
from realm_jax.utils.jsonl import atomic_write

# More gate figures than the two with goals (accuracy, oracle utility).
GATE_EXTRA = ("null_mlm_accuracy", "distractor_utility", "hard_utility", "oracle_fraction",
              "num_masks", "step")


def gate(root: str, run: str = "mlm") -> dict | None:
    """The MLM warm start's gate: its last held-out evaluation (None before it has one)."""
    workdir = os.path.join(root, run)
    if not os.path.isfile(os.path.join(workdir, METRICS_FILE)):
        return None
    evals = [r for r in read_metrics(workdir, "eval") if "mlm_accuracy" in r]
    if not evals:
        return None
    keys = ("mlm_accuracy", "oracle_utility", *GATE_EXTRA)
    return {k: evals[-1][k] for k in keys if k in evals[-1]}


def _per_question(root: str, scores: dict) -> list[dict]:
    path = os.path.join(root, scores["per_question"])
    records = runner.read_records(path)
    if records is None:
        raise FileNotFoundError(f"{path}: no per-question records")
    return records


def _by_question(records: list[dict], what: str) -> dict[str, dict]:
    out = {r["question"]: r for r in records}
    if len(out) != len(records):
        raise ValueError(f"per-question records of {what}: a question appears more than once")
    return out


def paired_records(records: list[dict], reference: list[dict], what: str = "the row"):
    """``records`` reordered as ``reference`` (matched by question text), and ``reference``;
    a ValueError when the two are not over the same questions."""
    mine, ref = _by_question(records, what), _by_question(reference, "ORQA")
    if mine.keys() != ref.keys():
        only_ref, only_mine = sorted(ref.keys() - mine.keys()), sorted(mine.keys() - ref.keys())
        example = (only_ref or only_mine)[0]
        raise ValueError(
            f"per-question records of {what} and ORQA are not over the same questions: "
            f"{len(only_ref)} only in ORQA's, {len(only_mine)} only in {what}'s (e.g. {example!r})"
        )
    return [mine[q] for q in ref], list(ref.values())


def difference(records: list[dict], reference: list[dict], what: str = "the row") -> dict:
    """``{"em": ..., "recall_at_5": ...}``: a row's minus the reference's per-question ``correct``
    / ``gold_in_top5``, each ``stats.paired_bootstrap``'s ``{estimate, ci95}`` in points."""
    mine, ref = paired_records(records, reference, what)
    out = {}
    for name, key in (("em", "correct"), ("recall_at_5", "gold_in_top5")):
        out[name] = stats.paired_bootstrap([float(r[key]) for r in mine],
                                           [float(r[key]) for r in ref],
                                           stats.RESAMPLES, stats.SEED, scale=100.0)
    return out


def vs_orqa(row: Row, scores: dict, references: dict, root: str) -> dict:
    """``{dataset: difference(...) or None}`` of a row's runs from the ORQA reference run of
    each dataset (``references``: ``runner.evaluate_references``). None for the reference run
    itself, and where the row or the reference has no scores."""
    out = {}
    for d, name in row.runs.items():
        ref = references.get(d)
        if name == runner.reference_run(d) or ref is None or scores.get(d) is None:
            out[d] = None
            continue
        what = f"{name} on {d}"
        out[d] = difference(_per_question(root, scores[d]), _per_question(root, ref), what)
    return out


def pretrain_zero_shot(root: str, run: str | None, datasets=DATASETS, start: str = "ict"):
    """A pre-training run's pooled dev zero-shot ``{recall_at_5, mrr, change_vs_ict}`` (Table 2's
    column): ``change_vs_ict`` is the paired change from the ICT start, ``{"recall_at_5": {estimate,
    ci95}, "mrr": {...}}`` (None for ICT itself).
    None when the run (or ICT) has not finished."""
    if run is None:
        return None
    summary = zero_shot.zero_shot(root, start, run, datasets)
    if summary is None:
        return None
    figures = summary["realm"]
    return {"recall_at_5": figures["recall_at_5"], "mrr": figures["mrr"],
            "change_vs_ict": None if run == start else summary["change"]}


def _signed(x: float, digits: int = 1) -> str:
    return f"{x:+.{digits}f}".replace("-", "\u2212")


def _change(diff: dict | None, digits: int = 1) -> str:
    if diff is None:
        return ""
    lo, hi = diff["ci95"]
    return f" ({_signed(diff['estimate'], digits)} [{_signed(lo, digits)}, {_signed(hi, digits)}])"


def _cell(value: float | None, diff: dict | None = None) -> str:
    return "–" if value is None else f"{value:.1f}" + _change(diff)


def table(
    rows: list[Row], results: dict, root: str, title: str, references: dict | None = None,
    zero_shot_column: bool = False, zero_shot_sets=DATASETS,
) -> tuple[str, dict]:
    """The markdown table and its JSON record: EM / recall@5 per dataset, each with its paired
    difference from ORQA (``references``: ``runner.evaluate_references``; None: no differences),
    and for Table 2 each pre-trained retriever's zero-shot dev recall@5 over ``zero_shot_sets``."""
    references = references or {}
    datasets = list(dict.fromkeys(d for row in rows for d in row.runs))
    header = ["System"]
    for d in datasets:
        header += [f"{d} EM", f"{d} R@5"]
    if zero_shot_column:
        header.append("zero-shot R@5")
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    record_rows = []
    for row in rows:
        cells, record = [row.label], {"system": row.label}
        record["vs_orqa"] = vs_orqa(row, results[row.label], references, root)
        for d in datasets:
            scores, diff = results[row.label].get(d), record["vs_orqa"].get(d) or {}
            cells.append(_cell(scores["exact_match"] if scores else None, diff.get("em")))
            cells.append(_cell(scores["recall_at_5"] if scores else None, diff.get("recall_at_5")))
            record[d] = scores
        if zero_shot_column:
            record["zero_shot"] = pretrain_zero_shot(root, row.pretrain, zero_shot_sets)
            figures = record["zero_shot"] or {}
            change = figures.get("change_vs_ict") or {}  # {"recall_at_5": ..., "mrr": ...}
            cells.append(_cell(figures.get("recall_at_5"), change.get("recall_at_5")))
        lines.append("| " + " | ".join(cells) + " |")
        record_rows.append(record)
    counts = {d: next((results[r.label][d]["n"] for r in rows if d in results[r.label]), 0)
              for d in datasets}
    lines += ["", "EM and R@5 (an answer string in the top-5 evidence blocks) in percent over "
              + ", ".join(f"{n} {d} questions" for d, n in counts.items()) + "; one training "
              "seed per system. In parentheses: the difference from ORQA (ICT retriever) on the "
              "same questions in percentage points, with its paired bootstrap 95% interval "
              f"({stats.RESAMPLES:,} resamples, seed {stats.SEED}); none on ORQA's own row (the "
              "reference; null in the JSON) or where ORQA has not been trained."]
    if zero_shot_column:
        lines[-1] += (
            " Zero-shot R@5: each pre-trained retriever's index before fine-tuning, pooled over "
            f"the {' and '.join(zero_shot_sets)} dev questions; in parentheses its change from "
            "the ICT start (paired bootstrap as above)."
        )
    return "\n".join(lines) + "\n", {"title": title, "rows": record_rows, "questions": counts}


def zero_shot_paragraph(summary: dict | None, run: str = "realm") -> str:
    """Markdown: zero-shot dev retrieval, the ICT start vs after REALM (``zero_shot.zero_shot``);
    ``run="control"``: after the control run (no gradient into the retriever)."""
    after = {
        "realm": "after REALM pre-training",
        "control": "after the control run (REALM with the retriever gradient stopped)",
    }[run]
    if summary is None:
        return f"Zero-shot retrieval {after}: not measured (a run has not finished).\n"

    def figures(s: dict) -> str:
        r5, mrr = s["change"]["recall_at_5"], s["change"]["mrr"]
        return (f"recall@5 {s['start']['recall_at_5']:.1f}% → {s['realm']['recall_at_5']:.1f}%"
                f"{_change(r5)}, MRR {s['start']['mrr']:.3f} → {s['realm']['mrr']:.3f}"
                f"{_change(mrr, 3)}, n = {s['n_questions']}")

    per_set = "; ".join(f"{d}: {figures(s)}" for d, s in summary["per_set"].items() if s)
    return (
        "Zero-shot retrieval on the dev questions (each retriever's own index, before any "
        f"fine-tuning), the ICT start → {after}: pooled {figures(summary)}; "
        f"{per_set}. Changes with paired bootstrap 95% intervals ({stats.RESAMPLES:,} resamples, "
        f"seed {stats.SEED}; recall in percentage points, MRR as a fraction).\n"
    )


def gate_line(record: dict | None) -> str:
    """Markdown: the MLM warm start's gate figures (``gate``)."""
    if record is None:
        return "MLM warm-start gate: not measured (the MLM run has no evaluation).\n"
    line = (f"MLM warm-start gate (held-out masked sentences, step {record.get('step', '?')}): "
            f"MLM accuracy {record['mlm_accuracy']:.3f}")
    if "null_mlm_accuracy" in record:
        line += f" ({record['null_mlm_accuracy']:.3f} with the null document)"
    line += f", oracle utility {record['oracle_utility']:.3f} nats per masked wordpiece"
    if "oracle_fraction" in record:
        share = 100 * record["oracle_fraction"]
        line += f" (on the {share:.0f}% of held-out sentences whose span some block holds)"
    if "num_masks" in record:
        line += f", {record['num_masks']:.0f} masks"
    misleading = [f"{label} {record[key]:.3f}" for key, label in
                  (("distractor_utility", "a random other block"),
                   ("hard_utility", "the ICT retriever's best block without the span"))
                  if key in record]
    if misleading:
        line += "; utility of a block without the answer: " + ", ".join(misleading) + " nats"
    return line + ".\n"


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
