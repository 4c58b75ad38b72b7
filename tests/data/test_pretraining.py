"""REALM and open-QA batch builders: candidates, joint inputs, MLM targets and gold spans."""

import numpy as np
import pytest

from realm_jax.data.packing import continuation_table
from realm_jax.data.pretraining import (
    NULL_UID,
    find_regex_spans,
    find_token_spans,
    openqa_batch,
    realm_batch,
    select_candidates,
    span_window,
)
from realm_jax.data.salient_spans import mask_sentences, sample_sentences
from realm_jax.evaluation import has_answer
from realm_jax.train import openqa, realm

K, QUERY_LEN, CAND_LEN, MAX_MASKS = 4, 32, 48, 10


@pytest.fixture(scope="module")
def queries(mini_store, mini_spans, tokenizer):
    rng = np.random.default_rng(0)
    pairs = sample_sentences(mini_spans, rng, 24)
    masked = mask_sentences(mini_store, mini_spans, pairs, tokenizer, rng, max_tokens=QUERY_LEN - 2)
    return [m for m in masked if m is not None][:8]


def _searcher(store, queries, extra=()):
    """Returns each query's own block first, then a duplicate, -1, and neighbours."""

    def search(query_ids):
        assert query_ids.shape == (len(queries), QUERY_LEN)
        rows = []
        for q in queries:
            own = q.block_index
            others = [(own + d) % len(store) for d in (1, 2, 3, 4, 5)]
            rows.append([own, others[0], others[0], -1, *others[1:], *extra][: K + 2])
        return np.array(rows)

    return search


def test_select_candidates_drops_own_duplicates_and_null(mini_store):
    uids = mini_store.uids
    own = mini_store.uid(5)
    assert select_candidates([5, 7, 7, -1, 9, 11, 13], own, uids, 4) == [7, 9, 11]
    assert select_candidates([5, -1], own, uids, 4) == []
    assert NULL_UID.hex() == __import__("hashlib").sha1(b" <sep> ").hexdigest()


def test_realm_batch_layout(mini_store, queries, tokenizer):
    b = len(queries)
    batch = realm_batch(
        mini_store,
        queries,
        _searcher(mini_store, queries),
        K,
        QUERY_LEN,
        CAND_LEN,
        max_masks=MAX_MASKS,
    )
    joint_len = QUERY_LEN + CAND_LEN
    shapes = {
        "query": (b, QUERY_LEN),
        "cand": (b, K, CAND_LEN),
        "joint": (b, K, joint_len),
        "mlm": (b, MAX_MASKS),
    }
    for key, value in batch.items():
        assert value.shape == (shapes[key.split("_")[0]] if key != "cand_valid" else (b, K))
        assert value.dtype == (bool if key in ("cand_valid", "mlm_mask") else np.int32), key
    assert batch["cand_valid"].all()
    # Candidate 0 is the null document; then retrieval order without the query's own block.
    assert batch["cand_ids"][:, 0, :4].tolist() == [[101, 102, 102, 0]] * b
    for row, q in enumerate(queries):
        expected = [(q.block_index + d) % len(mini_store) for d in (1, 2, 3)]
        for j, block in enumerate(expected, start=1):
            want = mini_store.block_inputs([block], CAND_LEN)["input_ids"][0]
            assert batch["cand_ids"][row, j].tolist() == want.tolist()
            # Joint: [CLS] masked-x [SEP] body [SEP], no title.
            n = min(len(q.token_ids), QUERY_LEN - 2)
            joint = batch["joint_ids"][row, j]
            body = mini_store.token_ids(block)[: CAND_LEN - 2]
            assert joint[: n + 2].tolist() == [101, *q.token_ids[:n].tolist(), 102]
            assert joint[n + 2 : n + 2 + len(body)].tolist() == body.tolist()
            assert joint[n + 2 + len(body)] == 102
            assert batch["joint_type_ids"][row, j].sum() == len(body) + 1
        m = len(q.positions)
        positions = batch["mlm_positions"][row, :m]
        assert batch["mlm_mask"][row].sum() == m
        assert np.all(batch["query_ids"][row, positions] == tokenizer.mask_id)
        assert np.all(batch["joint_ids"][row, :, positions] == tokenizer.mask_id)
        assert batch["mlm_targets"][row, :m].tolist() == q.targets.tolist()


