"""Progress bars for long loops (tqdm on stderr), showing the current key metric."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

Item = TypeVar("Item")


def progress(iterable: Iterable[Item], total: int | None = None, description: str = "",
             initial: int = 0) -> tqdm:
    """A progress bar over ``iterable``; quiet when ``OMRL_PROGRESS=0`` or stderr is not a TTY
    and ``CI`` is set. Use ``bar.set_postfix(metric=value)`` to show the key metric."""
    disable = os.environ.get("OMRL_PROGRESS") == "0" or (
        bool(os.environ.get("CI")) and not sys.stderr.isatty()
    )
    return tqdm(iterable, total=total, desc=description, initial=initial, disable=disable,
                dynamic_ncols=True, mininterval=1.0, leave=True)


def progress_range(start: int, stop: int, description: str = "") -> Iterator[int]:
    """``range(start, stop)`` with a bar that counts from ``start`` (a resumed run)."""
    return progress(range(start, stop), total=stop, description=description, initial=start)
