r"""Checks that two reproductions gave the same figures (a rerun against the committed run).

  python experiments/compare_reproductions.py --first experiments/results/mini \
      --second runs/reproduce [--table 1]

Compares ``table<N>.json`` without what may differ between two runs of one commit (paths, wall
times, date, machine; ``realm_jax/reproduce/compare.py``) and every per-question output file.
Prints one line per item and a final JSON line ``{"identical": bool, "items": n, "different":
[...]}``; exits 1 when anything differs, 2 when a table is missing.
"""

import json
import sys

from absl import app, flags

from realm_jax.reproduce.compare import compare_reproductions

_FIRST = flags.DEFINE_string("first", None, "A reproduction root (holds table<N>.json).")
_SECOND = flags.DEFINE_string("second", None, "Another reproduction root.")
_TABLE = flags.DEFINE_enum("table", "1", ["1", "2"], "Which table to compare.")
flags.mark_flags_as_required(["first", "second"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        items = compare_reproductions(_FIRST.value, _SECOND.value, int(_TABLE.value))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    width = max(len(name) for name, _ in items)
    for name, difference in items:
        print(f"{name:<{width}}  {'identical' if difference is None else difference}")
    different = [name for name, d in items if d is not None]
    print(json.dumps({"identical": not different, "items": len(items), "different": different}))
    sys.exit(1 if different else 0)


if __name__ == "__main__":
    app.run(main)
