"""What ``sim_policy.py`` reports about a trained policy's rollouts, independent of the run's kind.

A kind (stage-1 agents, BOReL's offline agent, FOCAL, ...) plays its evaluation protocols and
returns a :class:`Simulation`: one :class:`ProtocolRollouts` per protocol (copy c of the protocol
played the task of seed ``seeds[c]``, repeat ``repeats[c]``), the summary metrics computed as the
run computes its own evaluation, and optional rendered frames. This module turns that into the
per-task, per-episode table (printed, and written as CSV and JSON), videos and datasets, and reads
the run's last logged evaluation to compare with.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from utils.datasets import TaskDataset, task_file
from utils.errors import UserError
from utils.io import atomic_write_text
from utils.logger import read_scalars
from utils.plotting import trajectory_frames
from utils.rollouts import MetaEpisodeBatch
from utils.runs import RunDirectory

TABLE_COLUMNS = ("protocol", "task_seed", "repeat", "episode", "return", "success", "length")
ANIMATION_FRAMES_PER_SECOND = 10.0
BOREL_EVALUATION_TAGS = tuple(f"eval/{kind}{name}" for kind in ("", "train_") for name in (
    "return_episode_", "return_sum", "success_rate"))
"""BOReL's evaluation tags; ``eval/train_...`` are online VariBAD's training-task evaluation."""


@dataclass
class SimulationRequest:
    """What to simulate: ``task_seeds``, or the first ``num_tasks`` evaluation tasks (both None:
    the run's own); ``episodes`` per task (None: the run's); whether to render frames; the
    device."""

    task_seeds: list[int] | None
    num_tasks: int | None
    episodes: int | None
    record_frames: bool
    device: torch.device


@dataclass
class ProtocolRollouts:
    """The rollouts of one evaluation protocol.

    Attributes:
        name: the protocol (``policy``, ``online_belief``, ``offline_context``, ...).
        seeds: task seed of each copy (C,).
        tasks: task vector of each copy (C, task_dim).
        repeats: repeat index of each copy among the copies of its task (C,).
        returns: (C, E) return of each episode; ``successes`` (C, E) whether the goal was
            reached in it; ``lengths`` (C, E) its number of steps.
        batches: the rollouts, rows = copies: one batch whose meta-episodes hold the E inner
            episodes, or E batches of one episode each.
    """

    name: str
    seeds: list[int]
    tasks: np.ndarray
    repeats: list[int]
    returns: np.ndarray
    successes: np.ndarray
    lengths: np.ndarray
    batches: list[MetaEpisodeBatch]

    def trajectory(self, copy: int) -> dict[str, np.ndarray]:
        """The valid steps of copy ``copy`` across all batches, as one trajectory (T, dim):
        ``observations``, ``next_observations``, ``truncations``."""
        parts: dict[str, list[np.ndarray]] = {"observations": [], "next_observations": [],
                                              "truncations": []}
        for batch in self.batches:
            length = int(batch.lengths[copy])
            for name, values in parts.items():
                values.append(getattr(batch, name)[copy, :length])
        return {name: np.concatenate(values) for name, values in parts.items()}


def episode_lengths(batch: MetaEpisodeBatch, episodes_per_task: int) -> np.ndarray:
    """Steps of each inner episode (K, k)."""
    marks = batch.truncations[..., 0]
    episode_ids = np.cumsum(marks, axis=1) - marks
    valid = batch.valid_mask()
    return np.stack([np.sum(valid & (episode_ids == episode), axis=1)
                     for episode in range(episodes_per_task)], axis=1)


def meta_episode_protocol(name: str, seeds: list[int], tasks: np.ndarray,
                          batch: MetaEpisodeBatch, episodes_per_task: int) -> ProtocolRollouts:
    """A protocol that plays one meta-episode of ``episodes_per_task`` inner episodes per
    task (BOReL's evaluation)."""
    return ProtocolRollouts(
        name, list(seeds), np.asarray(tasks), [0] * len(seeds),
        batch.episode_returns(episodes_per_task), batch.episode_successes(episodes_per_task),
        episode_lengths(batch, episodes_per_task), [batch])


def episodes_protocol(name: str, seeds: list[int], tasks: np.ndarray, repeats: list[int],
                      batches: list[MetaEpisodeBatch], returns: np.ndarray) -> ProtocolRollouts:
    """A protocol that plays one single-episode batch per episode (FOCAL's evaluation);
    ``returns`` (C, E) as the protocol counts them."""
    successes = np.stack([batch.successes[..., 0].any(axis=1) for batch in batches], axis=1)
    lengths = np.stack([batch.lengths for batch in batches], axis=1)
    return ProtocolRollouts(name, list(seeds), np.asarray(tasks), list(repeats),
                            np.asarray(returns), successes, lengths, batches)


@dataclass
class Simulation:
    """Everything one simulation produced.

    Attributes:
        protocols: the rollouts of each protocol; the first is the one animated.
        summary: the run's evaluation metrics (its own tag or column names), computed from these
            rollouts exactly as the run computes them.
        own_evaluation: whether tasks, seeds and episodes are the run's own evaluation's, so that
            ``summary`` must equal the run's last logged evaluation.
        frames: rendered frames of the first repeat of each task of the first protocol, by task
            seed (empty where the env has no renderer).
        env: the task family (``plot_task``, ``trajectory_xy``) for animations.
        dataset_meta: the ``meta`` of datasets written from these rollouts (without the seed).
        training_steps: gradient updates of the policy that was rolled out.
    """

    protocols: list[ProtocolRollouts]
    summary: dict[str, float]
    own_evaluation: bool
    env: Any
    dataset_meta: dict[str, Any]
    training_steps: int
    frames: dict[int, list[np.ndarray]] = field(default_factory=dict)

    @property
    def frames_per_second(self) -> float:
        """Playback rate of the rendered frames: the env's own (:func:`frames_per_second`)."""
        return frames_per_second(self.env)


@dataclass
class LoggedEvaluation:
    """The run's last logged evaluation: its step and metric values."""

    step: int
    values: dict[str, float]


class FrameRecorder:
    """A step observer that renders chosen copies of a task family after every step in which
    they were active: ``frames[key]`` for copy ``copies[key]``. It stops at once (recording
    nothing) where the family has no renderer (``render_frames`` returns None)."""

    def __init__(self, env: Any, copies: dict[int, int]) -> None:
        self.env, self.copies = env, dict(copies)
        self.frames: dict[int, list[np.ndarray]] = {key: [] for key in self.copies}
        self.enabled = True

    def __call__(self, stored_actions: np.ndarray, result: Any) -> None:
        if not self.enabled:
            return
        for key, copy in self.copies.items():
            if not result.active[copy]:
                continue
            frame = self.env.render_frames(copy)
            if frame is None:
                self.enabled = False
                self.frames = {key: [] for key in self.copies}
                return
            self.frames[key].append(frame)


def checked_episodes(requested: int | None, run_episodes: int) -> int:
    """The inner episodes per meta-episode to play (``requested``, else the run's); the
    end-of-episode flag (present when k > 1) must stay as the policy was trained with."""
    episodes = requested or run_episodes
    if (episodes > 1) != (run_episodes > 1):
        raise UserError(f"--episodes {episodes}: the policy was trained with "
                        f"{run_episodes} episode(s) per task, and its observations "
                        f"{'have' if run_episodes > 1 else 'lack'} the end-of-episode flag that "
                        f"{episodes} episode(s) {'lack' if episodes == 1 else 'need'}")
    return episodes


def frames_per_second(env: Any) -> float:
    """Real time for simulators with a control step ``dt``, else the animations' rate."""
    return 1.0 / env.dt if getattr(env, "dt", None) else ANIMATION_FRAMES_PER_SECOND


def table_rows(simulation: Simulation) -> list[dict[str, Any]]:
    """One row per protocol, copy and episode (the columns of ``TABLE_COLUMNS`` plus ``task``)."""
    rows = []
    for protocol in simulation.protocols:
        for copy, seed in enumerate(protocol.seeds):
            for episode in range(protocol.returns.shape[1]):
                rows.append({
                    "protocol": protocol.name, "task_seed": int(seed),
                    "repeat": int(protocol.repeats[copy]), "episode": episode + 1,
                    "return": float(protocol.returns[copy, episode]),
                    "success": bool(protocol.successes[copy, episode]),
                    "length": int(protocol.lengths[copy, episode]),
                    "task": [float(value) for value in protocol.tasks[copy]],
                })
    return rows


def format_table(simulation: Simulation) -> str:
    """The per-task table of every protocol: one line per task and repeat with the return of
    each episode, their sum and the episodes in which the goal was reached."""
    lines = []
    for protocol in simulation.protocols:
        episodes = protocol.returns.shape[1]
        lines.append(f"{protocol.name}: {len(protocol.seeds)} rollouts, returns per episode")
        header = ["task seed", "repeat"] + [f"episode {index + 1}" for index in range(episodes)]
        header += ["sum", "success in episodes"]
        body = []
        for copy, seed in enumerate(protocol.seeds):
            reached = [str(index + 1) for index in np.flatnonzero(protocol.successes[copy])]
            body.append([str(seed), str(protocol.repeats[copy])]
                        + [f"{value:.3f}" for value in protocol.returns[copy]]
                        + [f"{protocol.returns[copy].sum():.3f}", ",".join(reached) or "-"])
        means = protocol.returns.mean(axis=0)
        body.append(["mean", ""] + [f"{value:.3f}" for value in means]
                    + [f"{protocol.returns.sum(axis=1).mean():.3f}",
                       f"{protocol.successes.any(axis=1).mean():.2f} of rollouts"])
        widths = [max(len(row[column]) for row in [header, *body])
                  for column in range(len(header))]
        for row in [header, *body]:
            lines.append("  " + "  ".join(cell.rjust(width)
                                          for cell, width in zip(row, widths, strict=True)))
        lines.append("")
    return "\n".join(lines)


def compare_with_logged(summary: dict[str, float], logged: LoggedEvaluation | None
                        ) -> dict[str, Any]:
    """Metric by metric: the simulated value, the logged value and whether they are equal."""
    comparison: dict[str, Any] = {}
    for name, value in summary.items():
        logged_value = None if logged is None else logged.values.get(name)
        comparison[name] = {"simulated": value, "logged": logged_value,
                            "equal": None if logged_value is None else value == logged_value}
    return comparison


def format_comparison(comparison: dict[str, Any], logged: LoggedEvaluation | None,
                      note: str) -> str:
    """The summary metrics beside the run's logged values."""
    heading = f"logged at step {logged.step}" if logged is not None else "logged"
    rows = [["metric", "simulated", heading, ""]]
    for name, entry in comparison.items():
        rows.append([name, f"{entry['simulated']:.6g}",
                     "-" if entry["logged"] is None else f"{entry['logged']:.6g}",
                     {True: "equal", False: "DIFFERENT", None: ""}[entry["equal"]]])
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [f"summary: {note}"]
    for row in rows:
        lines.append("  " + "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]),
                                       row[2].rjust(widths[2]), row[3]]).rstrip())
    return "\n".join(lines)


