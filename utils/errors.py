"""User-facing errors: one clear line and exit code 2, never a traceback.

Anything a user can cause (a bad flag, an unknown env-type, a corrupt dataset, a missing run) raises
:class:`UserError`. Scripts wrap ``main`` with :func:`run_script`, which prints the message on one
line to stderr and exits with code 2.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

EXIT_CODE_USER_ERROR = 2

ReturnType = TypeVar("ReturnType")


class UserError(Exception):
    """A mistake in the user's input; the message says what is wrong and where."""


def closest_names(name: str, candidates: Iterable[str], count: int = 3) -> str:
    """A phrase naming the candidates closest to ``name``, for error messages."""
    candidates = sorted(set(candidates))
    matches = difflib.get_close_matches(name, candidates, n=count, cutoff=0.5)
    if not matches:
        matches = candidates[:count] if len(candidates) <= count else []
    return f" (closest: {', '.join(matches)})" if matches else ""


def run_script(main: Callable[[], ReturnType]) -> ReturnType:
    """Call ``main()``; on a :class:`UserError` print ``error: <message>`` and exit with code 2."""
    try:
        return main()
    except UserError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_CODE_USER_ERROR) from None
