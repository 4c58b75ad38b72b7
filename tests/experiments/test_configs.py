"""Every experiment config loads; the paper-scale ones build BERT-base REALM (shapes only).

Parameter counts (printed with -s): two BERT-base towers make REALM's pre-training model, 219.7M
(embedder 109.6M incl. the 768->128 projection, encoder 110.1M incl. the MLM head). The paper's
Table 1 lists 330M: that is the open-QA system, query tower + reader (219.5M, trained) plus the
document tower the frozen index was embedded with (109.6M): 329.0M.
"""

import glob
import importlib.util
import os

import pytest

from realm_jax.data import input_pipeline
from realm_jax.run.model_setup import param_counts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "experiments", "configs")
FULL = ["ict_wiki", "realm_wiki", "realm_ccnews", "openqa_nq", "openqa_wq", "openqa_ct"]
MINI = ["ict_mini", "mlm_mini", "realm_mini", "openqa_mini"]
RELEASED = ["openqa_nq_released", "openqa_wq_released", "realm_ccnews_released"]
DEMO = ["openqa_facts"]  # the product demo (tests/serve)
SCRIPT = {"ict": "ict.py", "mlm": "mlm.py", "realm": "pretrain.py", "openqa": "finetune.py"}
BERT_BASE = 109_482_240  # 12 layers x 768, 30522 words, with the pooler
EMBEDDER = BERT_BASE + 768 * 128 + 128 + 2 * 128  # + projection to 128 and its LayerNorm
ENCODER = BERT_BASE + 768 * 768 + 768 + 2 * 768 + 30522  # + MLM transform, LayerNorm, bias
READER = BERT_BASE + 768 * 512 + 512 + 2 * 256 + 256 + 1  # + ORQA's span MLP


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(CONFIGS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_file_is_listed():
    found = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(CONFIGS, "*.py"))}
    assert found == set(FULL) | set(MINI) | set(RELEASED) | set(DEMO)


@pytest.mark.parametrize("name", FULL + MINI + DEMO)
def test_docstring_has_the_launch_command(name):
    module = load(name)
    config = module.get_config()
    assert f"experiments/{SCRIPT[config.stage]} --config=experiments/configs/{name}.py" in (
        module.__doc__
    )


@pytest.mark.parametrize("name", RELEASED)
def test_released_configs_say_how_to_convert_and_what_to_expect(name):
    module = load(name)
    command = "experiments/convert.py \\\n      --config=/path/to/realm-jax/experiments/configs"
    assert f"{command}/{name}.py" in module.__doc__
    config = module.get_config()
    assert config.model.hidden_act == "gelu_new"  # TF BERT's tanh GELU, as released
    assert config.released.format == "tf" and config.released.block_emb.endswith("encoded.ckpt")
    tiny = module.get_config("tiny")
    assert tiny.model.bert == "tiny" and tiny.index.searcher == "exact"
    with pytest.raises(ValueError, match="expected full or tiny"):
        module.get_config("huge")


@pytest.mark.parametrize("name", FULL + RELEASED)
def test_full_scale_configs_build_bert_base_realm(name):
    config = load(name).get_config()
    assert config.model.bert == "base" and config.model.proj_size == 128
    counts = param_counts(config)  # jax.eval_shape: no parameter is materialised
    print(f"{name}: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items()))
    if config.stage == "ict":
        assert counts == {"embedder": EMBEDDER, "total": EMBEDDER}
    elif config.stage == "realm":
        assert counts["retriever/embedder"] == EMBEDDER and counts["encoder"] == ENCODER
        assert counts["total"] == EMBEDDER + ENCODER == 219_685_818
    else:
        assert counts["retriever/embedder"] == EMBEDDER and counts["reader"] == READER
        with_frozen_doc_tower = counts["total"] + EMBEDDER  # the index's embedder
        assert with_frozen_doc_tower == 329_038_593
        print(f"{name}: with the frozen document tower {with_frozen_doc_tower / 1e6:.1f}M")


def test_full_scale_hyperparameters_are_the_papers():
    ict, realm = load("ict_wiki").get_config(), load("realm_wiki").get_config()
    assert (ict.batch_size, ict.num_train_steps, ict.optim.learning_rate) == (4096, 100_000, 1e-4)
    assert (ict.ict.query_len, ict.ict.block_len, ict.ict.remove_prob) == (64, 288, 0.9)
    assert (realm.batch_size, realm.num_train_steps, realm.optim.learning_rate) == (
        512, 200_000, 3e-5,
    )
    assert (realm.realm.num_candidates, realm.realm.query_len, realm.realm.cand_len) == (8, 96, 288)
    assert realm.index.mode == "async" and realm.checkpoint_every_steps == 500
    for name in ("openqa_nq", "openqa_wq", "openqa_ct"):
        o = load(name).get_config()
        assert (o.optim.learning_rate, o.openqa.retriever_beam, o.openqa.reader_beam) == (
            1e-5, 5000, 5,
        )
        assert o.openqa.reader_len == 320 and o.model.max_span_width == 10
    assert load("openqa_ct").get_config().openqa.regex
    assert load("openqa_wq").get_config().num_train_steps == 3417 * 20


@pytest.mark.parametrize("name", MINI)
def test_mini_configs_start_from_minilm(name):
    config = load(name).get_config()
    assert config.model.bert == config.init.bert == "minilm"
    # All 6 layers: cut to 3-5, MiniLM's [CLS] (what the Embedder reads) is the same for any
    # input (mean cosine 0.9999 vs 0.63), and ICT never starts (see ict_mini.py).
    assert config.model.num_hidden_layers == 6
    counts = param_counts(config)
    print(f"{name}: " + ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in counts.items()))
    if config.stage == "realm":
        assert config.realm.num_candidates == 5  # K = 4 + the null document


def test_tiny_switch_shrinks_and_shares_one_block_cache(tmp_path):
    configs = [load(n).get_config("tiny") for n in ("ict_mini", "mlm_mini", "realm_mini")]
    configs += [load("openqa_mini").get_config(a) for a in ("tiny", "tiny,bm25")]
    dirs = {input_pipeline.blocks_dir(c, str(tmp_path / c.stage)) for c in configs}
    assert len(dirs) == 1  # same corpus fields: the stages pack the corpus once
    # (REALM: 6 steps, so that its asynchronous swap schedule swaps once; the others 4)
    assert all(c.model.bert == "tiny" and c.num_train_steps <= 6 for c in configs)
    assert configs[-1].openqa.retriever == "bm25"
    assert load("openqa_mini").get_config("squad").openqa.dataset == "mini_squad"
    with pytest.raises(ValueError, match="expected squad, bm25 and/or tiny"):
        load("openqa_mini").get_config("huge")
