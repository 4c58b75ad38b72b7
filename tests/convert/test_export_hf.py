"""A run's towers exported as Hugging Face BERT directories load in transformers' PyTorch
BertModel and give our pooled outputs (1e-5: float32 through two implementations)."""

import jax
import numpy as np
import pytest
import torch
from transformers import BertModel as TorchBertModel

from realm_jax.convert.export_hf import export_hf
from realm_jax.errors import ConfigError
from realm_jax.models.bert import BertModel
from realm_jax.run import defaults
from realm_jax.run.checkpoints import save_checkpoint
from realm_jax.run.files import RunDir, save_config
from realm_jax.run.model_setup import bert_config, create_state, load_run, random_params


@pytest.fixture(scope="module")
def ict_run(tmp_path_factory):
    """A tiny ICT run directory with random parameters at step 3 (no training needed)."""
    workdir = str(tmp_path_factory.mktemp("export") / "ict")
    config = defaults.shrink_to_tiny(defaults.ict_config())
    config.model.share_embedders = False  # two towers, so query and doc differ
    params = random_params(config, jax.random.PRNGKey(0))
    save_checkpoint(RunDir(workdir).checkpoints, 3, create_state(config, params))
    save_config(config, workdir)
    return workdir, config, params


@pytest.mark.parametrize("part, tower", [("query", "query_embedder"), ("doc", "embedder")])
def test_exported_tower_loads_in_transformers_with_equal_pooled_output(ict_run, tmp_path, part,
                                                                       tower):
    workdir, config, params = ict_run
    assert export_hf(workdir, str(tmp_path / part), part) == 3
    cfg = bert_config(config.model)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, cfg.vocab_size, size=(2, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 8:] = 0
    ours = BertModel(cfg).apply({"params": params["params"][tower]["bert"]}, ids, mask,
                                np.zeros_like(ids))[1]
    theirs = TorchBertModel.from_pretrained(str(tmp_path / part)).eval()
    with torch.no_grad():
        pooled = theirs(input_ids=torch.tensor(ids, dtype=torch.long),
                        attention_mask=torch.tensor(mask, dtype=torch.long)).pooler_output
    np.testing.assert_allclose(pooled.numpy(), np.asarray(ours), rtol=1e-5, atol=1e-5)


def test_load_run_reads_parameters_only_and_bad_parts_are_one_line(ict_run, tmp_path):
    workdir, config, params = ict_run
    loaded_config, model, loaded, step = load_run(workdir)
    assert step == 3 and loaded_config.stage == "ict" and type(model).__name__ == "Retriever"
    same = jax.tree.map(np.array_equal, loaded, jax.device_get(params))
    assert all(jax.tree.leaves(same))
    with pytest.raises(ConfigError, match="part='reader': this run has no reader"):
        export_hf(workdir, str(tmp_path / "r"), "reader")
