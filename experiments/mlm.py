r"""The MLM warm start of REALM's knowledge-augmented encoder (before REALM pre-training).

  python experiments/mlm.py --config=experiments/configs/mlm_mini.py --workdir=runs/mlm

Trains the encoder's MLM head (and the layers ``optim.trainable`` names) on salient-span masked
sentences with a document as context, and reports the gate REALM pre-training relies on:
held-out ``mlm_accuracy`` and ``oracle_utility`` (nats per masked wordpiece that a block holding
the answer gives over the null document). REALM starts its encoder from this run with
``--config.init.mlm_workdir``. Rerunning resumes; ``--dry_run`` prints parameter counts; the last
stdout line is the final evaluation as one JSON object.
"""

from realm_jax.train import mlm
from realm_jax.train.launch import stage_main

if __name__ == "__main__":
    stage_main(mlm.train_and_evaluate, "mlm")
