"""Atomic file writes: write to a temporary file in the same folder, flush, fsync, rename.

A full disk or any other error during a write leaves the previous file intact and removes the
temporary file; errors raised by the operating system become a one-line :class:`UserError`. A
process killed during a write (SIGKILL) also leaves the previous file intact, but its
temporary file ``.<name>.<random>.tmp`` stays behind until the owner of the file resumes and calls
:func:`remove_stale_temporaries`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from utils.errors import UserError


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary binary file beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary_name = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp",
                                                  dir=path.parent)
    except OSError as error:
        raise write_error(path, error) from None
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        sync_directory(path.parent)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise write_error(path, error) from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform allows opening folders)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_error(path: Path, error: OSError) -> UserError:
    """The one-line error for an operating-system failure while writing ``path``."""
    return UserError(f"could not write {path}: {error.strerror or error}")


def temporary_prefix(path: Path) -> str:
    return f".{Path(path).name}."


def remove_stale_temporaries(directory: Path, names: list[str] | None = None) -> list[Path]:
    """Delete the temporary files of interrupted atomic writes in ``directory`` (recursively),
    or only those of the files ``names`` in ``directory``. Call it only where this process owns
    the files (a resumed run directory, its own datasets): a concurrent writer's temporary file
    would otherwise be removed under it. Returns the removed paths."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    if names is None:
        candidates = directory.rglob(".*.tmp")
    else:
        candidates = (path for name in names
                      for path in directory.glob(f"{glob.escape(temporary_prefix(name))}*.tmp"))
    removed = []
    for path in candidates:
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as stream:
        stream.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Call ``writer(stream)`` on a temporary file that replaces ``path`` when it returns."""
    with atomic_open(path) as stream:
        writer(stream)
