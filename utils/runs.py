"""Run directories: ``runs/<stage>/<env-type>/<exp-name>_s<seed>/``.

Each holds ``config.yaml`` (the resolved config), ``meta.json`` (code version, argv, library
versions, device), ``scalars.csv`` and TensorBoard events (see :mod:`utils.logger`),
``checkpoints/`` (``latest.pt`` plus one file every save interval, all written atomically) and
``figures/``. An existing run is an error unless ``--resume true`` (continue from ``latest.pt``) or
``--overwrite true`` (start again). Later stages name earlier runs by path or by exp-name.
"""

from __future__ import annotations

import io
import json
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from utils.config import save_config
from utils.errors import UserError, closest_names
from utils.io import (
    atomic_write_bytes,
    atomic_write_text,
    remove_stale_temporaries,
    write_error,
)

CHECKPOINT_DIR = "checkpoints"
FIGURE_DIR = "figures"
LATEST = "latest.pt"
LIBRARIES = ("torch", "numpy", "gymnasium", "mujoco", "metaworld")


def code_version() -> str:
    """The git commit of the code (with ``-dirty`` for local changes), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_path(runs_dir: str | Path, stage: str, env_type: str, exp_name: str, seed: int | str
             ) -> Path:
    return Path(runs_dir) / stage / env_type / f"{exp_name}_s{seed}"


def check_resume_device(run: RunDirectory, device: str) -> None:
    """A run with a checkpoint resumes only on the device type it started on (its random
    streams are the CPU's or the GPU's): refused before anything in the run is rewritten."""
    meta_path, latest = run.path / "meta.json", run.checkpoint_dir / LATEST
    if not (meta_path.is_file() and latest.is_file()):
        return
    try:
        started = json.loads(meta_path.read_text()).get("device")
    except (OSError, ValueError):
        return  # an unreadable meta.json is rewritten below; the checkpoint check remains
    if started and torch.device(started).type != torch.device(device).type:
        raise UserError(f"run {run.path} was started on {started} and resumes only on the same "
                        f"device type: pass --device {torch.device(started).type}")


@dataclass
class RunDirectory:
    """An existing run directory with its checkpoint and figure folders."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def figure_dir(self) -> Path:
        return self.path / FIGURE_DIR

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @classmethod
    def create(
        cls,
        path: Path,
        config: Any,
        resume: bool,
        overwrite: bool,
        device: str,
        argv: list[str] | None = None,
    ) -> RunDirectory:
        """Prepare ``path`` for a run: new, resumed (``resume``) or restarted (``overwrite``).

        Resuming a run that does not exist yet starts it fresh, so ``--resume true`` is safe to
        pass to every invocation of a long job.
        """
        path = Path(path)
        if resume and overwrite:
            raise UserError("--resume true and --overwrite true contradict each other; pick one")
        exists = (path / "config.yaml").is_file()
        if exists and overwrite:
            shutil.rmtree(path)
        elif exists and not resume:
            raise UserError(
                f"run directory {path} already exists; pass --resume true to continue it or "
                "--overwrite true to start again"
            )
        run = cls(path)
        if exists and resume:
            check_resume_device(run, device)
        if exists:
            remove_stale_temporaries(path)  # left by a write that a kill interrupted
        created = not path.exists()
        try:
            run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            run.figure_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run.config_path)
            meta = {
                "code_version": code_version(),
                "argv": list(sys.argv if argv is None else argv),
                "libraries": library_versions(),
                "device": device,
                "resumed": bool(exists and resume),
            }
            run.write_json("meta.json", meta)
        except (OSError, UserError) as error:
            if created:  # leave nothing half-made behind
                shutil.rmtree(path, ignore_errors=True)
            if isinstance(error, OSError):
                raise write_error(path, error) from None
            raise
        return run

    def write_json(self, name: str, content: dict[str, Any]) -> None:
        atomic_write_text(self.path / name, json.dumps(content, indent=2, sort_keys=True) + "\n")

    def read_json(self, name: str) -> dict[str, Any]:
        """The JSON object ``name`` of this run; missing or malformed files raise UserError."""
        path = self.path / name
        try:
            content = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"run {self.path} has no {name} (was it stopped before writing "
                            "it?)") from None
        except (OSError, ValueError, RecursionError) as error:
            raise UserError(f"{path} cannot be read: {error}".splitlines()[0]) from None
        if not isinstance(content, dict):
            raise UserError(f"{path} must hold a JSON object")
        return content

    def save_checkpoint(self, state: dict[str, Any], step: int, keep: bool,
                        latest_only: dict[str, Any] | None = None) -> Path:
        """Write ``state`` to ``checkpoints/latest.pt`` (and ``step_<step>.pt`` if ``keep``).

        ``latest_only`` entries (large resume state such as replay buffers) go to ``latest.pt``
        alone; the kept file is written first, so ``latest.pt`` is always complete. ``state``
        must hold only tensors, numbers, strings, lists and dicts, so that it loads with
        ``weights_only=True``.
        """
        def serialised(content: dict[str, Any]) -> bytes:
            buffer = io.BytesIO()
            torch.save({"step": step, **content}, buffer)
            return buffer.getvalue()

        data = serialised(state)
        if keep:
            atomic_write_bytes(self.checkpoint_dir / f"step_{step}.pt", data)
        latest = self.checkpoint_dir / LATEST
        atomic_write_bytes(latest, serialised({**state, **latest_only}) if latest_only else data)
        return latest

    def load_checkpoint(self, name: str = LATEST, map_location: str | torch.device = "cpu"
                        ) -> dict[str, Any] | None:
        """The checkpoint ``name`` (None if absent), loaded with ``weights_only=True``."""
        path = self.checkpoint_dir / name
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as error:  # torch raises many types for corrupt or unsafe files
            raise UserError(f"checkpoint {path} cannot be loaded: {error}".splitlines()[0]
                            ) from None

    def checkpoint_steps(self) -> list[int]:
        """Steps of the kept checkpoints, ascending (numeric, not lexicographic)."""
        steps = []
        for path in self.checkpoint_dir.glob("step_*.pt"):
            suffix = path.stem.removeprefix("step_")
            if suffix.isdigit():
                steps.append(int(suffix))
        return sorted(steps)


def find_run(reference: str, runs_dir: str | Path, stage: str, env_type: str) -> RunDirectory:
    """An earlier run named by path or by ``<exp-name>`` / ``<exp-name>_s<seed>``."""
    candidate = Path(reference)
    if (candidate / "config.yaml").is_file():
        return RunDirectory(candidate)
    stage_dir = Path(runs_dir) / stage / env_type
    for name in (reference, *(path.name for path in sorted(stage_dir.glob(f"{reference}_s*")))):
        if (stage_dir / name / "config.yaml").is_file():
            return RunDirectory(stage_dir / name)
    available = sorted(path.name for path in stage_dir.glob("*") if path.is_dir())
    raise UserError(
        f"no {stage} run {reference!r} for env-type {env_type!r} (looked in {stage_dir}/ and at "
        f"the path itself){closest_names(reference, available)}; available: "
        f"{', '.join(available) or 'none'}"
    )
