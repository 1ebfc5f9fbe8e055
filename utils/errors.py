"""User-facing errors: one clear line and exit code 2, never a traceback.

Anything a user can cause (a bad flag, an unknown env-type, a corrupt dataset, a missing run) raises
:class:`UserError`. Scripts wrap ``main`` with :func:`run_script`, which prints the message on one
line to stderr and exits with code 2.
"""

from __future__ import annotations

import difflib
import errno
import sys
from collections.abc import Callable, Iterable
from typing import NoReturn, TypeVar

EXIT_CODE_USER_ERROR = 2
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                                errno.EPERM, errno.EFBIG})

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
    """Call ``main()``; on a :class:`UserError` print ``error: <message>`` and exit with code 2.

    Operating-system errors that the user must fix (a full disk or quota, a read-only file
    system, missing permissions) are reported the same way wherever they arise; any other
    exception is a bug and keeps its traceback.
    """
    try:
        return main()
    except UserError as error:
        fail(str(error))
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" ({error.filename})" if error.filename else ""
        fail(f"{error.strerror or error}{where}")


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` on one line to stderr and exit with code 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(EXIT_CODE_USER_ERROR) from None
