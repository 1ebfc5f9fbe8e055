"""Test-wide settings: headless plotting, offscreen MuJoCo rendering, quiet progress bars, and
one PyTorch thread; the session fixture with every stage's inputs for the fault tests."""

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMRL_PROGRESS", "0")

import torch

torch.set_num_threads(1)  # as the scripts do by default (--torch-threads 1)


@pytest.fixture(scope="session")
def stage_inputs(tmp_path_factory):
    """Working directories with each stage's inputs (see tests.faults.make_stage_inputs)."""
    from tests.faults import make_stage_inputs

    return make_stage_inputs(tmp_path_factory.mktemp("stage_inputs"))
