"""Helpers of the command-line tests: run ``realm-jax`` in-process, write an edit file."""

import json

from realm_jax.serve.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``realm-jax argv...`` -> (exit code, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_edit_file(path, records) -> str:
    """One JSON object per line at ``path``; returns the path as a string."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(path)
