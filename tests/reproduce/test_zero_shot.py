"""realm_jax.reproduce.zero_shot on hand-made rankings and records (no model, no index)."""

import json
import pathlib

import numpy as np
import pytest

from realm_jax.reproduce import runner, zero_shot


def test_question_records_score_recall_and_the_gold_passage_rank():
    texts = ["paris is in france", "the moon", "berlin, germany", "nothing here", "paris again"]
    passages = np.array([10, 11, 12, 13, 10])  # blocks 0 and 4 are cut from passage 10
    rows = [
        {"question": "capital of france?", "answers": ["Paris"], "gold_passage_id": 10},
        {"question": "capital of germany?", "answers": ["Berlin"], "gold_passage_id": 12},
        {"question": "capital of mars?", "answers": ["none"], "gold_passage_id": 99},
    ]
    ranked = np.array([
        [1, 3, 4, 0, -1, -1],  # gold passage first at rank 3 (block 4); "paris" in the top 5
        [2, 0, 1, 3, 4, -1],  # rank 1
        [0, 1, 2, 3, 4, -1],  # passage 99 retrieved nowhere; no "none" in any block
    ])
    records = zero_shot.question_records(rows, ranked, texts.__getitem__, passages)
    assert [r["question"] for r in records] == [r["question"] for r in rows]
    assert [r["recall_at_5"] for r in records] == [True, True, False]
    assert [r["gold_rank"] for r in records] == [3, 1, 0]
    np.testing.assert_allclose([r["reciprocal_rank"] for r in records], [1 / 3, 1.0, 0.0])
    # Only the top 5 count for recall: the answer's block at rank 6 does not.
    late = zero_shot.question_records(rows[:1], np.array([[1, 3, 2, 1, 3, 0]]), texts.__getitem__,
                                      passages)
    assert not late[0]["recall_at_5"] and late[0]["gold_rank"] == 6


def test_block_passages():
    np.testing.assert_array_equal(zero_shot.block_passages([0, 0, 2, 1], [7, 8, 9]), [7, 7, 9, 8])


def _records(prefix, hits, ranks):
    return [{"question": f"{prefix}{i}", "recall_at_5": h, "reciprocal_rank": r}
            for i, (h, r) in enumerate(zip(hits, ranks, strict=True))]


def test_summarize_pools_the_sets_and_signs_the_change():
    start = {
        "mini_nq": _records("n", [True, False, False, False], [1.0, 0.0, 0.0, 0.5]),
        "mini_squad": _records("s", [False, False], [0.0, 0.25]),
    }
    after = {
        "mini_nq": _records("n", [True, True, False, False], [1.0, 0.5, 0.0, 0.5]),
        "mini_squad": _records("s", [True, False], [1.0, 0.25]),
    }
    out = zero_shot.summarize(start, after)
    assert set(out) == {"start", "realm", "change", "n_questions", "per_set"}
    # Pooled = the concatenation of the sets' records.
    pooled = zero_shot.summarize({"all": start["mini_nq"] + start["mini_squad"]},
                                 {"all": after["mini_nq"] + after["mini_squad"]})
    assert {k: out[k] for k in ("start", "realm", "change", "n_questions")} == {
        k: pooled[k] for k in ("start", "realm", "change", "n_questions")
    }
    assert out["n_questions"] == 6
    assert out["start"] == {"recall_at_5": pytest.approx(100 / 6), "mrr": pytest.approx(1.75 / 6)}
    assert out["realm"] == {"recall_at_5": pytest.approx(300 / 6), "mrr": pytest.approx(3.25 / 6)}
    assert out["change"]["recall_at_5"]["estimate"] == pytest.approx(200 / 6)  # points
    assert out["change"]["mrr"]["estimate"] == pytest.approx(1.5 / 6)  # a fraction
    for change in out["change"].values():
        lo, hi = change["ci95"]
        assert lo <= change["estimate"] <= hi
    nq = out["per_set"]["mini_nq"]
    assert nq["n_questions"] == 4 and nq["change"]["recall_at_5"]["estimate"] == 25.0
    assert out["per_set"]["mini_squad"]["realm"]["mrr"] == pytest.approx(0.625)
    # After - start: swapping the runs flips the change's sign.
    back = zero_shot.summarize(after, start)
    assert back["change"]["recall_at_5"]["estimate"] == pytest.approx(-200 / 6)
    assert back["change"]["mrr"]["estimate"] == pytest.approx(-1.5 / 6)


def test_summarize_refuses_different_questions_and_has_nothing_without_any():
    start = {"mini_nq": _records("n", [True, False], [1.0, 0.0])}
    other = {"mini_nq": _records("m", [True, False], [1.0, 0.0])}
    with pytest.raises(ValueError, match="not over the same questions"):
        zero_shot.summarize(start, other)
    reordered = {"mini_nq": start["mini_nq"][::-1]}
    with pytest.raises(ValueError, match="not over the same questions"):
        zero_shot.summarize(start, reordered)
    assert zero_shot.summarize({"mini_nq": []}, {"mini_nq": []}) is None


def test_zero_shot_waits_for_finished_runs_then_reads_the_cache(tmp_path):
    root = str(tmp_path)
    assert zero_shot.zero_shot(root, "ict", "realm", ("mini_nq",)) is None
    for run, hits in (("ict", [False, True]), ("realm", [True, True])):
        (tmp_path / run).mkdir()
        (tmp_path / run / runner.DONE_FILE).write_text("{}")
        path = pathlib.Path(zero_shot.records_path(root, run, "mini_nq"))
        path.parent.mkdir(parents=True, exist_ok=True)
        records = _records("q", hits, [float(h) for h in hits])
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = zero_shot.zero_shot(root, "ict", "realm", ("mini_nq",))
    assert out["n_questions"] == 2 and out["change"]["recall_at_5"]["estimate"] == 50.0
