"""Seeding of every random source, the ``--device auto|cpu|cuda`` choice, CPU threads, and the
C allocator's reuse of freed memory."""

from __future__ import annotations

import ctypes
import os
import platform
import random
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from utils.errors import UserError

CANDIDATES_PER_TASK = 1000
"""How many candidate seeds per wanted evaluation task are tried before giving up."""


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and PyTorch; return a NumPy generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def torch_random_state(device: torch.device) -> dict[str, torch.Tensor]:
    """PyTorch's global random state for a checkpoint: the CPU generator's, and the device's
    when it is a GPU."""
    state = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


OTHER_DEVICE_TYPE = ("the checkpoint was written by a run on another device type (CPU or GPU); "
                     "a run resumes only on the device type it started on: resume with the "
                     "--device it started with")


def restore_torch_random_state(checkpoint: dict, device: torch.device) -> None:
    """Set PyTorch's global random state from a checkpoint written with
    :func:`torch_random_state`. The states are moved to the CPU first: a checkpoint loaded with
    ``map_location`` a GPU holds them there, and PyTorch takes them only from host memory. A
    checkpoint written on a GPU does not resume on the CPU (UserError)."""
    if ("cuda_rng" in checkpoint) != (device.type == "cuda"):
        raise UserError(OTHER_DEVICE_TYPE)
    torch.set_rng_state(checkpoint["torch_rng"].cpu())
    if "cuda_rng" in checkpoint:
        torch.cuda.set_rng_state(checkpoint["cuda_rng"].cpu(), device)


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> None:
    """Set ``generator`` to ``state``, saved from a generator of the same device type. CPU and
    CUDA generators keep states of different sizes, so a state from the other device type (a run
    resumed on another device than it started on) is refused with a UserError."""
    current = generator.get_state()
    if state.numel() != current.numel():
        raise UserError(OTHER_DEVICE_TYPE)
    generator.set_state(state.to(current.device))


def usable_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_torch_threads(num_threads: int) -> None:
    """Use ``num_threads`` CPU threads for PyTorch's operators (0 keeps PyTorch's default)."""
    if num_threads < 0:
        raise UserError(f"--torch-threads must be 0 or positive, got {num_threads}")
    if num_threads:
        torch.set_num_threads(num_threads)


MALLOPT_TRIM_THRESHOLD, MALLOPT_MMAP_THRESHOLD = -1, -3
REUSED_BLOCK_LIMIT = 1 << 30


def keep_freed_memory() -> bool:
    """Let glibc's allocator keep freed blocks for reuse instead of returning them to the system.

    PyTorch on a CPU allocates every activation and gradient of a step afresh and frees it after
    the step. By default glibc serves large blocks with new pages from the kernel and trims the
    heap, so every step pays page faults and zeroing for the same memory again. Raising the mmap
    and trim thresholds to 1 GiB keeps those blocks in the heap: measured here, a 16-task SAC
    update needs about 10x fewer page faults and a VAE step of the semi-circle about half the CPU
    time (bench/results.md). The price: the process keeps its peak memory (and some
    fragmentation) until it exits, about 1.5x the peak of the VAE stage. The scripts call this
    unless ``--reuse-freed-memory false``. Returns False where it does not apply (no glibc).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(MALLOPT_MMAP_THRESHOLD, REUSED_BLOCK_LIMIT)
                and libc.mallopt(MALLOPT_TRIM_THRESHOLD, REUSED_BLOCK_LIMIT))


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when present, else CPU. ``cuda`` without a GPU is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def wait_for_device(device: torch.device) -> None:
    """Return once the work queued on ``device`` is done (at once on a CPU), so that a timer read
    afterwards counts it: updates return device tensors and never wait by themselves."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluation_seeds(train_seeds: list[int], count: int, seed: int,
                     task_of_seed: Callable[[int], np.ndarray] | None = None,
                     train_tasks: np.ndarray | None = None) -> list[int]:
    """Seeds of BOReL's evaluation tasks for a run with seed ``seed``: 10^6 (seed + 1) + i,
    skipping any training seed. The list for ``count`` is a prefix of the list for more.

    With ``task_of_seed`` (and the training tasks), a candidate is also skipped when its task
    equals a training task or an already chosen evaluation task, so the held-out tasks are new
    even in a finite task family (the gridworld's 21 goals)."""
    seeds, candidate = [], 1_000_000 * (seed + 1)
    seen = [] if train_tasks is None else [np.asarray(task) for task in train_tasks]
    last = candidate + CANDIDATES_PER_TASK * max(count, 1)
    while len(seeds) < count:
        if task_of_seed is not None and candidate >= last:
            raise UserError(f"cannot find {count} evaluation tasks that differ from the "
                            f"{len(train_seeds)} training tasks and from each other; the task "
                            "family is too small (lower --num-train-tasks or --num-eval-tasks)")
        if candidate not in train_seeds:
            if task_of_seed is None:
                seeds.append(candidate)
            else:
                task = task_of_seed(candidate)
                if not any(np.array_equal(task, other) for other in seen):
                    seeds.append(candidate)
                    seen.append(task)
        candidate += 1
    return seeds


def parse_seeds(text: str) -> list[int]:
    """``'0-39'``, ``'1,5,9'`` or ``'0-3,8'`` -> the listed seeds in order, each once."""
    seeds: list[int] = []
    for part in (piece.strip() for piece in str(text).split(",")):
        try:
            if "-" in part[1:]:
                first, last = part.split("-", 1) if not part.startswith("-") else (part, "")
                low, high = int(first), int(last)
                if high < low:
                    raise ValueError
                seeds.extend(range(low, high + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise UserError(
                f"--seeds {text!r} is not a list of seeds such as '0-39' or '1,5,9'"
            ) from None
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} names a seed twice")
    return seeds


def seed_label(seeds: list[int]) -> str:
    """A short name for a seed list: '73', '0-39' for a range, else '1,5,9'."""
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(seed) for seed in seeds)


class ProcessSettings(Protocol):
    """The fields of every stage config that set up the process."""

    device: str
    torch_threads: int
    reuse_freed_memory: bool
    seed: int


def prepare_process(config: ProcessSettings) -> torch.device:
    """What every stage script does first: choose the device, set PyTorch's CPU threads, let
    glibc keep freed memory (unless ``--reuse-freed-memory false``) and seed every random source.
    Returns the device."""
    device = resolve_device(config.device)
    set_torch_threads(config.torch_threads)
    if config.reuse_freed_memory:
        keep_freed_memory()
    seed_everything(config.seed)
    return device
