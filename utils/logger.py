"""One logger for every stage: TensorBoard events plus ``scalars.csv`` in the run directory.

Tags are grouped ``train/``, ``eval/``, ``vae/``, ``focal/`` and ``time/``. ``scalars.csv`` is in
long form (``step,tag,value``) so that new tags can appear at any time and a resumed run can drop
the rows written after its checkpoint (:meth:`Logger.truncate_after`).
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

from utils.io import atomic_write_text

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
        self._writer: Any = None
        if use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_path / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Record ``scalars`` (tag -> value) at ``step``; tags must start with a known group."""
        for tag in scalars:
            if tag.split("/")[0] not in TAG_GROUPS:
                raise ValueError(f"tag {tag!r} must start with one of {TAG_GROUPS}")
        with self.csv_path.open("a", newline="") as stream:
            writer = csv.writer(stream)
            for tag, value in scalars.items():
                writer.writerow([step, tag, repr(float(value))])
        if self._writer is not None:
            for tag, value in scalars.items():
                if math.isfinite(float(value)):
                    self._writer.add_scalar(tag, float(value), step)

    def figure(self, tag: str, figure: Any, step: int) -> Path:
        """Save a matplotlib figure as PNG in ``figures/`` and to TensorBoard."""
        path = self.figure_dir / figure_file_name(tag, step)
        figure.savefig(path, dpi=100, bbox_inches="tight")
        if self._writer is not None:
            self._writer.add_figure(tag, figure, step, close=False)
        return path

    def truncate_after(self, step: int) -> None:
        """Drop the rows logged after ``step`` (a run resumed from a checkpoint at ``step``)."""
        rows = read_scalars(self.csv_path)
        kept = [row for row in rows if row[0] <= step]
        lines = ["step,tag,value"] + [f"{row[0]},{row[1]},{row[2]!r}" for row in kept]
        atomic_write_text(self.csv_path, "\n".join(lines) + "\n")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_scalars(path: Path) -> list[tuple[int, str, float]]:
    """All ``(step, tag, value)`` rows of a ``scalars.csv``."""
    with Path(path).open(newline="") as stream:
        reader = csv.reader(stream)
        next(reader, None)
        return [(int(row[0]), row[1], float(row[2])) for row in reader if row]


def scalar_series(path: Path, tag: str) -> tuple[list[int], list[float]]:
    """Steps and values of one tag, in logged order."""
    rows = [(step, value) for step, name, value in read_scalars(path) if name == tag]
    return [step for step, _ in rows], [value for _, value in rows]