def test_too_few_retrievals_are_padded_invalid(mini_store, queries):
    search = lambda ids: np.array([[q.block_index, -1] for q in queries])
    batch = realm_batch(mini_store, queries, search, K, QUERY_LEN, CAND_LEN)
    assert batch["cand_valid"].tolist() == [[True, False, False, False]] * len(queries)
    assert batch["cand_mask"][:, 1:].sum(-1).tolist() == [[3, 3, 3]] * len(queries)


def test_masks_past_the_query_are_an_error(mini_store, queries):
    with pytest.raises(ValueError, match="masks do not fit"):
        realm_batch(mini_store, queries, _searcher(mini_store, queries), K, query_len=3)


def test_span_window_centres_the_span_and_keeps_short_contexts():
    context = np.arange(100, dtype=np.int32)
    np.testing.assert_array_equal(span_window(context[:10], np.array([3]), 20), context[:10])
    window = span_window(context, np.array([50, 51]), 10)
    np.testing.assert_array_equal(window, np.arange(46, 56))  # the span in the middle
    np.testing.assert_array_equal(span_window(context, np.array([1]), 10), context[:10])
    np.testing.assert_array_equal(span_window(context, np.array([98, 99]), 10), context[90:])
    np.testing.assert_array_equal(span_window(context, np.array([7, 9]), 10), context[:10])


def test_find_token_spans_whole_words():
    is_cont = np.zeros(100, bool)
    is_cont[50:] = True  # ids >= 50 are "##" pieces
    tokens = [5, 6, 7, 5, 6, 60, 5, 6]
    assert find_token_spans(tokens, [5, 6], is_cont) == [(0, 1), (6, 7)]  # not (3, 4): "6 ##60"
    assert find_token_spans(tokens, [], is_cont) == []
    offsets = [(0, 3), (4, 8), (8, 10), (11, 15)]  # "The Bron cos won"
    assert find_regex_spans("The Broncos won", offsets, [r"bron\w+", "(bad"]) == [(1, 2)]


def _openqa(mini_store, tokenizer, answers, is_regex=False, reader_len=160):
    questions = ["who won super bowl 50?", "who sang?"]
    ids = np.array([[0, 3, 1, -1], [2, 0, -1, -1]])
    emb = np.arange(len(mini_store) * 8, dtype=np.float32).reshape(-1, 8)
    batch = openqa_batch(
        mini_store,
        tokenizer,
        questions,
        answers,
        ids,
        emb,
        reader_beam=2,
        question_len=16,
        reader_len=reader_len,
        max_gold_spans=4,
        is_regex=is_regex,
    )
    return ids, emb, batch


def test_openqa_batch_marks_every_gold_span(mini_store, tokenizer):
    answers = [["Denver Broncos", "broncos"], ["Beyoncé"]]
    ids, emb, batch = _openqa(mini_store, tokenizer, answers)
    assert batch["beam_valid"].tolist() == [[True, True, True, False], [True, True, False, False]]
    np.testing.assert_array_equal(batch["beam_emb"][0, :3], emb[[0, 3, 1]])
    assert not batch["beam_emb"][0, 3].any()
    for row in range(2):
        for j in range(4):
            if ids[row, j] >= 0:
                text = mini_store.text(int(ids[row, j]))
                assert batch["beam_correct"][row, j] == has_answer(text, answers[row])
    assert batch["reader_ids"].shape == (2, 2, 160) and batch["gold_starts"].shape == (2, 2, 4)
    answer_ids = [tokenizer.tokenize(a) for a in answers]
    for row in range(2):
        for j in range(2):
            reader, mask = batch["reader_ids"][row, j], batch["reader_block_mask"][row, j]
            starts, ends = batch["gold_starts"][row, j], batch["gold_ends"][row, j]
            body = reader[mask.astype(bool)]
            expected = sum(
                len(find_token_spans(body, a, continuation_table(tokenizer)))
                for a in answer_ids[row]
            )
            assert (starts >= 0).sum() == min(expected, 4)
            for s, e in zip(starts[starts >= 0], ends[starts >= 0], strict=True):
                assert mask[s] and mask[e]
                assert reader[s : e + 1].tolist() in answer_ids[row]
    assert (batch["gold_starts"][0, 0] >= 0).sum() >= 2  # "Denver Broncos" and "Broncos"


