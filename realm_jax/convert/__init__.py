"""Weights in: Hugging Face BERT and REALM checkpoints (safetensors / PyTorch zip) to Flax."""

from realm_jax.assets import minilm_dir
from realm_jax.convert.hf_bert import (
    bert_key_map,
    load_hf_bert,
    load_state_dict,
    params_from_state_dict,
)
from realm_jax.convert.hf_realm import load_hf_realm, params_from_hf_realm, realm_config_from_hf
from realm_jax.errors import ConversionError

__all__ = [
    "ConversionError",
    "bert_key_map",
    "load_hf_bert",
    "load_hf_realm",
    "load_state_dict",
    "minilm_dir",
    "params_from_hf_realm",
    "params_from_state_dict",
    "realm_config_from_hf",
]
