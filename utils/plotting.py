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


def reward_prediction_figure(true_rewards: list[np.ndarray], predicted_rewards: list[np.ndarray],
                             titles: list[str]) -> Any:
    """One panel per trajectory: the true reward of every step and the decoder's prediction from
    the belief held before that step."""
    figure = Figure(figsize=(4.0 * len(true_rewards), 3.0))
    for index, (true, predicted, title) in enumerate(
            zip(true_rewards, predicted_rewards, titles, strict=True)):
        axis = figure.add_subplot(1, len(true_rewards), index + 1)
        axis.plot(true, ".", markersize=3, label="true reward")
        axis.plot(predicted, "-", linewidth=1, label="predicted")
        axis.set_title(title, fontsize=8)
        axis.set_xlabel("step")
    figure.axes[0].legend(fontsize=7)
    return figure


def grid_belief_figure(probabilities: np.ndarray, positions: np.ndarray, goal: np.ndarray,
                       steps: list[int], num_cells: int) -> Any:
    """Gridworld reward beliefs over time: one heat map of p(r = 1 | cell) per chosen step, with
    the agent's position (circle) and the true goal (cross)."""
    figure = Figure(figsize=(2.4 * len(steps), 2.6))
    for index, step in enumerate(steps):
        axis = figure.add_subplot(1, len(steps), index + 1)
        grid = probabilities[index].reshape(num_cells, num_cells)
        axis.imshow(grid, origin="lower", vmin=0.0, vmax=1.0, cmap="viridis")
        axis.plot(*positions[index][:2], "o", color="white", markersize=7)
        axis.plot(*goal[:2], "x", color="red", markersize=9, mew=2)
        axis.set_title(f"t = {step}", fontsize=8)
        axis.set_xticks([])
        axis.set_yticks([])
    return figure


def belief_map_figure(env: Any, task: np.ndarray, maps: np.ndarray, extent: tuple[float, ...],
                      positions: np.ndarray, steps: list[int]) -> Any:
    """The belief over where the reward is, at several steps of a meta-episode: each panel shows
    the expected reward r-hat(z, s') over a grid of planar points (``maps`` (P, ny, nx), extent
    (x0, x1, y0, y1)), the task's layout and the path so far (``positions`` (T + 1, 2))."""
    figure = Figure(figsize=(3.0 * len(steps), 2.6))
    for index, step in enumerate(steps):
        axis = figure.add_subplot(1, len(steps), index + 1)
        axis.imshow(maps[index], origin="lower", extent=extent, cmap="viridis", aspect="auto")
        env.plot_task(axis, task)
        axis.plot(positions[: step + 1, 0], positions[: step + 1, 1], "-", color="white",
                  linewidth=1)
        axis.set_title(f"t = {step}", fontsize=8)
        axis.set_xlim(extent[0], extent[1])
        axis.set_ylim(extent[2], extent[3])
    return figure


def trajectory_frames(env: Any, task: np.ndarray, observations: np.ndarray,
                      next_observations: np.ndarray, truncations: np.ndarray, title: str = "",
                      dots_per_inch: int = 80) -> list[np.ndarray]:
    """An animation of one trajectory's valid steps (T, dim) over the task's layout: frame n
    shows the path up to its n-th position (earlier inner episodes complete, each in its own
    colour) and the current position in red. Returns (H, W, 3) uint8 frames, one per position
    (the start of each inner episode included). The layout is drawn once; each frame only
    redraws the paths (blitting)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    length = len(truncations)
    figure = Figure(figsize=(4.5, 4.0), dpi=dots_per_inch)
    canvas = FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    env.plot_task(axis, np.asarray(task))
    episodes = split_episodes(np.arange(length), truncations, length)
    paths = [env.trajectory_xy(np.concatenate([observations[steps[:1]], next_observations[steps]]))
             for steps in episodes]
    colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(paths), 1)))
    lines = [axis.plot(path[:, 0], path[:, 1], "-o", markersize=2.5, color=colour,
                       label=f"Episode {number}", alpha=0.85, animated=True)[0]
             for number, (path, colour) in enumerate(zip(paths, colours, strict=True), start=1)]
    if lines:
        axis.legend(loc="upper right", fontsize=7)
    axis.set_xlim(axis.get_xlim())  # freeze the limits that fit every complete path
    axis.set_ylim(axis.get_ylim())
    axis.set_title(title, fontsize=9)
    (marker,) = axis.plot([], [], "o", color="tab:red", markersize=7, animated=True)
    caption = axis.text(0.02, 0.02, "", transform=axis.transAxes, fontsize=8, animated=True)
    canvas.draw()
    background = canvas.copy_from_bbox(figure.bbox)
    frames = []
    for episode, path in enumerate(paths):
        for position in range(len(path)):
            canvas.restore_region(background)
            for index, line in enumerate(lines):
                shown = paths[index] if index < episode else (
                    path[: position + 1] if index == episode else paths[index][:0])
                line.set_data(shown[:, 0], shown[:, 1])
                axis.draw_artist(line)
            marker.set_data(path[position : position + 1, 0], path[position : position + 1, 1])
            caption.set_text(f"episode {episode + 1}, step {position}")
            axis.draw_artist(marker)
            axis.draw_artist(caption)
            frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return frames
