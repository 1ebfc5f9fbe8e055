"""The results of ``reproduce.py``: per-episode returns of every method, tables and figures.

A method's returns are pooled over its evaluation tasks and seeds: an array (N, k) of inner-episode
returns and (N,) successes, N = tasks x seeds. Tables report mean +- standard deviation over those
N meta-episodes. Learning curves read the runs' own ``scalars.csv`` (no TensorBoard needed) and
show the mean +- standard deviation over seeds at every logged step. Figures use matplotlib's
object API, so they work headless.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from utils.io import atomic_write_text
from utils.logger import scalar_series


@dataclass
class MethodResult:
    """Pooled evaluation of one method: ``returns`` (N, k), ``successes`` (N,), and where the
    numbers come from (for the table's notes)."""

    method: str
    returns: np.ndarray
    successes: np.ndarray
    source: str = ""

    @property
    def num_episodes(self) -> int:
        return int(self.returns.shape[1])

    def summary(self) -> dict[str, float]:
        """Mean and standard deviation of each episode's return and of the sum; success rate."""
        sums = self.returns.sum(axis=1)
        row = {"n": float(len(self.returns))}
        for episode in range(self.num_episodes):
            row[f"episode_{episode + 1}_mean"] = float(self.returns[:, episode].mean())
            row[f"episode_{episode + 1}_std"] = float(self.returns[:, episode].std())
        row["sum_mean"], row["sum_std"] = float(sums.mean()), float(sums.std())
        row["success_rate"] = float(np.mean(self.successes))
        return row


def pool(method: str, parts: list[tuple[np.ndarray, np.ndarray]], source: str = ""
         ) -> MethodResult:
    """Stack per-seed ``(returns (n, k), successes (n,))`` into one result."""
    returns = np.concatenate([np.asarray(part[0], dtype=np.float64) for part in parts])
    successes = np.concatenate([np.asarray(part[1], dtype=np.float64) for part in parts])
    return MethodResult(method, returns, successes, source)


def results_csv(results: list[MethodResult]) -> str:
    """One row per method: n, per-episode mean and std, the sum's mean and std, success rate."""
    episodes = max(result.num_episodes for result in results)
    columns = ["method", "n"] + [f"episode_{number}_{stat}" for number in range(1, episodes + 1)
                                 for stat in ("mean", "std")] + ["sum_mean", "sum_std",
                                                                 "success_rate"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for result in results:
        summary = result.summary()
        writer.writerow({"method": result.method, **{key: f"{value:.4f}" if key != "n" else
                                                     int(value) for key, value in summary.items()}})
    return buffer.getvalue()


def results_markdown(results: list[MethodResult], title: str, notes: list[str]) -> str:
    """A Markdown table: per-episode return (mean +- std), their sum and the success rate."""
    episodes = max(result.num_episodes for result in results)
    header = (["method"] + [f"episode {number}" for number in range(1, episodes + 1)]
              + ["sum", "success", "n"])
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for result in results:
        summary = result.summary()
        cells = [result.method]
        for number in range(1, episodes + 1):
            if number <= result.num_episodes:
                cells.append(f"{summary[f'episode_{number}_mean']:.2f} ± "
                             f"{summary[f'episode_{number}_std']:.2f}")
            else:
                cells.append("")
        cells += [f"{summary['sum_mean']:.2f} ± {summary['sum_std']:.2f}",
                  f"{summary['success_rate']:.2f}", str(int(summary["n"]))]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_results(directory: Path, results: list[MethodResult], title: str, notes: list[str]
                  ) -> None:
    """``results.csv`` and ``results.md`` in ``directory``, written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "results.csv", results_csv(results))
    atomic_write_text(directory / "results.md", results_markdown(results, title, notes))


def returns_figure(results: list[MethodResult]) -> Figure:
    """Grouped bars: each method's mean return per inner episode, with standard deviations
    (BOReL's with vs without Reward Relabelling comparison, next to the references)."""
    episodes = max(result.num_episodes for result in results)
    figure = Figure(figsize=(1.2 + 1.1 * len(results) * episodes / 2, 3.6))
    axis = figure.add_subplot()
    width = 0.8 / len(results)
    colours = matplotlib.colormaps["tab10"](np.arange(len(results)) % 10)
    for index, (result, colour) in enumerate(zip(results, colours, strict=True)):
        summary = result.summary()
        numbers = np.arange(1, result.num_episodes + 1)
        means = [summary[f"episode_{number}_mean"] for number in numbers]
        stds = [summary[f"episode_{number}_std"] for number in numbers]
        axis.bar(numbers + (index - (len(results) - 1) / 2) * width, means, width, yerr=stds,
                 color=colour, label=result.method, capsize=2)
    axis.set_xticks(np.arange(1, episodes + 1))
    axis.set_xlabel("inner episode")
    axis.set_ylabel("return")
    axis.axhline(0.0, color="0.5", linewidth=0.8)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def seed_curves(run_paths: list[Path], tag: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Steps and values (seeds, steps) of ``tag`` over runs, on the steps every run logged;
    None if no run logged it."""
    series = [scalar_series(path / "scalars.csv", tag) for path in run_paths
              if (path / "scalars.csv").is_file()]
    series = [(steps, values) for steps, values in series if steps]
    if not series:
        return None
    common = sorted(set.intersection(*(set(steps) for steps, _ in series)))
    if not common:
        return None
    values = np.array([[dict(zip(steps, vals, strict=True))[step] for step in common]
                       for steps, vals in series])
    return np.array(common), values


def learning_curve_figure(panels: list[tuple[str, str, dict[str, list[Path]], str]]) -> Figure:
    """One panel per ``(title, x label, {method: run paths}, tag)``: the tag's mean over seeds
    with a +- standard deviation band."""
    figure = Figure(figsize=(5.0 * len(panels), 3.6))
    for index, (title, x_label, methods, tag) in enumerate(panels):
        axis = figure.add_subplot(1, len(panels), index + 1)
        for method, paths in methods.items():
            curves = seed_curves(paths, tag)
            if curves is None:
                continue
            steps, values = curves
            mean, std = values.mean(axis=0), values.std(axis=0)
            line, = axis.plot(steps, mean, label=f"{method} ({len(values)} seeds)")
            axis.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel(x_label)
        axis.set_ylabel(tag)
        if axis.lines:
            axis.legend(fontsize=7)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """PNG, written to a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, dpi=100, bbox_inches="tight", format="png")
    temporary.replace(path)
    return path


def latest_figure(run_path: Path, tag_prefix: str) -> Path | None:
    """The run's figure of ``tag_prefix`` (a figure file-name prefix) at its last step."""
    candidates = []
    for path in (Path(run_path) / "figures").glob(f"{tag_prefix}_step*.png"):
        suffix = path.stem.rsplit("_step", 1)[-1]
        if suffix.isdigit():
            candidates.append((int(suffix), path))
    return max(candidates)[1] if candidates else None


def machine_description() -> str:
    """CPU model and core count, GPU if any, and the torch version: where a table was made."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    description = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        description += f", GPU {torch.cuda.get_device_name(0)}"
    return description


def record_timings(path: Path, seconds: dict[str, float]) -> None:
    """Merge the wall times of the steps that ran now into ``path`` (JSON: step -> seconds)."""
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    recorded.update({label: round(value, 1) for label, value in seconds.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(recorded, indent=2) + "\n")
