r"""Scores open-QA predictions the way ORQA/REALM did (normalised exact match, or regex match).

  python experiments/evaluate_predictions.py --predictions P.jsonl --references R.jsonl [--regex]

Predictions are jsonl ``{question, prediction}``, references jsonl ``{question, answer: [...]}``,
matched by question text; a reference without a prediction counts as wrong, and predictions for
other questions, a repeated question (the last line counts) or an answer regex that does not compile
(never a match) are warned about on stderr, as ORQA scores them. Pass ``--regex`` for
CuratedTrec, whose answers are regular expressions. The last stdout line is one JSON object
``{"exact_match": <percent>, "n": <count>}``; a bad input file gives one line on stderr, exit 1.
"""

import json
import sys

from absl import app, flags, logging

from realm_jax.errors import JsonlError
from realm_jax.evaluation import evaluate_prediction_files

_PREDICTIONS = flags.DEFINE_string("predictions", None, "jsonl of {question, prediction}.")
_REFERENCES = flags.DEFINE_string("references", None, "jsonl of {question, answer: [...]}.")
_REGEX = flags.DEFINE_bool("regex", False, "References are regexes (CuratedTrec).")
flags.mark_flags_as_required(["predictions", "references"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _REGEX.value != ("CuratedTrec" in _REFERENCES.value):
        # Same warning as ORQA's evaluate_predictions: a likely flag mistake, not an error.
        logging.warning("regex evaluation should (only) be applied to CuratedTrec")
    try:
        metrics = evaluate_prediction_files(_PREDICTIONS.value, _REFERENCES.value, _REGEX.value)
    except (JsonlError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    if metrics["unknown_predictions"]:
        logging.warning("%s: %d prediction(s) for questions that %s does not hold; ignored",
                        _PREDICTIONS.value, metrics["unknown_predictions"], _REFERENCES.value)
    print(
        f"{metrics['num_correct']} correct of {metrics['n']} references "
        f"({metrics['missing_predictions']} without a prediction)"
    )
    print(json.dumps({"exact_match": metrics["exact_match"], "n": metrics["n"]}))


if __name__ == "__main__":
    app.run(main)
