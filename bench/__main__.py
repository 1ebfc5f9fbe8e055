"""Run every benchmark in one go and write ``bench/results.md`` with the device named.

    python -m bench                 # the full suite (tens of minutes on a 2-core CPU)
    python -m bench --quick         # a smoke run of every benchmark at tiny sizes
    python -m bench --only stage1 offline_sac --output /tmp/results.md

Sections, in order: stage-1 batched vs sequential collection, the VAE loss vectorised vs loops,
our MuJoCo step vs raw gymnasium, batched toy envs vs a loop of gymnasium envs, offline SAC vs
d3rlpy (needs ``pip install -r bench/requirements.txt``; reported as ours alone without it), FOCAL
updates per second, the gridworld quick start's wall time per stage, and the stage windows' hot
spots before and after the speed work. Every figure is measured in this run; ratios come from
alternating repeats.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench import (
    env_step,
    focal_updates,
    hotspots,
    offline_sac,
    pipeline,
    stage1_collection,
    toy_env_step,
    vae_loss,
)
from bench.common import Section, device_description
from utils.errors import UserError, run_script
from utils.io import atomic_write_text
from utils.seeding import keep_freed_memory, resolve_device, set_torch_threads

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.md"
BENCHMARKS: dict[str, Callable[[bool, torch.device], Section]] = {
    "stage1": stage1_collection.run,
    "vae_loss": vae_loss.run,
    "env_step": env_step.run,
    "toy_env_step": toy_env_step.run,
    "offline_sac": offline_sac.run,
    "focal": focal_updates.run,
    "pipeline": pipeline.run,
    "hotspots": lambda quick, device: hotspots.run(quick),
}


def render(sections: list[Section], device: torch.device, quick: bool, seconds: float) -> str:
    """The whole results file: device, headline figures, then every section."""
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench{' --quick' if quick else ''}` on "
        f"{time.strftime('%Y-%m-%d')} in {seconds / 60:.1f} minutes.",
        "",
        f"- Device: {device_description(device)}.",
        f"- Python {platform.python_version()} on {platform.system()} "
        f"{platform.release()}.",
        "- Ratios come from alternating repeats in one process (medians), so a busy machine "
        "slows both sides alike; the CPU-time ratio beside a wall-clock one is the same "
        "comparison by the process's CPU time.",
    ]
    if quick:
        lines.append("- **Smoke run (`--quick`): tiny sizes, the figures mean nothing.**")
    lines += ["", "## Headline figures", ""]
    for section in sections:
        lines += [f"- {name}: **{value}**" for name, value in section.headlines.items()]
    lines.append("")
    return "\n".join(lines + [section.markdown() for section in sections])


def main() -> Path:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run at tiny sizes")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None,
                        help="run these benchmarks only")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="the markdown file to write (default bench/results.md)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="CPU threads of PyTorch, as the scripts' --torch-threads")
    arguments = parser.parse_args()
    device = resolve_device(arguments.device)
    set_torch_threads(arguments.torch_threads)
    keep_freed_memory()
    if arguments.output.is_dir():
        raise UserError(f"--output {arguments.output} is a folder; give a file name")
    started = time.perf_counter()
    sections = []
    for name in arguments.only or list(BENCHMARKS):
        print(f"running {name} ...", flush=True)
        sections.append(BENCHMARKS[name](arguments.quick, device))
    text = render(sections, device, arguments.quick, time.perf_counter() - started)
    atomic_write_text(arguments.output, text)
    print(f"wrote {arguments.output}")
    return arguments.output


if __name__ == "__main__":
    run_script(main)
