r"""Open-QA fine-tuning (ORQA recipe): frozen index, trainable query tower, span reader.

  python experiments/finetune.py --config=experiments/configs/openqa_mini.py \
      --workdir=runs/openqa_nq --config.init.pretrain_workdir=runs/realm

``--dry_run`` builds the model without running it and prints its parameter counts. Rerunning
the same command resumes from the newest checkpoint in ``--workdir``; Ctrl-C keeps it.
Config fields can be overridden on the command line (``--config.num_train_steps=10``). The last
stdout line is the final evaluation as one JSON object; a bad config or a NaN loss gives one
``error:`` line on stderr and exit 1.
"""

from realm_jax.train import openqa
from realm_jax.train.launch import stage_main

if __name__ == "__main__":
    stage_main(openqa.train_and_evaluate, "openqa")
