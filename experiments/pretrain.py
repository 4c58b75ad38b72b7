r"""REALM pre-training: salient-span MLM marginalised over documents from a refreshed index.

  python experiments/pretrain.py --config=experiments/configs/realm_mini.py --workdir=runs/realm \
      --config.init.ict_workdir=runs/ict

``--dry_run`` builds the model without running it and prints its parameter counts. Rerunning
the same command resumes from the newest checkpoint in ``--workdir``; Ctrl-C keeps it.
Config fields can be overridden on the command line (``--config.num_train_steps=10``). The last
stdout line is the final evaluation as one JSON object; a bad config or a NaN loss gives one
``error:`` line on stderr and exit 1.
"""

from realm_jax.train import realm
from realm_jax.train.launch import stage_main

if __name__ == "__main__":
    stage_main(realm.train_and_evaluate, "realm")
