"""Salient spans on real mini-corpus sentences, REALM's masking rule and the ablation maskers."""

import os

import numpy as np
import pytest

from realm_jax.data.blocks import BlockStore
from realm_jax.data.packing import continuation_table
from realm_jax.data.salient_spans import (
    LABELS,
    MASKERS,
    SalientSpans,
    build_salient_spans,
    choose_salient_span,
    clean_span,
    find_dates,
    mask_sentences,
    sample_sentences,
    spans_by_sentence,
)

# Hand-checked: every span spaCy + the date regex keep in these sentences is an entity or a date
# (the model misses some, e.g. "San Francisco Bay Area" and the second "Levi's Stadium").
EXPECTED = {
    "Super Bowl 50 was an American football game to determine the champion of the National "
    "Football League (NFL) for the 2015 season.": {
        "Super Bowl 50",
        "American",
        "National Football League",
        "NFL",
        "2015",
    },
    "The game was played on February 7, 2016, at Levi's Stadium in the San Francisco Bay Area at "
    "Santa Clara, California.": {"February 7, 2016", "Levi's Stadium", "Santa Clara", "California"},
    "It was the third-most watched U.S. broadcast ever.": {"U.S."},
    "They defeated the Arizona Cardinals 49–15 in the NFC Championship Game and advanced to their "
    "second Super Bowl appearance since the franchise was founded in 1995.": {
        "Arizona Cardinals",
        "NFC Championship Game",
        "Super Bowl",
        "1995",
    },
    "The league announced on October 16, 2012, that the two finalists were Sun Life Stadium and "
    "Levi's Stadium.": {"October 16, 2012", "Sun Life Stadium"},
}


@pytest.fixture(scope="module")
def sentences50(mini_store, mini_spans):
    """The first 50 (block, sentence) pairs of the store that hold a salient span."""
    pairs = []
    for block in range(len(mini_store)):
        for sentence in sorted(set(mini_spans.spans(block)[:, 3].tolist())):
            pairs.append((block, sentence))
    return np.array(pairs[:50])


def _sentence(store, block, sentence):
    s, e = store.sentence_char_spans(block)[sentence]
    return store.text(block)[s:e], s


def test_dates_regex():
    text = (
        "On February 7, 2016, 7 June 1944 and May 21 in the 1990s; March 2010, 1995 or "
        "Sept. 3rd; not 5,000 people, $2015, 2.5 or 12345 and we may go in March."
    )
    found = [text[s:e] for s, e in find_dates(text)]
    assert found == [
        "February 7, 2016",
        "7 June 1944",
        "May 21",
        "1990s",
        "March 2010",
        "1995",
        "Sept. 3rd",
    ]


def test_clean_span():
    text = "in the National Football Conference (NFC and the San Francisco Bay Area's game"
    start = text.index("the National")
    assert (
        text[slice(*clean_span(text, start, text.index("NFC")))] == "National Football Conference"
    )
    start = text.index("the San")
    assert text[slice(*clean_span(text, start, text.index(" game")))] == "San Francisco Bay Area"
    assert clean_span("a (b) c", 1, 5) == (2, 5)  # balanced brackets stay
    assert clean_span("a (b) c", 1, 4) == (3, 4)  # a lone one goes
    assert clean_span("x , y", 1, 3) is None


def test_hand_checked_sentences(mini_store, mini_spans):
    seen = {}
    for block in range(len(mini_store)):
        text = mini_store.text(block)
        for start, end, _, sentence in mini_spans.spans(block):
            sent, _ = _sentence(mini_store, block, sentence)
            seen.setdefault(sent, set()).add(text[start:end])
    for sentence, expected in EXPECTED.items():
        assert seen[sentence] == expected, sentence


def test_spans_stay_inside_one_sentence(mini_store, mini_spans):
    for block in range(len(mini_store)):
        sentences = mini_store.sentence_char_spans(block)
        for start, end, label, sentence in mini_spans.spans(block):
            s, e = sentences[sentence]
            assert s <= start < end <= e and 0 <= label < len(LABELS)
    # A span across a sentence boundary is dropped, as REALM's generator drops it.
    assert spans_by_sentence([(0, 5, 0), (4, 12, 1)], np.array([[0, 6], [7, 20]])) == [(0, 5, 0, 0)]


