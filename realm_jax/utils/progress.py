"""The one progress bar: tqdm on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

from collections.abc import Iterable

from tqdm import tqdm


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
) -> tqdm:
    """A tqdm bar; off when ``enabled`` is False, and off on a non-terminal so logs stay clean."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=None if enabled else True)
