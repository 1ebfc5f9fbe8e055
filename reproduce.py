"""The main job: the whole BOReL and FOCAL pipeline for one env, a results table and the figures.

For ``--env-type`` with a ``--preset`` (``quick``: sized for a 2-core CPU; ``paper``: the papers'
budgets, for a GPU) it runs, skipping finished steps and resuming unfinished ones:

1. stage 1 for every task of the preset, as one batched collection (``train_single_agent.py``);
2. for each seed: the VAE with and without Reward Relabelling (Policy Replaying where tasks differ
   in their dynamics; ``train_vae_offline.py``), stage 3 on each (``train_agent_offline.py``), and
   FOCAL on the same datasets (``launch_focal.py``; with the preset's ablations, FOCAL without a
   task embedding and the distance-metric variants);
3. the reference policies (task oracle, scripted Bayes-adaptive search, random) on BOReL's
   evaluation tasks.

It writes ``results/<env-type>/``: ``results.csv`` and ``results.md`` (per-episode returns, mean
+- std over evaluation tasks and seeds), and ``figures/`` (returns per episode, learning curves
over seeds, and the runs' last trajectory, belief and embedding figures).

    python reproduce.py --env-type gridworld --preset quick
    python reproduce.py --env-type point_robot_sparse --preset paper --seeds 0-4 --device cuda
    python reproduce.py --env-type gridworld --preset quick --launcher local

Stage 1 runs first, once for all seeds. The later steps form chains that depend only on its
data: each BOReL variant's VAE then its stage 3, and each FOCAL run, per seed. ``--launcher
processes`` (the default) runs up to ``--workers`` chains at once, one per CPU core unless told;
``--launcher local`` runs them one after another in this process; ``--launcher ray`` as Ray
tasks. Every step is seeded on its own, so the results do not depend on the launcher.

Papers: BOReL (Dorfman et al., 2021) section 5; FOCAL (Li et al., 2021) section 5.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import launch_focal
import train_agent_offline
import train_single_agent
import train_vae_offline
from algorithms.reference_policies import make_reference_policy
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env
from utils.config import apply_mapping, load_config, load_saved_config
from utils.errors import UserError, run_script
from utils.launchers import launch
from utils.presets import Preset, get_preset
from utils.results import (
    MethodResult,
    latest_figure,
    learning_curve_figure,
    machine_description,
    pool,
    record_timings,
    returns_figure,
    save_figure,
    write_results,
)
from utils.rollouts import collect_meta_episodes
from utils.runs import run_path
from utils.seeding import parse_seeds, seed_label
from utils.stage_configs import (
    DataCollectionConfig,
    FocalConfig,
    OfflineConfig,
    ReproduceConfig,
    VAEConfig,
)

FOCAL_METRICS = ("inverse", "linear", "square")  # the ablation beside the default inverse-square
FOCAL_METRIC_BETAS = {"inverse": 2.0, "linear": 8.0, "square": 16.0}  # FOCAL's ablation values
COPIED_FIGURES = {  # figure file-name prefix in a run -> name in results/<env>/figures/
    "offline": ("eval_trajectory_task_0", "eval_trajectory_task_1", "eval_trajectory_task_2",
                "eval_reward_belief_task_0", "eval_belief_map_task_0", "eval_reward_predictions"),
    "focal": ("focal_embeddings", "eval_trajectory"),
}


@dataclass
class Step:
    """One stage run of the pipeline: its script's ``main``, its config and its final step."""

    label: str
    main: Callable[[Any], Path]
    config: Any
    stage: str
    seed_label: str
    final_step: int

    @property
    def path(self) -> Path:
        return run_path(self.config.runs_dir, self.stage, self.config.env_type,
                        self.config.exp_name, self.seed_label)


def stage_config(config_class: type, config_dir: str, config: ReproduceConfig,
                 overrides: dict[str, Any], source: str) -> Any:
    """The stage's per-env config with the preset's ``overrides`` and the shared fields."""
    stage = load_config(config_class, ["--env-type", config.env_type], config_dir=config_dir)
    stage = apply_mapping(stage, overrides, source)
    device = config.device or ("cpu" if config.preset == "quick" else "auto")
    shared = {"device": device, "torch_threads": config.torch_threads,
              "runs_dir": config.runs_dir, "data_dir": config.data_dir,
              "use_tensorboard": config.use_tensorboard}
    if config.env_name is not None:
        shared["env_name"] = config.env_name
    return dataclasses.replace(stage, **shared)


