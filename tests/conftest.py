"""Shared fixtures. Tests run on CPU with 8 simulated devices so every pmapped path is exercised.

Also: tiny REALM models and random global batches (8 examples) for the step tests, and a toy
stage (least squares) for the loop's resume tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("USE_TF", "0")

import json  # noqa: E402

import hypothesis  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from ml_collections import ConfigDict  # noqa: E402

from realm_jax import losses  # noqa: E402
from realm_jax.data.tokenization import Tokenizer  # noqa: E402
from realm_jax.models.bert import tiny_config  # noqa: E402
from realm_jax.models.realm import OpenQAModel, RealmConfig, RealmPretrainModel, init_params  # noqa: E402
from realm_jax.models.retriever import Retriever  # noqa: E402
from realm_jax.run.checkpoints import collect_failed_restore  # noqa: E402
from realm_jax.run.state import TrainState, bert_adamw  # noqa: E402
from realm_jax.train.loop import TrainLoop  # noqa: E402
from realm_jax.train.steps import make_train_step  # noqa: E402
from realm_jax.utils.devices import AXIS, shard  # noqa: E402

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")

# Property tests take their example count from a profile: 200 a property in CI (CI=true), 100
# otherwise; HYPOTHESIS_PROFILE picks one by name. No example database: runs do not depend on
# earlier runs. No deadline: the first examples include JAX/tokenizer warm-up.
hypothesis.settings.register_profile("ci", max_examples=200, deadline=None, database=None)
hypothesis.settings.register_profile("dev", max_examples=100, deadline=None, database=None)
hypothesis.settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer()


@pytest.fixture(scope="session")
def tiny_bert_config():
    return tiny_config()


@pytest.fixture(scope="session")
def passages32() -> list[dict]:
    with open(os.path.join(TESTDATA, "passages32.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def num_devices() -> int:
    n = jax.local_device_count()
    assert n == 8, (
        f"tests expect 8 simulated CPU devices, found {n}; set XLA_FLAGS before importing jax"
    )
    return n

GLOBAL_BATCH, VOCAB = 8, 1000
TRACES = []  # one entry per trace of a model's __call__ / embed_docs: compilations of a step


def _config():
    bert = tiny_config().replace(
        vocab_size=VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )  # no dropout: the two runs must see the same function
    return RealmConfig(bert, proj_size=16, span_hidden_size=16, max_span_width=3)


class CountingRetriever(Retriever):
    def embed_docs(self, *args, **kwargs):
        TRACES.append("ict")
        return super().embed_docs(*args, **kwargs)


class CountingRealm(RealmPretrainModel):
    def __call__(self, *args, **kwargs):
        TRACES.append("realm")
        return super().__call__(*args, **kwargs)


class CountingOpenQA(OpenQAModel):
    def __call__(self, *args, **kwargs):
        TRACES.append("openqa")
        return super().__call__(*args, **kwargs)


def _tokens(rng, *shape, pad_from=None):
    ids = rng.integers(5, VOCAB, shape).astype(np.int32)
    lengths = rng.integers(shape[-1] // 2, shape[-1] + 1, shape[:-1])
    mask = (np.arange(shape[-1]) < lengths[..., None]).astype(np.int32)
    return ids * mask, mask


def _ict_batch(rng):
    q_ids, q_mask = _tokens(rng, GLOBAL_BATCH, 8)
    b_ids, b_mask = _tokens(rng, GLOBAL_BATCH, 12)
    types = (np.arange(12) >= 4).astype(np.int32) * b_mask
    return dict(query_ids=q_ids, query_mask=q_mask, block_ids=b_ids, block_mask=b_mask,
                block_type_ids=types)


def _realm_batch(rng, k=3, num_masks=3):
    b = GLOBAL_BATCH
    q_ids, q_mask = _tokens(rng, b, 8)
    c_ids, c_mask = _tokens(rng, b, k, 10)
    j_ids, j_mask = _tokens(rng, b, k, 16)
    cand_valid = np.ones((b, k), bool)
    cand_valid[1, 1:] = False  # only the null document
    cand_valid[4, 2] = False
    n_masks = np.array([1, 3, 2, 0, 3, 1, 2, 3])  # uneven across devices on purpose
    return dict(
        query_ids=q_ids, query_mask=q_mask, cand_ids=c_ids, cand_mask=c_mask,
        cand_type_ids=np.zeros_like(c_ids), cand_valid=cand_valid,
        joint_ids=j_ids, joint_mask=j_mask, joint_type_ids=(np.arange(16) >= 8) * j_mask,
        mlm_positions=rng.integers(1, 7, (b, num_masks)).astype(np.int32),
        mlm_targets=rng.integers(0, VOCAB, (b, num_masks)).astype(np.int32),
        mlm_mask=np.arange(num_masks) < n_masks[:, None],
    )


def _openqa_batch(rng, beam=4, reader_beam=2, seq=16, dim=16):
    b = GLOBAL_BATCH
    q_ids, q_mask = _tokens(rng, b, 8)
    r_ids = rng.integers(5, VOCAB, (b, reader_beam, seq)).astype(np.int32)
    r_mask = np.ones_like(r_ids)
    types = np.broadcast_to((np.arange(seq) >= 6).astype(np.int32), r_ids.shape)
    block_mask = types * (np.arange(seq) < seq - 1)
    gold_starts = rng.integers(6, 12, (b, reader_beam, 2)).astype(np.int32)
    gold_ends = gold_starts + rng.integers(0, 3, gold_starts.shape).astype(np.int32)
    gold_starts[:, :, 1] = gold_ends[:, :, 1] = -1
    gold_starts[[2, 5]] = gold_ends[[2, 5]] = -1  # questions with no correct span anywhere
    beam_correct = rng.random((b, beam)) < 0.4
    beam_correct[5] = False
    beam_valid = np.ones((b, beam), bool)
    beam_valid[3, 3] = False
    return dict(
        question_ids=q_ids, question_mask=q_mask,
        beam_emb=rng.normal(size=(b, beam, dim)).astype(np.float32),
        beam_valid=beam_valid, beam_correct=beam_correct,
        reader_ids=r_ids, reader_mask=r_mask, reader_type_ids=types, reader_block_mask=block_mask,
        gold_starts=gold_starts, gold_ends=gold_ends,
    )


def _init(kind, cfg, batch):
    rng = jax.random.PRNGKey(0)
    one = {k: v[:1] for k, v in batch.items()}
    if kind == "ict":
        model = CountingRetriever(cfg.bert, cfg.proj_size, share_embedders=False)
        args = [one[k] for k in ("query_ids", "query_mask", "block_ids", "block_mask")]
        return model, init_params(model, rng, *args[:2], args[2][:, None], args[3][:, None])
    if kind == "realm":
        model = CountingRealm(cfg)
        keys = ("query_ids", "query_mask", "cand_ids", "cand_mask", "cand_type_ids", "joint_ids",
                "joint_mask", "joint_type_ids", "mlm_positions")
        return model, init_params(model, rng, *(one[k] for k in keys))
    model = CountingOpenQA(cfg)
    keys = ("question_ids", "question_mask", "beam_emb", "reader_ids", "reader_mask",
            "reader_type_ids", "reader_block_mask")
    return model, init_params(model, rng, *(one[k] for k in keys))


BATCHES = {"ict": _ict_batch, "realm": _realm_batch, "openqa": _openqa_batch}


@pytest.fixture
def traces():
    """Names of the models traced since the test began: one per compilation of a step."""
    TRACES.clear()
    return TRACES


@pytest.fixture(scope="session")
def step_config():
    return _config()


@pytest.fixture(scope="session")
def make_batch():
    """make_batch(kind, rng) -> a global batch of 8 for ``ict``, ``realm`` or ``openqa``."""
    return lambda kind, rng: BATCHES[kind](rng)


@pytest.fixture(scope="session")
def init_model():
    """init_model(kind, cfg, batch) -> (trace-counting model, params)."""
    return _init


def _loop_config(steps=6, log_every=1):
    return ConfigDict(
        dict(seed=0, num_train_steps=steps, log_every_steps=log_every, checkpoint_every_steps=2,
             keep_checkpoints=2, eval_every_steps=0, eval_at_start=False, progress=False)
    )


def _toy_stage(nan_at=None, interrupt_at=None, prefetch=False):
    """A least-squares stage's ``train_and_evaluate(config, workdir)`` on random batches, each a
    pure function of its step (runs in seconds); the batch of ``nan_at`` holds a NaN, the one of
    ``interrupt_at`` raises KeyboardInterrupt; ``prefetch``: batches through ``loop.prefetch``."""

    def loss_fn(params, batch, rngs, deterministic):
        err = batch["x"] @ params["params"]["w"] - batch["y"]
        sums = {"loss_sum": jnp.sum(err**2), "num_examples": jnp.float32(err.shape[0])}
        return losses.device_share(sums["loss_sum"], sums["num_examples"], AXIS), sums

    def batch_at(step):
        if step == interrupt_at:
            raise KeyboardInterrupt
        x = np.random.default_rng(step).normal(size=(8, 4)).astype(np.float32)
        y = x @ np.arange(4, dtype=np.float32)
        if step == nan_at:
            y[0] = np.nan
        return {"x": x, "y": y}

    def train_and_evaluate(config, workdir):
        state = TrainState.create({"params": {"w": jnp.zeros(4)}}, bert_adamw(0.1, 10, 1))
        p_train_step = make_train_step(loss_fn, {"loss": ("loss_sum", "num_examples")})
        with TrainLoop(config, workdir, "toy", state) as loop:
            batches = (loop.prefetch(batch_at) if prefetch
                       else ((step, shard(batch_at(step))) for step in loop.steps()))
            for _, batch in batches:
                state, metrics = p_train_step(loop.state, batch, loop.rng)
                loop.record(state, metrics)
                loop.evaluate_if_due(None)
            return loop.final_metrics(None)

    return train_and_evaluate


@pytest.fixture(scope="session")
def loop_config():
    """loop_config(steps=6) -> a TrainLoop config: log every step, checkpoint every 2, keep 2."""
    return _loop_config


@pytest.fixture(scope="session")
def toy_stage():
    """toy_stage(nan_at=None, interrupt_at=None) -> a least-squares stage's train_and_evaluate."""
    return _toy_stage


@pytest.fixture(autouse=True)
def _collect_garbage_of_this_test():
    """Collects each test's garbage in its own teardown: orbax tasks left by a failed restore
    would otherwise print tracebacks into a later test's captured stderr (tests that assert one
    error line)."""
    yield
    collect_failed_restore()
