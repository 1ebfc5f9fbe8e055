"""Writing rendered trajectories to GIF and PNG files for the figures.

Frames come from ``env.render_frames(index)``, one (height, width, 3) uint8 image per step::

    frames = []
    for actions in action_sequence:
        env.step(actions)
        frames.append(env.render_frames(0))
    write_frames(frames, run_dir / "figures" / "rollout.gif")

Rendering is offscreen; on a machine without a display it needs ``MUJOCO_GL=egl`` (or ``osmesa``)
set before MuJoCo is imported (``environments.mujoco.base`` sets ``egl`` by default on Linux).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as imageio
import numpy as np

FORMATS = (".gif", ".png")


def film_strip(frames: Sequence[np.ndarray], num_frames: int = 8) -> np.ndarray:
    """``num_frames`` evenly spaced frames (first and last included) side by side, (H, n W, 3)."""
    if not frames:
        raise ValueError("no frames to write")
    indices = np.unique(np.linspace(0, len(frames) - 1, num=min(num_frames, len(frames))).round())
    return np.concatenate([np.asarray(frames[int(index)]) for index in indices], axis=1)


def write_frames(
    frames: Sequence[np.ndarray],
    path: str | Path,
    frames_per_second: float = 20.0,
    strip_frames: int = 8,
) -> Path:
    """Write frames of shape (H, W, 3) uint8 to ``path`` and return it.

    ``.gif``: an animation at ``frames_per_second`` that loops forever. ``.png``: one image, the
    film strip of ``strip_frames`` evenly spaced frames. The file is written to a temporary name
    and renamed, so a reader never sees half a file; missing folders are created.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot write frames to {path}: the suffix must be one of {FORMATS}")
    if not frames:
        raise ValueError("no frames to write")
    images = [np.asarray(frame) for frame in frames]
    for image in images:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"frames must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(suffix=suffix, dir=path.parent)
    os.close(descriptor)
    try:
        if suffix == ".gif":
            imageio.imwrite(
                temporary, np.stack(images), duration=1000.0 / frames_per_second, loop=0
            )
        else:
            imageio.imwrite(temporary, film_strip(images, strip_frames))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
