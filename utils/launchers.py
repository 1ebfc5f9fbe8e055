"""Launchers: run a script's seed groups in this process, or as Ray tasks on a cluster.

A *seed group* is the list of seeds that one call of a script's group function handles: a batched
stage-1 collection of several tasks, or one seed's FOCAL run. :func:`launch` runs every group with
the launcher that ``--launcher`` names (the fields of :class:`utils.stage_configs.LauncherConfig`):

- ``local``: the groups run one after another in this process.
- ``processes``: up to ``--workers`` groups run at once, each in a fresh process on this machine
  (started with ``spawn``, so it works the same on Linux and macOS and with CUDA). This is how a
  machine's cores are used well: PyTorch's threads speed up the small matrix products of RL
  networks little, while independent processes, one per core, run side by side.
- ``ray``: each group is one Ray task that reserves ``--ray-num-cpus`` CPUs and ``--ray-num-gpus``
  GPUs, on the cluster at ``--ray-address`` or on a local Ray instance started for the job. A task
  whose worker process or node dies is run again, up to ``--max-retries`` times. Tasks run in the
  driver's working directory, so relative ``data/`` and ``runs/`` paths must lie on storage that
  every node mounts at the same path.

Before anything runs, the groups' outputs (:class:`GroupOutputs`: the run directory and the
per-task files each group writes) are checked: no path may belong to two groups, so concurrent
tasks never write the same file, and outputs that exist already need ``--resume true`` or
``--overwrite true``. On Ray, ``--overwrite`` deletes them on the driver and every task then runs
with ``resume=True``: a retried task continues from the checkpoint and datasets that its failed
attempt saved instead of starting again, and a group that finished is never run twice. On either
launcher that runs groups elsewhere, a group's failure does not stop the others: the failures are
reported together once every group has ended.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TypeVar

from utils.errors import UserError
from utils.progress import progress
from utils.seeding import seed_label, usable_cores

ConfigType = TypeVar("ConfigType")
ResultType = TypeVar("ResultType")
GroupFunction = Callable[[ConfigType, list[int]], ResultType]
RUN_MARKER = "config.yaml"


@dataclass(frozen=True)
class GroupOutputs:
    """What one seed group writes: its run directory and its per-task files (datasets)."""

    run_directory: Path
    files: tuple[Path, ...] = ()

    def paths(self) -> tuple[Path, ...]:
        return (Path(self.run_directory), *(Path(path) for path in self.files))

    def existing(self) -> list[Path]:
        """The outputs present on disk (a run directory counts once it holds its config)."""
        run_directory = Path(self.run_directory)
        found = [run_directory] if (run_directory / RUN_MARKER).is_file() else []
        return found + [Path(path) for path in self.files if Path(path).exists()]

    def remove(self) -> None:
        shutil.rmtree(self.run_directory, ignore_errors=True)
        for path in self.files:
            Path(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class DriverContext:
    """What a Ray task takes over from the driver: its working directory and command line."""

    working_directory: str
    argv: tuple[str, ...]


class LaunchError(RuntimeError):
    """Some seed groups failed (Ray tasks after their retries, or worker processes); the groups
    that finished are saved."""


def split_seeds(seeds: Sequence[int], seeds_per_group: int | None) -> list[list[int]]:
    """``seeds`` in consecutive groups of ``seeds_per_group`` (None: one group of all seeds)."""
    if seeds_per_group is None:
        return [list(seeds)]
    if seeds_per_group < 1:
        raise UserError(f"--seeds-per-task must be at least 1, got {seeds_per_group}")
    return [list(seeds[start:start + seeds_per_group])
            for start in range(0, len(seeds), seeds_per_group)]


def worker_count(config: Any) -> int:
    """How many seed groups ``--launcher processes`` runs at once: ``--workers``, or one per
    usable CPU core when it is 0."""
    if config.workers < 0:
        raise UserError(f"--workers must be 0 (one per CPU core) or positive, got "
                        f"{config.workers}")
    return config.workers or usable_cores()


def import_ray() -> ModuleType:
    """The ``ray`` module, or a UserError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--launcher ray needs the ray package, which is not installed: "
                        "pip install -r requirements-ray.txt") from None
    return ray


def check_launcher_options(config: Any) -> None:
    """Reject launcher settings that cannot work, before anything starts."""
    if config.ray_num_cpus < 0 or config.ray_num_gpus < 0:
        raise UserError("--ray-num-cpus and --ray-num-gpus must be 0 or positive, got "
                        f"{config.ray_num_cpus} and {config.ray_num_gpus}")
    worker_count(config)
    if config.max_retries < 0:
        raise UserError(f"--max-retries must be 0 or positive, got {config.max_retries}")
    if config.launcher == "ray" and config.device == "cuda" and config.ray_num_gpus == 0:
        raise UserError("--device cuda with --launcher ray needs --ray-num-gpus above 0: Ray "
                        "hides the GPUs from tasks that reserve none")
    if config.resume and config.overwrite:
        raise UserError("--resume true and --overwrite true contradict each other; pick one")


