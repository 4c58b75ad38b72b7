r"""The released REALM-News model fine-tuned on NQ (ORQA's reader), evaluated with our code.

  cd /data/realm   # where the released files were downloaded (paths below are the defaults)
  python /path/to/realm-jax/experiments/convert.py \
      --config=/path/to/realm-jax/experiments/configs/openqa_nq_released.py \
      --workdir=runs/orqa_nq_released
  python /path/to/realm-jax/experiments/evaluate.py --checkpoint=runs/orqa_nq_released \
      --dataset=nq --split=test

Files (public, REALM's README): ``gs://realm-data/orqa_nq_model_from_realm``,
``gs://realm-data/cc_news_pretrained/embedder/encoded/`` (block_emb, 13,353,718 x 128) and
``gs://orqa-data/enwiki-20181220/{blocks,titles}.tfr``. Paper (Table 1, REALM-News): 40.4 EM on
NQ-open test (3,610 questions, shipped as ``nq``). Hardware: one host with >= 32 GB of RAM
(6.8 GB of float32 embeddings, their ScaNN index, the 13.35M-block store); a GPU/TPU for the
reader. ``:tiny`` (``--config=...openqa_nq_released.py:tiny``) is the test-scale shape.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config(scale: str = "full") -> ConfigDict:
    c = defaults.released_config("openqa", scale)
    c.released.checkpoint = "orqa_nq_model_from_realm/export/best_default/checkpoint"
    c.openqa.dataset = "nq"
    return c
