"""Every error a user can fix: each message is one line naming the file, line or config field.

Scripts and the ``realm-jax`` command catch ``USER_ERRORS``, print ``error: <message>`` on stderr
and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


class ConfigError(ValueError):
    """A config that cannot be run; the message is one line naming the field."""


class QuestionError(ConfigError):
    """A question that cannot be asked (empty, not text); the message names which one."""


class JsonlError(ValueError):
    """A jsonl file that cannot be read; ``str(error)`` is one line: ``path:line: reason``."""

    def __init__(self, path: str | os.PathLike, line: int, reason: str):
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


class CorpusError(ValueError):
    """A corpus that cannot be turned into blocks; ``str(error)`` is one line naming the file."""


class ConversionError(ValueError):
    """A checkpoint does not match the parameter tree it is loaded into."""


class CheckpointError(ValueError):
    """A directory holds finished checkpoints but none of them restores."""


class WorkdirBusyError(TimeoutError):
    """Another writer held a run directory's lock past the timeout; the message names both."""


class MissingExtraError(ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN / Inf loss or parameters; the message names the step to resume."""


# Failures a user can fix: reported as one stderr line and exit status 1. OSError covers every
# failure of the filesystem (no such file, permission denied, no space left, I/O error, a
# directory where a file was expected); its message names the path.
USER_ERRORS = (
    ConfigError, NonFiniteLossError, JsonlError, CorpusError, ConversionError, OSError,
    CheckpointError, MissingExtraError,
)
