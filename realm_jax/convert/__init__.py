"""Weights in: Hugging Face BERT checkpoints (safetensors / PyTorch zip) to Flax params."""

from realm_jax.convert.hf_bert import (
    ConversionError,
    bert_key_map,
    load_hf_bert,
    load_state_dict,
    minilm_dir,
    params_from_state_dict,
)

__all__ = [
    "ConversionError",
    "bert_key_map",
    "load_hf_bert",
    "load_state_dict",
    "minilm_dir",
    "params_from_state_dict",
]
