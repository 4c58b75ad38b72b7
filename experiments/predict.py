r"""Answers questions with a fine-tuned open-QA run: retrieve, read, best span, evidence.

  python experiments/predict.py --checkpoint=runs/openqa_nq --questions=Q.jsonl --output=P.jsonl

``--checkpoint`` is a fine-tuning workdir (its config, newest checkpoint and frozen index).
``--questions`` is jsonl with a ``question`` field per line (other fields are ignored). Each
output line is ``{question, prediction, score, evidence: [{block, title, text, probability}]}``
with the top-5 retrieved blocks and their retrieval probabilities; ``evaluate_predictions.py``
scores the file as it is. The output appears only when complete; a bad input gives one ``error:``
line on stderr and exit 1.
"""

import os
import sys

from absl import app, flags

from realm_jax.errors import USER_ERRORS
from realm_jax.serve.api import RealmQA
from realm_jax.train.launch import quiet_logs

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "An open-QA fine-tuning workdir.")
_QUESTIONS = flags.DEFINE_string("questions", None, "jsonl of {question, ...}.")
_OUTPUT = flags.DEFINE_string("output", None, "Predictions jsonl to write.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 16, "Questions per prediction batch.", lower_bound=1
)
flags.mark_flags_as_required(["checkpoint", "questions", "output"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    quiet_logs()
    try:
        if not os.path.isfile(_QUESTIONS.value):  # before the model loads
            raise FileNotFoundError(f"{_QUESTIONS.value}: no such file")
        n = RealmQA(_CHECKPOINT.value, _BATCH_SIZE.value).ask_file(_QUESTIONS.value, _OUTPUT.value)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{n} predictions written to {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(main)
