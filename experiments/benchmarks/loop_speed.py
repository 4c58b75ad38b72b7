r"""Training-loop overhead: steps/s of ``TrainLoop`` against the bare pmapped ICT step on the same
batches (``realm_jax/benchmarks/loop_speed.py`` says what each side includes).

  XLA_FLAGS= .venv/bin/python experiments/benchmarks/loop_speed.py             # ICT mini, ~8 min
  XLA_FLAGS= .venv/bin/python experiments/benchmarks/loop_speed.py --arg=tiny  # seconds

Goal: loop >= 0.97x the bare step. Prints a table and a final JSON line:
{"benchmark": "loop_speed", ..., "bare_steps_per_s": ..., "loop_steps_per_s": ..., "ratio": ...}.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from realm_jax.benchmarks.loop_speed import loop_speed_main  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "ict_mini.py")

_ARG = flags.DEFINE_string("arg", None, "ict_mini.py's argument (tiny: the smoke size).")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per round.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps first (the compile).")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Rounds of (bare, loop); medians reported.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    loop_speed_main(CONFIG, _ARG.value, _STEPS.value, _WARMUP.value, _ROUNDS.value)


if __name__ == "__main__":
    app.run(main)
