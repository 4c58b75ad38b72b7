r"""Inverse Cloze Task warm start of the retriever (ORQA), the first stage of REALM.

  python experiments/ict.py --config=experiments/configs/ict_mini.py --workdir=runs/ict

``--dry_run`` builds the model without running it and prints its parameter counts. Rerunning
the same command resumes from the newest checkpoint in ``--workdir``; Ctrl-C keeps it.
Config fields can be overridden on the command line (``--config.num_train_steps=10``). The last
stdout line is the final evaluation as one JSON object; a bad config or a NaN loss gives one
``error:`` line on stderr and exit 1.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from realm_jax.train.launch import run_stage
from realm_jax.train.loops import train_ict

_CONFIG = config_flags.DEFINE_config_file("config", None, "A stage config file (ict).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, metrics and indexes go here.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Only build the model and print parameter counts.")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    sys.exit(run_stage(train_ict, _CONFIG.value, _WORKDIR.value, _DRY_RUN.value))


if __name__ == "__main__":
    app.run(main)