def test_salient_masks_are_entities_or_dates(mini_store, mini_spans, sentences50, tokenizer):
    is_cont = continuation_table(tokenizer)
    hand_checked = 0
    for seed in range(3):
        rng = np.random.default_rng(seed)
        masked = mask_sentences(
            mini_store, mini_spans, sentences50, tokenizer, rng, is_continuation=is_cont
        )
        assert sum(m is not None for m in masked) >= 48  # only over-long spans are skipped
        for (block, sentence), m in zip(sentences50, masked, strict=True):
            if m is None:
                continue
            text, offset = _sentence(mini_store, block, sentence)
            ids, offsets = tokenizer.tokenize_with_offsets([text])
            assert np.all(m.token_ids[m.positions] == tokenizer.mask_id)  # always [MASK]
            assert np.array_equal(
                np.delete(m.token_ids, m.positions), np.delete(np.array(ids[0]), m.positions)
            )
            assert np.array_equal(m.targets, np.array(ids[0])[m.positions])
            assert 1 <= len(m.positions) <= 10 and np.all(np.diff(m.positions) == 1)
            # The masked wordpieces are exactly those strictly inside one annotated span.
            rows = mini_spans.spans(int(block))
            rows = rows[rows[:, 3] == sentence]
            span_texts = {text[s - offset : e - offset] for s, e, _, _ in rows}
            masked_text = text[offsets[0][m.positions[0]][0] : offsets[0][m.positions[-1]][1]]
            assert masked_text in span_texts
            if text in EXPECTED:
                assert masked_text in EXPECTED[text]
                hand_checked += 1
    assert hand_checked >= 6


def test_spans_that_do_not_fit_are_skipped_not_truncated():
    offsets = np.array([[i * 4, i * 4 + 3] for i in range(20)])  # 20 three-letter words
    rng = np.random.default_rng(0)
    long_span, short_span, late_span = [0, 47], [8, 19], [60, 71]  # 12, 3 and 3 wordpieces
    assert choose_salient_span(offsets, np.array([long_span]), rng, max_masks=10) is None
    for _ in range(5):
        got = choose_salient_span(
            offsets, np.array([long_span, short_span, late_span]), rng, max_masks=10, max_tokens=14
        )
        assert got.tolist() == [2, 3, 4]  # the long one is too long, the late one past 14


def test_ablations_mask_as_many_wordpieces(mini_store, mini_spans, sentences50, tokenizer):
    is_cont = continuation_table(tokenizer)
    counts = {m: [] for m in MASKERS}
    positions = {m: [] for m in MASKERS}
    for seed in range(10):
        for masker in MASKERS:
            rng = np.random.default_rng(seed)
            out = mask_sentences(
                mini_store, mini_spans, sentences50, tokenizer, rng, masker, is_continuation=is_cont
            )
            counts[masker] += [0 if m is None else len(m.positions) for m in out]
            positions[masker] += [None if m is None else m.positions.tolist() for m in out]
    means = {m: np.mean(c) for m, c in counts.items()}
    print("mean masked wordpieces per sentence:", means)
    assert means["random_token"] == means["salient"] == means["random_span"] > 1
    for masker in ("random_token", "random_span"):
        differs = [a != b for a, b in zip(positions[masker], positions["salient"], strict=True)]
        assert np.mean(differs) > 0.5  # not the salient span
    spans = [p for p in positions["random_span"] if p]
    assert all(np.all(np.diff(p) == 1) for p in spans)  # contiguous
    assert any(np.any(np.diff(p) > 1) for p in positions["random_token"] if p)  # scattered


def test_sample_sentences_have_spans(mini_spans):
    pairs = sample_sentences(mini_spans, np.random.default_rng(0), 100)
    assert pairs.shape == (100, 2)
    for block, sentence in pairs:
        assert sentence in mini_spans.spans(int(block))[:, 3]


def test_cache_is_atomic_and_tied_to_its_blocks(
    mini_store, mini_spans, mini_corpus, tokenizer, nlp, tmp_path
):
    assert mini_spans.meta["num_blocks"] == len(mini_store) == len(mini_spans)
    assert isinstance(mini_spans.arrays["span_starts"], np.memmap)
    with pytest.raises(FileExistsError):
        build_salient_spans(mini_store.directory, nlp, progress=False)
    parent = os.listdir(mini_store.directory)
    assert not [p for p in parent if p.endswith(".tmp")]
    # Spans of other blocks are refused.
    from realm_jax.data.blocks import build_blocks_from_files

    other = tmp_path / "other"
    build_blocks_from_files(
        mini_corpus, str(other), max_len=64, tokenizer=tokenizer, progress=False
    )
    os.symlink(os.path.join(mini_store.directory, "salient_spans"), other / "salient_spans")
    with pytest.raises(ValueError, match="annotates other blocks"):
        SalientSpans(BlockStore(other))


def test_failed_annotation_leaves_nothing(mini_corpus, tokenizer, tmp_path):
    from realm_jax.data.blocks import build_blocks_from_files

    class FailingNlp:
        meta = {"name": "failing", "version": "0"}

        def pipe(self, texts, batch_size):
            for i, _ in enumerate(texts):
                if i == 5:
                    raise RuntimeError("tagger crashed")
                yield type("Doc", (), {"ents": [], "text": ""})()

    build_blocks_from_files(mini_corpus, str(tmp_path / "b"), tokenizer=tokenizer, progress=False)
    before = sorted(os.listdir(tmp_path / "b"))
    with pytest.raises(RuntimeError, match="tagger crashed"):
        build_salient_spans(str(tmp_path / "b"), FailingNlp(), progress=False)
    assert sorted(os.listdir(tmp_path / "b")) == before  # no salient_spans/, no temporary dir