def claim_outputs(config: Any, outputs: list[GroupOutputs]) -> None:
    """Check that no path belongs to two groups and that existing outputs may be reused or
    replaced (``--resume`` / ``--overwrite``); raise a UserError naming the first conflict."""
    owners: dict[Path, int] = {}
    for index, group_outputs in enumerate(outputs):
        for path in group_outputs.paths():
            resolved = path.resolve()
            if resolved in owners and owners[resolved] != index:
                raise UserError(f"{path} would be written by two seed groups; give every group "
                                "its own seeds")
            owners[resolved] = index
    if config.resume or config.overwrite:
        return
    for group_outputs in outputs:
        existing = group_outputs.existing()
        if existing:
            raise UserError(f"{existing[0]} already exists; pass --resume true to continue or "
                            "--overwrite true to start again")


def launch(
    run_group: GroupFunction,
    config: ConfigType,
    groups: list[list[int]],
    outputs: Callable[[ConfigType, list[int]], GroupOutputs] | None = None,
    labels: list[str] | None = None,
) -> list[ResultType]:
    """``run_group(config, group)`` for every seed group, with the launcher ``config`` names.

    ``config`` holds the fields of ``LauncherConfig`` and ``CommonConfig`` (``device``,
    ``resume``, ``overwrite``). ``outputs(config, group)`` names what a group writes; without it
    ``run_group`` must itself be safe to call again after a crash (it is, on Ray, when a worker
    dies). ``labels`` name the groups in failure reports (default: ``seeds <group>``). Returns
    the results in the order of ``groups``. On Ray, ``run_group`` and ``config``
    are pickled to the workers (a script's own functions by value, others by module name).
    """
    check_launcher_options(config)
    ray = import_ray() if config.launcher == "ray" else None
    group_outputs = [outputs(config, group) for group in groups] if outputs is not None else []
    claim_outputs(config, group_outputs)
    labels = labels or [f"seeds {seed_label(group)}" for group in groups]
    if config.launcher == "processes":
        return run_in_processes(run_group, config, groups, labels)
    if ray is None:
        return [run_group(config, group) for group in groups]
    return run_on_ray(ray, run_group, config, groups, group_outputs, labels)


def run_in_processes(run_group: GroupFunction, config: Any, groups: list[list[int]],
                     labels: list[str]) -> list[Any]:
    """Every group in a fresh worker process of its own, up to ``--workers`` at once (the next
    group starts when one ends); wait for all of them, then report the failures together. A
    worker that dies (killed, out of memory) fails its own group only. On an interrupt no further
    group starts, and the running ones, which receive the same Ctrl-C, are waited for.
    ``run_group`` must be importable by name (a module-level function of the script or of a
    module, or a ``functools.partial`` of one), as ``spawn`` pickles it so."""
    workers = min(worker_count(config), len(groups))
    context = multiprocessing.get_context("spawn")
    results: list[Any] = [None] * len(groups)
    failures: list[tuple[int, BaseException]] = []
    waiting = list(enumerate(groups))
    running: dict[Future, tuple[int, ProcessPoolExecutor]] = {}
    bar = progress(None, total=len(groups),
                   description=f"{len(groups)} task(s) in {workers} worker process(es)")
    try:
        while waiting or running:
            while waiting and len(running) < workers:
                index, group = waiting.pop(0)
                executor = ProcessPoolExecutor(max_workers=1, mp_context=context,
                                               initializer=silence_progress)
                running[executor.submit(run_group, config, group)] = (index, executor)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, executor = running.pop(future)
                executor.shutdown()
                try:
                    results[index] = future.result()
                except Exception as error:  # reported with the others below
                    failures.append((index, error))
                bar.update(1)
    finally:
        for _, executor in running.values():
            executor.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if failures:
        raise_failures(failures, labels, "worker process(es)")
    return results


def silence_progress() -> None:
    """Worker processes show no progress bar of their own (the driver shows one over the
    groups)."""
    os.environ["OMRL_PROGRESS"] = "0"


