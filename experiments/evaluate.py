r"""Scores a fine-tuned open-QA run on a question set: exact match and retrieval recall@5.

  python experiments/evaluate.py --checkpoint=runs/openqa_nq --dataset=mini_nq --split=test
  python experiments/evaluate.py --checkpoint=runs/openqa_nq --questions=R.jsonl [--regex]

Runs predict (as ``predict.py``) on the questions, then scores the predictions as
``evaluate_predictions.py`` does (references keyed by question, the last of a repeated question
wins) and recall@5 of the listed evidence (an answer occurs in a top-5 block). ``--output`` also
keeps the predictions. The last stdout line is ``{"exact_match", "recall_at_5", "n"}`` (percent);
a bad input gives one ``error:`` line on stderr and exit 1.
"""

import json
import sys

from absl import app, flags

from realm_jax.data.questions import CONFIGS
from realm_jax.errors import USER_ERRORS
from realm_jax.openqa.predict import evaluate_run
from realm_jax.train.launch import quiet_logs
from realm_jax.utils.paths import check_output

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "An open-QA fine-tuning workdir.")
_DATASET = flags.DEFINE_enum("dataset", None, list(CONFIGS), "A packaged question set.")
_SPLIT = flags.DEFINE_string("split", "test", "Its split (train, dev, test).")
_QUESTIONS = flags.DEFINE_string("questions", None, "Or a jsonl of {question, answer: [...]}.")
_REGEX = flags.DEFINE_bool("regex", None, "Answers are regexes (default: only for ct).")
_OUTPUT = flags.DEFINE_string("output", None, "Also write the predictions here.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 16, "Questions per prediction batch.", lower_bound=1
)
flags.mark_flags_as_required(["checkpoint"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if (_DATASET.value is None) == (_QUESTIONS.value is None):
        raise app.UsageError("give exactly one of --dataset or --questions")
    quiet_logs()
    try:
        if _OUTPUT.value is not None:
            check_output(_OUTPUT.value, [_QUESTIONS.value])
        metrics = evaluate_run(
            _CHECKPOINT.value, _DATASET.value, _SPLIT.value, _QUESTIONS.value, _REGEX.value,
            _OUTPUT.value, _BATCH_SIZE.value,
        )
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"EM {metrics['exact_match']:.2f}, recall@5 {metrics['recall_at_5']:.2f} "
          f"over {metrics['n']} questions")
    print(json.dumps(metrics))


if __name__ == "__main__":
    app.run(main)