def relabelling_variants(env_type: str, options: dict[str, Any]) -> list[tuple[str, dict]]:
    """BOReL's two VAEs: (short name, VAE overrides). Reward Relabelling where every task shares
    the dynamics and rewards can be recomputed, else Policy Replaying."""
    env = make_batched_env(env_type, 1, options)
    neither = {"hindsight_relabelling": False, "policy_replaying": False}
    if env.reward_recomputable and not env.task_changes_dynamics:
        return [("RR", {**neither, "hindsight_relabelling": True}), ("no RR", neither)]
    return [("PR", {**neither, "policy_replaying": True}), ("no PR", neither)]


def collection_step(config: ReproduceConfig, preset: Preset) -> Step:
    """Stage 1 for every task of the preset, as one batched collection."""
    collection = stage_config(DataCollectionConfig, "data_collection_config", config,
                              preset.overrides("collection"), f"preset {config.preset}")
    collection = dataclasses.replace(collection, seeds=preset.task_seeds, exp_name=config.preset,
                                     dataset_name=config.preset)
    return Step("stage 1: data collection", train_single_agent.main, collection,
                train_single_agent.STAGE, seed_label(parse_seeds(preset.task_seeds)),
                collection.num_iters)


def seed_steps(config: ReproduceConfig, preset: Preset, seed: int
               ) -> list[tuple[str, str, Step]]:
    """The steps of one seed as (group, method label, step): the two VAEs and their stage-3
    runs (group ``vae`` / ``borel``), then FOCAL and its ablations (group ``focal``)."""
    name = config.preset
    collection_path = collection_step(config, preset).path
    steps = []
    env_options = collection_step(config, preset).config.environment_options()
    for short, vae_overrides in relabelling_variants(config.env_type, env_options):
        suffix, label = short.lower().replace(" ", "_"), f"BOReL ({short})"
        vae = stage_config(VAEConfig, "vae_config", config,
                           {**preset.overrides("vae"), **vae_overrides}, f"preset {name}")
        vae = dataclasses.replace(vae, seed=seed, exp_name=f"{name}_{suffix}", dataset_name=name,
                                  collection_run=str(collection_path))
        vae_step = Step(f"VAE, {short}, seed {seed}", train_vae_offline.main, vae,
                        train_vae_offline.STAGE, str(seed), vae.num_iters)
        offline = stage_config(OfflineConfig, "offline_config", config,
                               preset.overrides("offline"), f"preset {name}")
        offline = dataclasses.replace(offline, seed=seed, exp_name=f"{name}_{suffix}",
                                      vae_run=str(vae_step.path))
        steps += [("vae", label, vae_step),
                  ("borel", label, Step(f"stage 3, {short}, seed {seed}",
                                        train_agent_offline.main, offline,
                                        train_agent_offline.STAGE, str(seed), offline.num_iters))]
    ablations = preset.focal_ablations if config.focal_ablations is None \
        else config.focal_ablations
    focal_runs: dict[str, tuple[str, dict[str, Any]]] = {"FOCAL": ("", {})}
    if ablations:
        focal_runs["offline SAC without task embedding"] = (
            "_no_embedding", {"use_task_embedding": False})
        for metric in FOCAL_METRICS:
            focal_runs[f"FOCAL, {metric} metric"] = (
                f"_{metric}_metric",
                {"metric_loss": metric, "metric_beta": FOCAL_METRIC_BETAS[metric]})
    for label, (suffix, focal_overrides) in focal_runs.items():
        focal = stage_config(FocalConfig, "configs", config,
                             {**preset.overrides("focal"), **focal_overrides}, f"preset {name}")
        focal = dataclasses.replace(focal, seed=seed, exp_name=f"{name}{suffix}",
                                    dataset_name=name)
        steps.append(("focal", label, Step(f"{label}, seed {seed}", launch_focal.main, focal,
                                           launch_focal.STAGE, str(seed), focal.num_iterations)))
    return steps


def run_step(step: Step, config: ReproduceConfig) -> float | None:
    """Skip a finished step and resume an unfinished one (``--resume``), or start it
    (``--overwrite``: again from scratch). Returns the wall time in seconds (None: skipped)."""
    done = finished_step(step.path) if config.resume else 0
    if config.resume and done >= step.final_step:
        print(f"{step.label}: finished, skipped ({step.path})", flush=True)
        return None
    print(f"{step.label}" + (f": resuming at {done}" if done else "") + f" ({step.path})",
          flush=True)
    started = time.perf_counter()
    step.main(dataclasses.replace(step.config, resume=config.resume,
                                  overwrite=config.overwrite))
    return time.perf_counter() - started