def write_tables(directory: Path, rows: list[dict[str, Any]], report: dict[str, Any]) -> None:
    """``returns.csv`` (one row per episode) and ``returns.json`` (the rows and ``report``),
    written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*TABLE_COLUMNS, "task"])
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "task": " ".join(f"{value:.6g}" for value in row["task"])})
    atomic_write_text(directory / "returns.csv", buffer.getvalue())
    atomic_write_text(directory / "returns.json",
                      json.dumps({**report, "rows": rows}, indent=2) + "\n")


def logged_borel_evaluation(run: RunDirectory) -> LoggedEvaluation | None:
    """BOReL's evaluation tags (``eval/return_episode_k``, ``eval/return_sum``,
    ``eval/success_rate`` and their ``eval/train_`` forms) at the run's last logged evaluation."""
    return last_logged_scalars(run.path / "scalars.csv",
                               lambda tag: tag.startswith(BOREL_EVALUATION_TAGS))


def logged_focal_evaluation(run: RunDirectory) -> LoggedEvaluation | None:
    """The return columns of the last row of a FOCAL run's ``progress.csv``."""
    path = run.path / "progress.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        return None
    last = rows[-1]
    return LoggedEvaluation(int(float(last["Epoch"])), {
        name: float(value) for name, value in last.items()
        if name.startswith("AverageReturn_") and value != ""})


