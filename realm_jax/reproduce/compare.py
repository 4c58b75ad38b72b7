"""Whether two reproductions gave the same figures: their ``table<N>.json`` and per-question files.

What may differ between two runs of the same commit is left out: the paths a record names (they
contain the root), wall times, the date and the machine. Everything else (every table figure,
interval, gate figure, question count, and each per-question output) must be equal.
"""

from __future__ import annotations

import json
import os

# Fields of a table record that describe the invocation, not the result.
NOT_FIGURES = ("per_question", "seconds", "run_seconds", "wall_seconds_this_invocation",
               "date", "machine", "command", "title")
PER_QUESTION = "per_question"


def table_figures(value):
    """The figures of a table record (``report.table``'s JSON): the record without the fields
    of ``NOT_FIGURES``, at any depth."""
    if isinstance(value, dict):
        return {k: table_figures(v) for k, v in value.items() if k not in NOT_FIGURES}
    if isinstance(value, list):
        return [table_figures(v) for v in value]
    return value


def first_difference(a, b, path: str = "") -> str | None:
    """Where two JSON values first differ (``rows[2].vs_orqa.mini_nq.em.estimate: 1.7 != 1.9``),
    or None if they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}" if path else key
            if key not in a or key not in b:
                return f"{where}: only in {'the second' if key not in a else 'the first'}"
            if (found := first_difference(a[key], b[key], where)) is not None:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} != {len(b)} entries"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if (found := first_difference(x, y, f"{path}[{i}]")) is not None:
                return found
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def compare_per_question(dir_a: str, dir_b: str) -> list[tuple[str, str | None]]:
    """(file name, None or how it differs) for every per-question file in either directory."""
    names = sorted(set(os.listdir(dir_a)) | set(os.listdir(dir_b)))
    out = []
    for name in names:
        a, b = os.path.join(dir_a, name), os.path.join(dir_b, name)
        if not (os.path.isfile(a) and os.path.isfile(b)):
            out.append((name, f"only in {dir_a if os.path.isfile(a) else dir_b}"))
            continue
        lines_a, lines_b = _lines(a), _lines(b)
        if len(lines_a) != len(lines_b):
            out.append((name, f"{len(lines_a)} != {len(lines_b)} questions"))
            continue
        differ = [i for i, (x, y) in enumerate(zip(lines_a, lines_b, strict=True))
                  if json.loads(x) != json.loads(y)]
        out.append((name, f"{len(differ)} of {len(lines_a)} questions differ, first at line "
                          f"{differ[0] + 1}" if differ else None))
    return out


def compare_reproductions(root_a: str, root_b: str, table: int = 1) -> list[tuple[str, str | None]]:
    """(item, None or how it differs) for the table's figures and each per-question file of two
    reproduction roots (a ``make reproduce`` workdir, or ``experiments/results/<scale>``)."""
    records = []
    for root in (root_a, root_b):
        path = os.path.join(root, f"table{table}.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: not found (has the reproduction finished?)")
        with open(path, encoding="utf-8") as f:
            records.append(table_figures(json.load(f)))
    out = [(f"table{table}.json", first_difference(*records))]
    dirs = [os.path.join(root, PER_QUESTION) for root in (root_a, root_b)]
    if all(os.path.isdir(d) for d in dirs):
        out += [(f"{PER_QUESTION}/{name}", d) for name, d in compare_per_question(*dirs)]
    else:
        missing = [d for d in dirs if not os.path.isdir(d)]
        out.append((PER_QUESTION, f"no directory {', '.join(missing)}"))
    return out
