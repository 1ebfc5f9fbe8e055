"""Figures shared by the stages: trajectories over a task's layout, one colour per inner episode.

Functions take the env (anything with ``plot_task(ax, task)`` and ``trajectory_xy(observations)``)
rather than importing environments, so that imports keep flowing one way. Figures are built with
matplotlib's object API (no pyplot, no global backend), so they work headless and in notebooks.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure


def split_episodes(observations: np.ndarray, truncations: np.ndarray, length: int
                   ) -> list[np.ndarray]:
    """Cut one trajectory's valid steps (T, dim) into its inner episodes at truncation marks."""
    ends = np.flatnonzero(np.asarray(truncations).reshape(-1)[:length]) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return [observations[start:end] for start, end in zip(starts, ends, strict=True)]


def trajectory_figure(
    env: Any,
    task: np.ndarray,
    observations: np.ndarray,
    next_observations: np.ndarray,
    truncations: np.ndarray,
    length: int,
    title: str = "",
) -> Any:
    """The task's layout with each inner episode's path (start to final next state) drawn in
    its own colour and labelled ``Episode k``. Arrays are one trajectory: (T, dim)."""
    figure = Figure(figsize=(4.5, 4.0))
    axis = figure.add_subplot()
    env.plot_task(axis, np.asarray(task))
    episodes = split_episodes(np.arange(length), truncations, length)
    colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(episodes), 1)))
    for number, (steps, colour) in enumerate(zip(episodes, colours, strict=True), start=1):
        positions = env.trajectory_xy(
            np.concatenate([observations[steps[:1]], next_observations[steps]])
        )
        if positions is None:
            continue
        axis.plot(positions[:, 0], positions[:, 1], "-o", markersize=2.5, color=colour,
                  label=f"Episode {number}", alpha=0.85)
    if episodes:
        axis.legend(loc="upper right", fontsize=7)
    axis.set_title(title, fontsize=9)
    return figure