def step_chains(config: ReproduceConfig, preset: Preset, seeds: list[int]
                ) -> list[tuple[str, list[Step]]]:
    """Every seed's steps as (name, chain): the chains depend on nothing but stage 1, so they may
    run side by side; each BOReL variant's VAE then its stage 3, and each FOCAL run, per seed.
    Policy Replaying's VAEs share one replayed dataset, which the first of them collects and the
    others read, so that variant's steps form one chain over the seeds. In order, the chains'
    steps are those of seed after seed as ``seed_steps`` lists them."""
    steps = [(seed, label, step) for seed in seeds
             for _, label, step in seed_steps(config, preset, seed)]
    replaying = {label for _, label, step in steps
                 if getattr(step.config, "policy_replaying", False)}
    chains: dict[str, list[Step]] = {}
    for seed, label, step in steps:
        name = label if label in replaying else f"{label}, seed {seed}"
        chains.setdefault(name, []).append(step)
    return list(chains.items())


def run_chain(chains: list[tuple[str, list[Step]]], config: ReproduceConfig, unit: list[int]
              ) -> dict[str, float]:
    """The steps of chain ``unit[0]``, in order (one launcher task); the wall time of each step
    that ran."""
    seconds = {}
    for step in chains[unit[0]][1]:
        elapsed = run_step(step, config)
        if elapsed is not None:
            seconds[step.label] = elapsed
    return seconds


def reproduce_preset(config: ReproduceConfig) -> Preset:
    """The preset, with the generic quick budgets derived from the per-env config files."""
    budgets = {
        stage: dataclasses.asdict(load_config(cls, ["--env-type", config.env_type],
                                              config_dir=directory))
        for stage, cls, directory in (
            ("collection", DataCollectionConfig, "data_collection_config"),
            ("vae", VAEConfig, "vae_config"), ("offline", OfflineConfig, "offline_config"),
            ("focal", FocalConfig, "configs"))}
    return get_preset(config.env_type, config.preset, budgets)


