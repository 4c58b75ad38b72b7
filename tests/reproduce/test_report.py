"""realm_jax.reproduce.report: Table 2's zero-shot column from a run's pooled change."""

from realm_jax.reproduce import report
from realm_jax.reproduce.plan import Row


def test_table2_zero_shot_cell_shows_the_recall_change(monkeypatch):
    # pretrain_zero_shot's change_vs_ict holds one {estimate, ci95} per figure (recall@5, MRR);
    # the cell shows recall@5's. A dict keyed by figure name once reached _change and raised.
    change = {"recall_at_5": {"estimate": -1.5, "ci95": [-3.5, 0.5]},
              "mrr": {"estimate": -0.04, "ci95": [-0.05, -0.03]}}
    figures = {"recall_at_5": 63.4, "mrr": 0.48, "change_vs_ict": change}
    monkeypatch.setattr(report, "pretrain_zero_shot", lambda root, run, sets: figures)
    row = Row("stale", {"mini_nq": "openqa_x_nq"}, pretrain="x")
    results = {"stale": {"mini_nq": {"exact_match": 8.8, "recall_at_5": 80.1, "n": 534}}}
    markdown, record = report.table([row], results, "/nowhere", "T2", zero_shot_column=True)
    assert "| stale | 8.8 | 80.1 | 63.4 (\u22121.5 [\u22123.5, +0.5]) |" in markdown
    assert record["rows"][0]["zero_shot"] is figures
