"""Pieces shared by the benchmarks: the device description, side-by-side timing with interleaved
repeats, and the result sections that ``python -m bench`` writes to ``bench/results.md``.

Timing rule: alternatives are measured in turns (A, B, A, B, ...) and summarised by their medians,
so a slow spell of a shared machine hits every alternative alike. Each measurement records the
wall-clock time and the process's CPU time; ratios are given from the wall clock, with the CPU-time
ratio beside them as a check that is less sensitive to other processes on the machine (on a GPU
only the wall clock means anything).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from utils.seeding import usable_cores, wait_for_device


@dataclass
class Timing:
    """Seconds of one alternative over the repeats: wall clock and process CPU time."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


@dataclass
class Section:
    """One part of ``bench/results.md``: a title, markdown lines, and headline figures that the
    summary at the top of the file repeats."""

    title: str
    lines: list[str]
    headlines: dict[str, str] = field(default_factory=dict)

    def markdown(self) -> str:
        return "\n".join([f"## {self.title}", "", *self.lines, ""])


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_description(device: torch.device) -> str:
    """CPU model and cores, PyTorch version and threads, and the GPU when ``device`` is one."""
    text = (f"CPU {cpu_model()} ({usable_cores()} cores usable), PyTorch {torch.__version__}, "
            f"{torch.get_num_threads()} PyTorch thread(s)")
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    elif torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(0)} present but not used"
    else:
        text += "; no GPU"
    return text


def interleaved(alternatives: dict[str, Callable[[], object]], rounds: int,
                device: torch.device, warmup: bool = True) -> dict[str, Timing]:
    """Run each alternative once per round, in turns, ``rounds`` times (after one untimed call
    each when ``warmup``); returns the timings of every alternative."""
    if warmup:
        for function in alternatives.values():
            function()
            wait_for_device(device)
    timings = {name: Timing() for name in alternatives}
    for _ in range(rounds):
        for name, function in alternatives.items():
            wait_for_device(device)
            wall, cpu = time.perf_counter(), time.process_time()
            function()
            wait_for_device(device)
            timings[name].wall.append(time.perf_counter() - wall)
            timings[name].cpu.append(time.process_time() - cpu)
    return timings


def ratio(slower: Timing, faster: Timing) -> tuple[float, float]:
    """How many times faster ``faster`` is than ``slower``: by wall clock and by CPU time."""
    return (slower.wall_median / faster.wall_median, slower.cpu_median / faster.cpu_median)


def format_ratio(values: tuple[float, float], device: torch.device) -> str:
    """``7.1x`` (``7.3x`` by CPU time on a CPU)."""
    wall, cpu = values
    return f"{wall:.2f}x" if device.type == "cuda" else f"{wall:.2f}x (CPU time: {cpu:.2f}x)"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