def check_reachable(address: str, timeout_seconds: float = 10.0) -> None:
    """Fail fast when the head node at ``host:port`` does not answer (Ray itself keeps retrying
    for minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address must be auto or host:port, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_seconds).close()
    except OSError as error:
        raise UserError(f"cannot reach the Ray head node at --ray-address {address}: "
                        f"{error.strerror or error}") from None


def connect(ray: ModuleType, address: str | None) -> bool:
    """Join the Ray cluster at ``address`` (else at ``RAY_ADDRESS`` if set), or start a local
    instance; returns whether this call connected (False when already connected)."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"address": address, "logging_level": "WARNING"}
    if address is not None:
        check_reachable(address)
    elif not os.environ.get("RAY_ADDRESS"):
        options["include_dashboard"] = False
    try:
        ray.init(**options)
    except ConnectionError as error:
        raise UserError(f"cannot join the Ray cluster at --ray-address {address}: "
                        f"{error}".splitlines()[0]) from None
    return True


def run_on_ray(ray: ModuleType, run_group: GroupFunction, config: Any, groups: list[list[int]],
               group_outputs: list[GroupOutputs], labels: list[str]) -> list[Any]:
    """One Ray task per group; wait for all of them, then report the failures together. With
    ``group_outputs``, ``--overwrite`` deletes them here and every task runs with resume=True."""
    connected = connect(ray, config.ray_address)
    try:
        available = ray.cluster_resources()
        for name, wanted in (("CPU", config.ray_num_cpus), ("GPU", config.ray_num_gpus)):
            if wanted > available.get(name, 0.0):
                raise UserError(f"each task asks for {wanted:g} {name}(s) but the Ray cluster "
                                f"has {available.get(name, 0.0):g}; lower --ray-num-"
                                f"{name.lower()}s or add nodes")
        if group_outputs:
            if config.overwrite:
                for outputs in group_outputs:
                    outputs.remove()
            config = dataclasses.replace(config, resume=True, overwrite=False)
        task = ray.remote(run_in_worker).options(
            num_cpus=config.ray_num_cpus, num_gpus=config.ray_num_gpus,
            max_retries=config.max_retries, retry_exceptions=False)
        context = DriverContext(os.getcwd(), tuple(sys.argv))
        pending = {task.remote(run_group, config, group, context): index
                   for index, group in enumerate(groups)}
        results: list[Any] = [None] * len(groups)
        failures: list[tuple[int, Exception]] = []
        bar = progress(None, total=len(groups), description=f"ray: {len(groups)} task(s)")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for reference in done:
                index = pending.pop(reference)
                try:
                    results[index] = ray.get(reference)
                except ray.exceptions.RayError as error:
                    failures.append((index, error))
                bar.update(1)
        bar.close()
    finally:
        if connected:
            ray.shutdown()
    if failures:
        raise_failures(failures, labels, "Ray task(s)", " after their retries")
    return results


def raise_failures(failures: list[tuple[int, BaseException]], labels: list[str], runners: str,
                   after: str = "") -> NoReturn:
    """A UserError for the first group stopped by bad input (raised in the group, or carried as
    the ``cause`` of a Ray error), else a LaunchError for them all; ``labels`` name the groups,
    ``runners`` what ran them ("Ray task(s)") and ``after`` what was tried first."""
    failures = sorted(failures, key=lambda failure: failure[0])
    others = f" ({len(failures) - 1} other group(s) failed too)" if len(failures) > 1 else ""
    for index, error in failures:
        cause = getattr(error, "cause", None) or error  # Ray wraps the group's exception
        if isinstance(cause, UserError):
            raise UserError(f"{labels[index]}: {cause}{others}") from None
    failed = ", ".join(labels[index] for index, _ in failures)
    raise LaunchError(
        f"{len(failures)} of {len(labels)} {runners} failed{after} ({failed}); the groups that "
        "finished are saved: rerun with --resume true to finish the others"
    ) from failures[0][1]


def run_in_worker(run_group: GroupFunction, config: Any, group: list[int],
                  context: DriverContext) -> Any:
    """Run one group in a Ray worker as the driver would run it: in the driver's working
    directory, with the driver's command line (recorded in ``meta.json``), without a progress
    bar per task (the driver shows one over the tasks)."""
    directory = Path(context.working_directory)
    if not directory.is_dir():
        raise UserError(f"the driver's working directory {directory} does not exist on this "
                        "node; run from a folder that every node mounts at the same path")
    saved = os.getcwd(), sys.argv, os.environ.get("OMRL_PROGRESS")
    os.chdir(directory)
    sys.argv = list(context.argv)
    os.environ["OMRL_PROGRESS"] = "0"
    try:
        return run_group(config, group)
    finally:
        os.chdir(saved[0])
        sys.argv = saved[1]
        if saved[2] is None:
            os.environ.pop("OMRL_PROGRESS", None)
        else:
            os.environ["OMRL_PROGRESS"] = saved[2]