def last_logged_scalars(path: Path, tags: Callable[[str], bool]) -> LoggedEvaluation | None:
    """The values of the tags selected by ``tags`` at the last step at which any was logged in
    a ``scalars.csv`` (None if none was)."""
    if not path.is_file():
        return None
    rows = [(step, tag, value) for step, tag, value in read_scalars(path) if tags(tag)]
    if not rows:
        return None
    step = max(row[0] for row in rows)
    return LoggedEvaluation(step, {tag: value for row_step, tag, value in rows
                                   if row_step == step})


def task_datasets(simulation: Simulation) -> dict[int, TaskDataset]:
    """The rollouts of every protocol as one dataset per task seed (the project's dataset
    format): trajectories in protocol order, padded to the longest, each tagged with the
    policy's training step."""
    pieces: dict[int, list[MetaEpisodeBatch]] = {}
    tasks: dict[int, np.ndarray] = {}
    for protocol in simulation.protocols:
        for batch in protocol.batches:
            for seed in dict.fromkeys(protocol.seeds):
                rows = [copy for copy, value in enumerate(protocol.seeds) if value == seed]
                pieces.setdefault(seed, []).append(batch.select(rows))
                tasks[seed] = protocol.tasks[rows[0]]
    datasets = {}
    for seed, batches in pieces.items():
        length = max(batch.rewards.shape[1] for batch in batches)

        def joined(name: str, batches: list[MetaEpisodeBatch] = batches,
                   length: int = length) -> np.ndarray:
            arrays = [getattr(batch, name) for batch in batches]
            return np.concatenate([np.pad(array, ((0, 0), (0, length - array.shape[1]),
                                                  (0, 0))) for array in arrays])

        sparse = all(batch.sparse_rewards is not None for batch in batches)
        lengths = np.concatenate([batch.lengths for batch in batches]).astype(np.int64)
        datasets[seed] = TaskDataset(
            observations=joined("observations"), actions=joined("actions"),
            rewards=joined("rewards"), next_observations=joined("next_observations"),
            terminations=joined("terminations"), truncations=joined("truncations"),
            lengths=lengths,
            training_steps=np.full(len(lengths), simulation.training_steps, dtype=np.int64),
            task=np.asarray(tasks[seed], dtype=np.float64),
            meta={**simulation.dataset_meta, "seed": int(seed)},
            sparse_rewards=joined("sparse_rewards") if sparse else None)
    return datasets


