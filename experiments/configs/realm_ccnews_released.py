r"""REALM pre-trained on CC-News (the released embedder and encoder), as a REALM run of ours.

  cd /data/realm   # where the released files were downloaded (paths below are the defaults)
  python /path/to/realm-jax/experiments/convert.py \
      --config=/path/to/realm-jax/experiments/configs/realm_ccnews_released.py \
      --workdir=runs/realm_ccnews_released
  python experiments/finetune.py --config=experiments/configs/openqa_nq.py \
      --workdir=runs/openqa_nq --config.init.pretrain_workdir=runs/realm_ccnews_released \
      --config.model.hidden_act=gelu_new ...

The converted run is step 0 of a REALM run: fine-tuning starts from it (and reuses its index, the
released embeddings, instead of embedding 13.35M blocks again), and ``pretrain.py`` could go on
training it. Files: ``gs://realm-data/cc_news_pretrained/{embedder,bert}`` (TF-Hub modules) and
the Wikipedia blocks above. ``:tiny`` is the test-scale shape.
"""

from ml_collections import ConfigDict

from realm_jax.run import defaults


def get_config(scale: str = "full") -> ConfigDict:
    c = defaults.released_config("realm", scale)
    c.released.checkpoint = "cc_news_pretrained/embedder"  # TF-Hub modules: variables/ inside
    c.released.encoder_checkpoint = "cc_news_pretrained/bert"
    return c