def finished_step(path: Path) -> int:
    """The step of the run's latest checkpoint (0 if it has none)."""
    latest = path / "checkpoints" / "latest.pt"
    if not latest.is_file():
        return 0
    try:
        checkpoint = torch.load(latest, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for corrupt or unsafe files
        raise UserError(f"checkpoint {latest} cannot be loaded: {error}".splitlines()[0]) from None
    return int(checkpoint.get("step", 0))


def read_evaluation(path: Path, key: str = "returns") -> tuple[np.ndarray, np.ndarray]:
    """Per-task returns (tasks, k) and successes (tasks,) of a run's last evaluation."""
    file = path / "evaluation.json"
    if not file.is_file():
        raise UserError(f"run {path} finished without an evaluation.json")
    content = json.loads(file.read_text())
    returns = np.asarray(content[key], dtype=np.float64)
    successes = content.get("successes" if key == "returns" else f"{key}_success")
    if successes is None:
        successes = np.full(len(returns), np.nan)
    return returns, np.asarray(successes, dtype=np.float64)


def reference_results(offline_runs: list[Path], config: ReproduceConfig
                      ) -> list[MethodResult]:
    """The oracle, scripted search and random policies on the evaluation tasks (and env seeds)
    of BOReL's stage-3 runs, one meta-episode per task."""
    parts: dict[str, list] = {}
    for path in offline_runs:
        split = json.loads((path / "tasks.json").read_text())
        offline = load_saved_config(OfflineConfig, path / "config.yaml")
        options = offline.environment_options(evaluation=True)
        tasks = np.asarray(split["eval_tasks"], dtype=np.float64)
        episodes = get_spec(config.env_type).episodes_per_task
        if offline.episodes_per_task is not None:
            episodes = offline.episodes_per_task
        for name in ("oracle", "search", "random"):
            bamdp = BatchedBAMDP(make_batched_env(config.env_type, len(tasks), options), episodes)
            bamdp.set_tasks(tasks)
            bamdp.seed([seed + 1 for seed in split["eval_seeds"]])
            policy = make_reference_policy(name, bamdp, tasks, seed=offline.seed)
            if policy is None:
                continue
            rollout = collect_meta_episodes(bamdp, policy, policy.observe)
            parts.setdefault(name, []).append(
                (rollout.episode_returns(episodes), rollout.successes[..., 0].any(axis=1)))
    labels = {"oracle": "task oracle (reference)", "search": "scripted search (reference)",
              "random": "random (reference)"}
    return [pool(labels[name], parts[name], "scripted, on BOReL's evaluation tasks")
            for name in labels if name in parts]


def write_figures(directory: Path, results: list[MethodResult], names: dict[str, Any]) -> None:
    """Returns per episode, learning curves over seeds, and the runs' own last figures."""
    figures = directory / "figures"
    save_figure(returns_figure(results), figures / "returns_per_episode.png")
    focal_main = {label: paths for label, paths in names["focal"].items()
                  if "metric" not in label}
    focal_metrics = {label: paths for label, paths in names["focal"].items()
                     if label == "FOCAL" or "metric" in label}
    panels = [("BOReL: RR vs no RR", "offline iteration", names["borel"], "eval/return_sum"),
              ("FOCAL (online context)", "FOCAL iteration", focal_main, "eval/return_sum")]
    save_figure(learning_curve_figure(panels), figures / "learning_curves.png")
    if len(focal_metrics) > 1:
        save_figure(learning_curve_figure([("FOCAL: distance-metric ablation",
                                            "FOCAL iteration", focal_metrics,
                                            "eval/return_sum")]),
                    figures / "focal_metric_ablation.png")
    for group, kind in (("borel", "offline"), ("focal", "focal")):
        for label, paths in names[group].items():
            slug = label.lower().replace(" ", "_").replace("(", "").replace(")", "").replace(
                ",", "")
            for prefix in COPIED_FIGURES[kind]:
                source = latest_figure(paths[0], prefix)
                if source is not None:
                    shutil.copyfile(source, figures / f"{slug}_{prefix}.png")


def main(config: ReproduceConfig) -> Path:
    get_spec(config.env_type)  # an unknown env-type stops here
    if config.overwrite:
        config = dataclasses.replace(config, resume=False)
    preset = reproduce_preset(config)
    seeds = parse_seeds(config.seeds)
    collection = collection_step(config, preset)
    seconds = {}
    elapsed = run_step(collection, config)
    if elapsed is not None:
        seconds[collection.label] = elapsed
    chains = step_chains(config, preset, seeds)
    for chain_seconds in launch(functools.partial(run_chain, chains), config,
                                [[index] for index in range(len(chains))],
                                labels=[name for name, _ in chains]):
        seconds.update(chain_seconds)

    names: dict[str, dict[str, list[Path]]] = {"vae": {}, "borel": {}, "focal": {}}
    for seed in seeds:
        for group, label, step in seed_steps(config, preset, seed):
            names[group].setdefault(label, []).append(step.path)
    results = [pool(label, [read_evaluation(path) for path in paths], "stage 3")
               for label, paths in names["borel"].items()]
    for protocol, key in (("online context", "online_context"),
                          ("offline context", "offline_context")):
        results.append(pool(f"FOCAL ({protocol})",
                            [read_evaluation(path, key) for path in names["focal"]["FOCAL"]],
                            "launch_focal.py"))
    results += reference_results(next(iter(names["borel"].values())), config)

    directory = Path(config.results_dir) / config.env_type
    notes = [f"env-type `{config.env_type}`, preset `{config.preset}`, seeds `{config.seeds}`, "
             f"stage-1 tasks `{preset.task_seeds}`.",
             "mean ± standard deviation over evaluation tasks × seeds (n meta-episodes), one "
             "deterministic meta-episode per task.",
             "BOReL and the references play BOReL's evaluation tasks; FOCAL plays its held-out "
             "tasks of the dataset (its offline context needs their data).",
             "FOCAL (online context): z = 0 in episode 1, then z from the meta-episode's own "
             "transitions; FOCAL (offline context): z from the task's offline data."]
    notes.append(f"machine: {machine_description()}.")
    write_results(directory, results, f"Results: {config.env_type} ({config.preset} preset)",
                  notes)
    record_timings(directory / "timings.json", seconds)
    write_figures(directory, results, names)
    print((directory / "results.md").read_text())
    return directory


if __name__ == "__main__":
    run_script(lambda: main(load_config(ReproduceConfig, program="reproduce.py")))
