"""One logger for every stage: TensorBoard events plus ``scalars.csv`` in the run directory.

Tags are grouped ``train/``, ``eval/``, ``vae/``, ``focal/`` and ``time/``. ``scalars.csv`` is in
long form (``step,tag,value``) so that new tags can appear at any time and a resumed run can drop
the rows written after its checkpoint (:meth:`Logger.truncate_after`, which also tells TensorBoard
to hide the events after that step). Each :meth:`Logger.log` appends its rows with one write; a
line torn by a kill (no final newline) is ignored when read, and a failed append (a full disk) is
undone before the error is raised. Figures are written atomically.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
from pathlib import Path
from typing import Any

from utils.errors import UserError
from utils.io import atomic_write_bytes, atomic_write_text, write_error

TAG_GROUPS = ("train", "eval", "vae", "focal", "time", "data")


def figure_file_name(tag: str, step: int) -> str:
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', tag)}_step{step}.png"


class Logger:
    """Writes scalars to ``scalars.csv`` and TensorBoard, and figures to ``figures/``."""

    def __init__(self, run_path: Path, use_tensorboard: bool = True) -> None:
        self.run_path = Path(run_path)
        self.csv_path = self.run_path / "scalars.csv"
        self.figure_dir = self.run_path / "figures"
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        if not self.csv_path.exists():
            atomic_write_text(self.csv_path, "step,tag,value\n")
        self._writer: Any = self._open_writer() if use_tensorboard else None

    def _open_writer(self, purge_step: int | None = None) -> Any:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(log_dir=str(self.run_path / "tensorboard"), purge_step=purge_step)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Record ``scalars`` (tag -> value) at ``step``; tags must start with a known group."""
        for tag in scalars:
            if tag.split("/")[0] not in TAG_GROUPS:
                raise ValueError(f"tag {tag!r} must start with one of {TAG_GROUPS}")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(
            [step, tag, repr(float(value))] for tag, value in scalars.items())
        size = self.csv_path.stat().st_size if self.csv_path.exists() else 0
        try:
            with self.csv_path.open("a", newline="") as stream:
                stream.write(buffer.getvalue())
        except OSError as error:
            with contextlib.suppress(OSError):
                os.truncate(self.csv_path, size)
            raise write_error(self.csv_path, error) from None
        if self._writer is not None:
            try:
                for tag, value in scalars.items():
                    if math.isfinite(float(value)):
                        self._writer.add_scalar(tag, float(value), step)
            except OSError as error:
                raise write_error(self.run_path / "tensorboard", error) from None

    def figure(self, tag: str, figure: Any, step: int) -> Path:
        """Save a matplotlib figure as PNG in ``figures/`` (atomically) and to TensorBoard."""
        path = self.figure_dir / figure_file_name(tag, step)
        image = io.BytesIO()
        figure.savefig(image, format="png", dpi=100, bbox_inches="tight")
        atomic_write_bytes(path, image.getvalue())
        if self._writer is not None:
            try:
                self._writer.add_figure(tag, figure, step, close=False)
            except OSError as error:
                raise write_error(self.run_path / "tensorboard", error) from None
        return path

    def truncate_after(self, step: int) -> None:
        """Drop the rows logged after ``step`` (a run resumed from a checkpoint at ``step``, or
        step 0 for a resumed run that had no checkpoint yet); TensorBoard hides its events after
        ``step`` too."""
        rows = read_scalars(self.csv_path)
        kept = [row for row in rows if row[0] <= step]
        lines = ["step,tag,value"] + [f"{row[0]},{row[1]},{row[2]!r}" for row in kept]
        atomic_write_text(self.csv_path, "\n".join(lines) + "\n")
        if self._writer is not None:
            self._writer.close()
            self._writer = self._open_writer(purge_step=step + 1)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_scalars(path: Path) -> list[tuple[int, str, float]]:
    """All ``(step, tag, value)`` rows of a ``scalars.csv``; a last line without its newline (an
    append torn by a kill) is left out, any other malformed line raises UserError."""
    try:
        text = Path(path).read_text()
    except (OSError, ValueError) as error:
        raise UserError(f"{path} cannot be read: {error}") from None
    lines = text.split("\n")
    complete = lines[:-1]  # the last piece is empty, or a torn line
    rows = []
    for number, row in enumerate(csv.reader(complete[1:]), start=2):
        if not row:
            continue
        try:
            step, tag, value = row
            rows.append((int(step), tag, float(value)))
        except ValueError:
            raise UserError(f"{path}, line {number}: {','.join(row)!r} is not a "
                            "step,tag,value row") from None
    return rows


def scalar_series(path: Path, tag: str) -> tuple[list[int], list[float]]:
    """Steps and values of one tag, in logged order."""
    rows = [(step, value) for step, name, value in read_scalars(path) if name == tag]
    return [step for step, _ in rows], [value for _, value in rows]
