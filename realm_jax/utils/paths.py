"""Output paths checked before anything is written: never empty, never an input."""

from __future__ import annotations

import os
from collections.abc import Sequence

from realm_jax.errors import ConfigError


def check_output(
    path: str | None,
    inputs: Sequence[str | None] = (),
    flag: str = "--output",
    directory: bool = False,
) -> str:
    """``path`` if a file (``directory``: a directory, replaced when it exists) may be written
    there; else a one-line ConfigError naming ``flag``.

    Refused: an empty path (it would mean the current directory), a path that is one of
    ``inputs``, a directory output holding an input (replacing it would delete the input), a file
    output that is an existing directory, a file output whose parent is not a directory, a
    directory output that is an existing file, and a directory output below a file.
    """
    if path is None or not str(path).strip():
        raise ConfigError(f"{flag} is empty; give a path to write")
    target = os.path.realpath(path)
    for given in inputs:
        if not given:
            continue
        source = os.path.realpath(given)
        if source == target:
            raise ConfigError(f"{flag} {path} is an input; give another path")
        if directory and source.startswith(target.rstrip(os.sep) + os.sep):
            raise ConfigError(f"{flag} {path} holds the input {given}; give another directory")
    if directory:  # made with its missing parents: the nearest existing one must be a directory
        if os.path.exists(target) and not os.path.isdir(target):
            raise ConfigError(f"{flag} {path}: a file, not a directory")
        ancestor = os.path.dirname(target)
        while not os.path.exists(ancestor):
            ancestor = os.path.dirname(ancestor)
        if not os.path.isdir(ancestor):
            raise ConfigError(f"{flag} {path}: {ancestor} is not a directory")
    else:
        if os.path.isdir(target):
            raise ConfigError(f"{flag} {path} is a directory; give a file path")
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            raise ConfigError(f"{flag} {path}: {parent} is not a directory")
    return path


def missing_file_reason(path: str) -> str | None:
    """Why ``path`` cannot be read as a file ("no such file", "a directory, not a file"), or
    None when it is one."""
    if os.path.isfile(path):
        return None
    return "a directory, not a file" if os.path.isdir(path) else "no such file"
