r"""Turns REALM's released artifacts (TF or the HF port's) into a run directory of ours.

  python experiments/convert.py --config=experiments/configs/openqa_nq_released.py \
      --workdir=runs/orqa_nq_released --config.released.checkpoint=... \
      --config.released.block_emb=... --config.data.corpus=blocks.tfr --config.data.titles=...

The config's stage says what the artifacts become: ``openqa`` (a fine-tuned model:
``evaluate.py`` / ``predict.py`` take the run as it is) or ``realm`` (the pretrained embedder and
encoder: ``finetune.py --config.init.pretrain_workdir=<run>`` starts from it). The run holds
``config.json``, an orbax checkpoint of step 0, the frozen index (the released block embeddings
and a searcher built over them) and ``released.json`` (sources, corpus, time). The block store
is built from ``data.corpus`` (``blocks.tfr`` + ``titles.tfr``, optionally ``data.examples``,
or the port's ``block_records.npy``) into the usual cache. ``--dry_run`` prints the model's
parameter counts only. A bad input gives one ``error:`` line naming the file or variable, exit
1, and no workdir.
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from realm_jax.convert.released_run import convert_released
from realm_jax.data.tokenization import shared_tokenizer
from realm_jax.errors import USER_ERRORS
from realm_jax.train.launch import describe, parse_flags, quiet_logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "A released config (*_released.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run directory to create (must not exist).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only build the model; print parameter counts.")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_logs()
    config = _CONFIG.value
    try:
        if _DRY_RUN.value:
            print(json.dumps(describe(config)))
            return
        if not _WORKDIR.value:
            raise app.UsageError("--workdir is required (unless --dry_run)")

        info = convert_released(config, _WORKDIR.value, shared_tokenizer())
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{_WORKDIR.value}: {config.stage} run converted from {info['format']} artifacts "
          f"({info['num_blocks']} blocks, {info['seconds']} s)")
    print(json.dumps(info))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
