"""Wall time of each step of ``reproduce.py --env-type gridworld --preset quick`` (the README's
quick start) on the chosen device.

It runs ``reproduce.main`` from scratch in a temporary folder (stage 1 batched, the VAE with and
without Reward Relabelling, stage 3 on each, FOCAL, the reference policies and the results table)
with its default launcher (the chains after stage 1 side by side in worker processes) and reports
the per-step wall times that ``reproduce.py`` records in ``timings.json``, their sum, and the
total wall time of the command, which includes the reference policies, the table and the figures.
``--quick`` swaps the quick preset for a smoke-sized one.

Run: python -m bench.pipeline [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

import reproduce
from bench.common import Section, device_description, table
from utils.launchers import worker_count
from utils.presets import QUICK_PRESETS, SMOKE_GRIDWORLD
from utils.seeding import keep_freed_memory, resolve_device, wait_for_device
from utils.stage_configs import ReproduceConfig

ENV_TYPE = "gridworld"


def reproduce_timings(directory: Path, device: torch.device, quick: bool
                      ) -> tuple[dict[str, float], float]:
    """Run the gridworld quick start in ``directory``; returns the wall seconds of each step (as
    ``reproduce.py`` recorded them) and of the whole command."""
    config = ReproduceConfig(
        env_type=ENV_TYPE, preset="quick", device=device.type, runs_dir=str(directory / "runs"),
        data_dir=str(directory / "data"), results_dir=str(directory / "results"),
        use_tensorboard=False)
    presets = {**QUICK_PRESETS, ENV_TYPE: SMOKE_GRIDWORLD} if quick else QUICK_PRESETS
    with mock.patch.dict(QUICK_PRESETS, presets), mock.patch("builtins.print"):
        wait_for_device(device)
        started = time.perf_counter()
        results = reproduce.main(config)
        wait_for_device(device)
        total = time.perf_counter() - started
    return json.loads((results / "timings.json").read_text()), total


def run(quick: bool, device: torch.device) -> Section:
    """Per-step wall time of the gridworld quick start in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as directory:
        steps, total = reproduce_timings(Path(directory), device, quick)
    rows = [[name, f"{seconds:,.1f}"] for name, seconds in steps.items()]
    rows.append(["sum of the steps (one after another)", f"{sum(steps.values()):,.1f}"])
    rows.append(["total", f"{total:,.1f}"])
    lines = [
        f"`python -m bench.pipeline`: `python reproduce.py --env-type {ENV_TYPE} --preset quick` "
        f"(the README's quick start) from scratch on {device.type}, run once; the steps' wall "
        "times are the ones `reproduce.py` writes to `results/gridworld/timings.json`. After "
        "stage 1, the chains of steps (each VAE then its stage 3; FOCAL) run side by side in "
        f"{worker_count(ReproduceConfig())} worker processes (`--launcher processes`, the "
        "default), so the total, which also covers the reference policies, the table and the "
        "figures, is below the sum of the steps.", "",
        *table(["step", "wall seconds"], rows),
    ]
    return Section("Gridworld quick start: wall time per stage", lines,
                   {"gridworld quick start (reproduce.py), total": f"{total / 60:,.1f} min"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    arguments = parser.parse_args()
    keep_freed_memory()
    device = resolve_device(arguments.device)
    print(device_description(device))
    print(run(arguments.quick, device).markdown())


if __name__ == "__main__":
    main()