def dataset_files(simulation: Simulation, directory: Path, overwrite: bool
                  ) -> dict[Path, TaskDataset]:
    """Every task's rollouts by the file that will hold them, ``directory/task_<seed>.npz``;
    replacing an existing file needs ``overwrite``."""
    files = {task_file(directory, seed): dataset
             for seed, dataset in task_datasets(simulation).items()}
    existing = [path for path in files if path.exists()]
    if existing and not overwrite:
        raise UserError(f"dataset {existing[0]} already exists; pass --overwrite true to replace "
                        "it or choose another --save-dataset folder")
    return files


def video_frames(simulation: Simulation) -> dict[int, tuple[list[np.ndarray], float]]:
    """The frames and playback rate of one video per task of the first protocol (its first
    repeat, every episode): the rendered frames, or where the env has no renderer the animated
    path over the task's layout."""
    protocol, env = simulation.protocols[0], simulation.env
    videos = {}
    for copy, seed in enumerate(protocol.seeds):
        if protocol.repeats[copy] != 0:
            continue
        if simulation.frames.get(seed):
            videos[seed] = (simulation.frames[seed], simulation.frames_per_second)
            continue
        trajectory = protocol.trajectory(copy)
        if env.trajectory_xy(trajectory["observations"][:1]) is None:
            raise UserError(f"env-type {simulation.dataset_meta['env_type']!r} has neither a "
                            "renderer nor a planar layout to animate; --video is not available "
                            "for it")
        videos[seed] = (trajectory_frames(env, protocol.tasks[copy], trajectory["observations"],
                                          trajectory["next_observations"],
                                          trajectory["truncations"], title=f"task seed {seed}"),
                        ANIMATION_FRAMES_PER_SECOND)
    return videos