def test_openqa_regex_answers_match_text(mini_store, tokenizer):
    _, _, batch = _openqa(mini_store, tokenizer, [[r"Denver\s+Bronc\w+"], [r"Beyonc."]], True)
    s, e = batch["gold_starts"][0, 0, 0], batch["gold_ends"][0, 0, 0]
    assert tokenizer.decode(batch["reader_ids"][0, 0, s : e + 1]) == "denver broncos"
    assert batch["beam_correct"][0, 0]


def _tiny_realm_config(tiny_bert_config):
    from realm_jax.models.realm import RealmConfig

    bert = tiny_bert_config.replace(num_hidden_layers=1)  # compiling is most of these tests
    return RealmConfig(bert, proj_size=8, span_hidden_size=8, max_span_width=4)


def _eval_on_one_device(loss_fn, spec, params, batch):
    """The 8-device equivalence is tests/train's business; here the batches must fit the step."""
    import jax

    from realm_jax.train.steps import make_eval_step
    from realm_jax.utils.devices import replicate, shard

    step = make_eval_step(loss_fn, spec)
    metrics = step(replicate(params, jax.local_devices()[:1]), shard(batch, 1))
    return {k: np.asarray(v)[0] for k, v in metrics.items()}


def test_realm_batch_runs_through_the_step(mini_store, queries, tiny_bert_config):
    import jax

    from realm_jax.models.realm import RealmPretrainModel, init_params

    batch = realm_batch(mini_store, queries, _searcher(mini_store, queries), K, QUERY_LEN, CAND_LEN)
    model = RealmPretrainModel(_tiny_realm_config(tiny_bert_config))
    keys = (
        "query_ids",
        "query_mask",
        "cand_ids",
        "cand_mask",
        "cand_type_ids",
        "joint_ids",
        "joint_mask",
        "joint_type_ids",
        "mlm_positions",
    )
    params = init_params(model, jax.random.PRNGKey(0), *(batch[k][:1] for k in keys))
    metrics = _eval_on_one_device(realm.loss_fn(model), realm.METRICS, params, batch)
    assert np.isfinite(metrics["loss"])
    assert int(metrics["num_masks"]) == sum(len(q.positions) for q in queries)


def test_openqa_batch_runs_through_the_step(mini_store, tokenizer, tiny_bert_config):
    import jax

    from realm_jax.models.realm import OpenQAModel, init_params

    answers = [["Denver Broncos"], ["Beyoncé"]] * 4
    questions = ["who won super bowl 50?", "who sang?"] * 4
    ids = np.tile(np.array([[0, 3, 1, -1], [2, 0, -1, -1]]), (4, 1))
    emb = np.random.default_rng(0).normal(size=(len(mini_store), 8)).astype(np.float32)
    batch = openqa_batch(
        mini_store,
        tokenizer,
        questions,
        answers,
        ids,
        emb,
        reader_beam=2,
        question_len=16,
        reader_len=64,
    )
    model = OpenQAModel(_tiny_realm_config(tiny_bert_config))
    keys = (
        "question_ids",
        "question_mask",
        "beam_emb",
        "reader_ids",
        "reader_mask",
        "reader_type_ids",
        "reader_block_mask",
    )
    params = init_params(model, jax.random.PRNGKey(0), *(batch[k][:1] for k in keys))
    metrics = _eval_on_one_device(openqa.loss_fn(model), openqa.METRICS, params, batch)
    assert np.isfinite(metrics["loss"])
    assert metrics["reader_oracle"] > 0  # gold spans reach the loss
