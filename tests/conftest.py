"""Test-wide settings: headless plotting and offscreen MuJoCo rendering, quiet progress bars."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMRL_PROGRESS", "0")
