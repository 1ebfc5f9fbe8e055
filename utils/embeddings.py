"""Task-embedding statistics and plots: FOCAL's RMS and ESR (Table 1), and a 2-D projection.

Given the mean embedding mu_i (L,) of each of n tasks (averaged over many contexts of the task):

    RMS = mean_l std_i(mu_il) * sqrt(2n / (n - 1))       (population std over the tasks)
        = mean_l sqrt(mean_{i != j} (mu_il - mu_jl)^2),

the root-mean-square distance between two tasks' embeddings along one dimension, and

    ESR = fraction of pairs i < j with mean_l (mu_il - mu_jl)^2 > 2/3,

the "effective separation rate" (spec focal.md 6.2, ``task_dist_avg`` of generate_plot.py).
Figures use matplotlib's object API (no pyplot), like :mod:`utils.plotting`.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

SEPARATION_THRESHOLD = 2.0 / 3.0


def embedding_rms(task_means: np.ndarray) -> float:
    """RMS spread of task means (n, L): mean over dims of std over tasks, times sqrt(2n/(n-1))."""
    count = task_means.shape[0]
    if count < 2:
        return 0.0
    return float(task_means.std(axis=0).mean() * np.sqrt(2.0 * count / (count - 1)))


def embedding_esr(task_means: np.ndarray) -> float:
    """Fraction of task pairs whose mean squared per-dimension difference exceeds 2/3."""
    count = task_means.shape[0]
    if count < 2:
        return 0.0
    differences = ((task_means[:, None, :] - task_means[None, :, :]) ** 2).mean(axis=-1)
    upper = np.triu_indices(count, k=1)
    return float((differences[upper] > SEPARATION_THRESHOLD).mean())


def principal_components(points: np.ndarray, count: int = 2) -> np.ndarray:
    """Project points (M, L) onto their first ``count`` principal components: (M, count)."""
    centred = points - points.mean(axis=0, keepdims=True)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ directions[:count].T
    if projected.shape[1] < count:
        projected = np.pad(projected, ((0, 0), (0, count - projected.shape[1])))
    return projected


def task_colour_values(tasks: np.ndarray) -> tuple[np.ndarray, str]:
    """One number per task (n, task_dim) to colour by, and its name: the parameter itself for a
    1-D task, the angle of a 2-D task (goal or direction), else the tasks' first principal
    component."""
    tasks = np.asarray(tasks, dtype=np.float64)
    if tasks.shape[1] == 1:
        return tasks[:, 0], "task parameter"
    if tasks.shape[1] == 2:
        return np.arctan2(tasks[:, 1], tasks[:, 0]), "task angle (rad)"
    return principal_components(tasks, 1)[:, 0], "task parameters, 1st principal component"


def embedding_figure(latents: np.ndarray, tasks: np.ndarray, is_train: np.ndarray,
                     title: str = "") -> Figure:
    """Embeddings latents (n, C, L) of C contexts per task, projected on their first two
    principal components and coloured by the task parameter; training tasks as dots, held-out
    tasks as triangles."""
    count, contexts, size = latents.shape
    projected = principal_components(latents.reshape(-1, size)).reshape(count, contexts, 2)
    colours, label = task_colour_values(tasks)
    figure = Figure(figsize=(5.0, 4.0))
    axis = figure.add_subplot()
    normalise = matplotlib.colors.Normalize(vmin=colours.min(), vmax=colours.max() + 1e-12)
    for mask, marker, name in ((is_train, "o", "train tasks"), (~is_train, "^", "held-out tasks")):
        if not mask.any():
            continue
        points = projected[mask].reshape(-1, 2)
        values = np.repeat(colours[mask], contexts)
        scatter = axis.scatter(points[:, 0], points[:, 1], c=values, cmap="viridis",
                               norm=normalise, marker=marker, s=10, alpha=0.8, label=name)
    figure.colorbar(scatter, ax=axis, label=label)
    axis.set_xlabel("principal component 1")
    axis.set_ylabel("principal component 2")
    axis.legend(loc="best", fontsize=7)
    axis.set_title(title, fontsize=9)
    return figure
