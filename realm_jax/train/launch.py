"""What every experiment script does around a library call: logging, errors, exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

from absl import logging as absl_logging
from ml_collections import ConfigDict

from realm_jax.convert import ConversionError
from realm_jax.data.documents import CorpusError
from realm_jax.data.jsonl import JsonlError
from realm_jax.train.loop import NonFiniteLossError
from realm_jax.train.model_setup import ConfigError

# Failures a user can fix: reported as one stderr line and exit status 1.
USER_ERRORS = (
    ConfigError, NonFiniteLossError, JsonlError, CorpusError, ConversionError, FileNotFoundError,
)  # fmt: skip


class _DropOrbaxInfo(logging.Filter):
    """Orbax logs a dozen INFO lines per checkpoint; keep its warnings and errors only."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "/orbax/" not in record.pathname


def quiet_logs() -> None:
    """INFO logs from our code and clu's metric lines, without orbax's per-save chatter."""
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_handler().addFilter(_DropOrbaxInfo())


def run_stage(train: Callable[[ConfigDict, str], dict], config: ConfigDict, workdir: str) -> int:
    """Runs ``train(config, workdir)``; prints its final metrics as the last JSON line.

    Returns the exit status: 0, 1 on a user error (one ``error:`` line on stderr), 130 on Ctrl-C
    (the last checkpoint stays; the same command resumes).
    """
    quiet_logs()
    try:
        metrics = train(config, workdir)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {workdir} keeps its last checkpoint; rerun to resume", file=sys.stderr)
        return 130
    print(json.dumps({k: float(v) for k, v in metrics.items()}))
    return 0
