"""Test-wide settings: headless plotting, offscreen MuJoCo rendering, quiet progress bars, and
one PyTorch thread."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMRL_PROGRESS", "0")

import torch

torch.set_num_threads(1)  # as the scripts do by default (--torch-threads 1)
