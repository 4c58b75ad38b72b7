r"""The released REALM-News model fine-tuned on WebQuestions (ORQA reader), run by our code.

  cd /data/realm   # where the released files were downloaded (paths below are the defaults)
  python /path/to/realm-jax/experiments/convert.py \
      --config=/path/to/realm-jax/experiments/configs/openqa_wq_released.py \
      --workdir=runs/orqa_wq_released
  python /path/to/realm-jax/experiments/evaluate.py --checkpoint=runs/orqa_wq_released \
      --dataset=wq --split=test

Files (public, REALM's README): ``gs://realm-data/orqa_wq_model_from_realm``,
``gs://realm-data/cc_news_pretrained/embedder/encoded/`` (block_emb, 13,353,718 x 128) and
``gs://orqa-data/enwiki-20181220/{blocks,titles}.tfr``. Paper (Table 1, REALM-News): 40.7 EM on
WebQuestions test (2,032 questions, shipped as ``wq``). Hardware: one host with >= 32 GB of RAM
(6.8 GB of float32 embeddings, their ScaNN index, the 13.35M-block store); a GPU/TPU for the
reader. ``:tiny`` (``--config=...openqa_wq_released.py:tiny``) is the test-scale shape.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config(scale: str = "full") -> ConfigDict:
    c = defaults.released_config("openqa", scale)
    c.released.checkpoint = "orqa_wq_model_from_realm/export/best_default/checkpoint"
    c.openqa.dataset = "wq"
    return c
