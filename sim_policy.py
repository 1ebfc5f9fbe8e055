"""Evaluate a trained run: roll its policy out on chosen tasks, report the returns, render videos
and save the rollouts as datasets.

Reads a run directory ``runs/<stage>/<env-type>/<exp-name>_s<seed>/`` of any kind in ``KINDS``:
stage-1 agents (``train_single_agent.py``), BOReL's offline agent (``train_agent_offline.py``,
with the frozen encoder of the VAE run it names), online VariBAD (``online_training.py``) and FOCAL
(``launch_focal.py``). It rebuilds the
policy from the run's ``config.yaml`` and ``checkpoints/latest.pt`` (loaded with
``weights_only=True``), plays the run's own evaluation protocol deterministically, and writes into
the output folder (default ``<RUN_DIR>/sim/``) ``returns.csv`` and ``returns.json`` (one row per
task, repeat and episode; the summary beside the run's last logged evaluation) and, with
``--video true``, one ``task_<seed>.gif`` per task (MuJoCo rendered offscreen; toy envs as the
animated path over the task's layout). ``--save-dataset DIR`` writes the rollouts as
``DIR/task_<seed>.npz`` in the project's dataset format.

    python sim_policy.py runs/offline/gridworld/default_s73
    python sim_policy.py runs/data_collection/cheetah_vel/default_s0-39 --task-seeds 3,7 \
        --video true
    python sim_policy.py runs/data_collection/cheetah-vel/default_s0-99 \
        --save-dataset data/cheetah-vel/expert_replay

Without task options the tasks, env seeds and episodes are those of the run's own evaluation, and
the summary equals the run's last logged evaluation whenever the checkpoint was saved at it.

Papers: BOReL section 5 (evaluation with online beliefs; spec borel.md 5.5); FOCAL's sim_policy.py
rewritten for offline contexts (spec focal.md 4.2 and 4.5).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from algorithms.agents import (
    Agent,
    choose_algorithm,
    evaluate_agents,
    load_collection_agents,
    make_agent,
)
from algorithms.belief_rollouts import OnlineBelief, evaluate_with_online_belief
from algorithms.focal import FOCAL, FocalHyperparameters
from algorithms.focal_data import OfflineTaskData, TaskSplit, split_tasks
from algorithms.focal_discrete import DiscreteFOCAL
from algorithms.focal_evaluation import FocalEvaluator, return_columns
from algorithms.focal_meta_evaluation import MetaEpisodeEvaluator
from algorithms.focal_meta_evaluation import return_columns as meta_episode_return_columns
from algorithms.vae import build_vae, load_vae_run
from environments.bamdp import BatchedBAMDP
from environments.mujoco.rendering import write_frames
from environments.registry import get_spec, make_batched_env, resolve_options, task_from_seed
from models.vae import VAE
from utils.config import (
    ConfigError,
    apply_mapping,
    config_help,
    load_saved_config,
    parse_flags,
    read_mapping_file,
)
from utils.datasets import FORMAT_VERSION, dataset_directory, save_task_dataset, task_files
from utils.errors import UserError, run_script
from utils.rollouts import MetaEpisodeBatch, evaluation_scalars
from utils.runs import LATEST, RunDirectory, code_version, find_run
from utils.seeding import evaluation_seeds, parse_seeds, resolve_device, set_torch_threads
from utils.simulation import (
    FrameRecorder,
    LoggedEvaluation,
    Simulation,
    SimulationRequest,
    checked_episodes,
    compare_with_logged,
    dataset_files,
    episodes_protocol,
    format_comparison,
    format_table,
    logged_borel_evaluation,
    logged_focal_evaluation,
    meta_episode_protocol,
    table_rows,
    video_frames,
    write_tables,
)
from utils.stage_configs import (
    FocalConfig,
    OfflineConfig,
    OnlineConfig,
    SimulationConfig,
)

USAGE = ("python sim_policy.py RUN_DIR [--num-tasks N | --task-seeds SEEDS] [--episodes K] "
         "[--video true] [--save-dataset DIR] [--name value ...]")
CHECKPOINT_NAME = f"checkpoints/{LATEST}"


def main(run_path: Path, config: SimulationConfig) -> Path:
    run, stage = open_run(Path(run_path))
    kind = KINDS[stage]
    device = resolve_device(config.device)
    set_torch_threads(int(read_mapping_file(run.config_path).get("torch_threads", 1)))
    if config.num_tasks is not None and config.task_seeds is not None:
        raise UserError("--num-tasks and --task-seeds exclude each other; give one")
    for name in ("num_tasks", "episodes"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    request = SimulationRequest(parse_seeds(config.task_seeds) if config.task_seeds else None,
                                config.num_tasks, config.episodes, config.video, device)
    checkpoint = run.load_checkpoint()
    checkpoint_step = int(checkpoint.get("step", -1))
    simulation = kind.simulate(run, checkpoint, request)
    logged = kind.logged(run)
    datasets = (dataset_files(simulation, Path(config.save_dataset), config.overwrite)
                if config.save_dataset else {})

    if not simulation.own_evaluation:
        note = "tasks or episodes differ from the run's evaluation; nothing to compare"
        compared = None
    elif logged is None:
        note, compared = "the run has logged no evaluation", None
    elif logged.step != checkpoint_step:
        note = (f"the checkpoint (step {checkpoint_step}) is not the run's last evaluation "
                f"(step {logged.step}); not comparable")
        compared = None
    else:
        note, compared = "the run's own evaluation, reproduced", logged
    comparison = compare_with_logged(simulation.summary, compared)
    env_type = simulation.dataset_meta["env_type"]
    print(f"{run.path}: {kind.description}, env-type {env_type}, checkpoint step "
          f"{checkpoint_step} ({simulation.training_steps} updates), device {device}\n")
    print(format_table(simulation))
    print(format_comparison(comparison, compared, note))

    output = Path(config.output_dir) if config.output_dir else run.path / "sim"
    output.mkdir(parents=True, exist_ok=True)
    write_tables(output, table_rows(simulation), {
        "run": str(run.path), "kind": stage, "env_type": env_type,
        "checkpoint_step": checkpoint_step, "training_steps": simulation.training_steps,
        "own_evaluation": simulation.own_evaluation, "note": note,
        "logged_step": None if compared is None else compared.step, "summary": comparison})
    print(f"\nwrote {output / 'returns.csv'} and returns.json")
    if config.video:
        videos = [write_frames(frames, output / f"task_{seed}.gif", rate)
                  for seed, (frames, rate) in video_frames(simulation).items()]
        print(f"wrote {len(videos)} video(s): {', '.join(path.name for path in videos)}")
    for path, dataset in datasets.items():
        save_task_dataset(path, dataset)
    if datasets:
        print(f"wrote {len(datasets)} dataset file(s) into {config.save_dataset}")
    return output


def open_run(path: Path) -> tuple[RunDirectory, str]:
    """The run at ``path`` and its stage (the folder two levels up:
    ``runs/<stage>/<env-type>/<name>``); not a run, an unknown kind or no checkpoint is a
    UserError."""
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path} is not a run directory (no config.yaml); give a folder "
                        "runs/<stage>/<env-type>/<exp-name>_s<seed>")
    parents = path.resolve().parents
    stage = parents[1].name if len(parents) > 1 else ""
    if stage not in KINDS:
        known = ", ".join(f"{name} ({kind.description})" for name, kind in KINDS.items())
        raise UserError(f"{path} is a run of unknown kind {stage!r} (its stage folder); "
                        f"sim_policy.py evaluates runs of {known}")
    run = RunDirectory(path)
    if not (run.checkpoint_dir / LATEST).is_file():
        raise UserError(f"run {path} has no checkpoint ({CHECKPOINT_NAME}): it has not saved "
                        "one yet")
    return run, stage



def dataset_meta(env_type: str, env_options: dict, bamdp: BatchedBAMDP, run: RunDirectory,
                 algorithm: str, protocol: str) -> dict[str, Any]:
    """The ``meta`` of datasets written from rollouts in ``bamdp`` (without the task seed)."""
    return {"format_version": FORMAT_VERSION, "env_type": env_type, "env_options": env_options,
            "episodes_per_task": bamdp.episodes_per_task,
            "max_episode_steps": bamdp.max_episode_steps, "code_version": code_version(),
            "algorithm": algorithm, "collection_run": str(run.path), "protocol": protocol}


# ------------------------------------------------------------------------------ stage 1
def simulate_collection_run(run: RunDirectory, checkpoint: dict, request: SimulationRequest
                            ) -> Simulation:
    """Stage-1 agents with stage 1's evaluation: every member of an ensemble on its own task
    (``--task-seeds`` / ``--num-tasks`` pick members), or one agent on any tasks."""
    agent, members, config = load_collection_agents(run, request.device, checkpoint)
    run_episodes = config.episodes_per_task or get_spec(config.env_type).episodes_per_task
    episodes = checked_episodes(request.episodes, run_episodes)
    if len(members) > 1:
        if (request.num_tasks or 0) > len(members):
            raise UserError(f"--num-tasks {request.num_tasks}: run {run.path} is an ensemble of "
                            f"{len(members)} agents, each trained on its own task")
        seeds = request.task_seeds or members[: request.num_tasks or len(members)]
        strangers = [seed for seed in seeds if seed not in members]
        if strangers:
            raise UserError(
                f"run {run.path} is an ensemble of {len(members)} agents, each trained on its "
                f"own task (seeds {config.seeds}); seed(s) {strangers} are not among them")
        played = members  # the whole ensemble plays, as in the run's evaluation
    else:
        own = members[0]
        seeds = request.task_seeds or [own] + evaluation_seeds(
            [own], (request.num_tasks or 1) - 1, config.seed)
        played = seeds
    options = resolve_options(config.env_type, config.environment_options())
    bamdp = BatchedBAMDP(make_batched_env(config.env_type, len(played), options), episodes)
    tasks = np.stack([bamdp.env.task_from_seed(seed) for seed in played])
    bamdp.set_tasks(tasks)
    rows = [played.index(seed) for seed in seeds]
    recorder = (FrameRecorder(bamdp.env, dict(zip(seeds, rows, strict=True)))
                if request.record_frames else None)
    batch = evaluate_agents(agent, bamdp, played, len(members), recorder).select(rows)
    bamdp.close()
    return Simulation(
        protocols=[meta_episode_protocol("policy", seeds, tasks[rows], batch, episodes)],
        summary=evaluation_scalars(batch, episodes),
        own_evaluation=seeds == members and episodes == run_episodes,
        env=bamdp.env,
        dataset_meta=dataset_meta(config.env_type, options, bamdp, run,
                                  choose_algorithm(config, bamdp.action_space),
                                  "stage-1 deterministic policy"),
        training_steps=agent.num_updates,
        frames=recorder.frames if recorder else {})


def play_with_online_belief(agent: Agent, vae: VAE, bamdp: BatchedBAMDP, seeds: list[int],
                            request: SimulationRequest
                            ) -> tuple[MetaEpisodeBatch, FrameRecorder | None]:
    """BOReL's evaluation of a belief-conditioned agent on the tasks of ``seeds`` (set in
    ``bamdp``), recording frames when a video is asked for; closes ``bamdp``."""
    belief = OnlineBelief(vae.encoder, len(seeds), request.device)
    recorder = (FrameRecorder(bamdp.env, {seed: copy for copy, seed in enumerate(seeds)})
                if request.record_frames else None)
    batch, _ = evaluate_with_online_belief(agent, belief, bamdp, seeds, recorder)
    bamdp.close()
    return batch, recorder


# ------------------------------------------------------------------------------ stage 3
def simulate_offline_run(run: RunDirectory, checkpoint: dict, request: SimulationRequest
                         ) -> Simulation:
    """BOReL's offline agent with the frozen VAE encoder of its VAE run, evaluated as
    ``train_agent_offline.py`` does: one meta-episode per task, the belief updated online after
    every step (``evaluate_with_online_belief``). ``--num-tasks`` extends the run's evaluation
    tasks with further ones drawn the same way."""
    config = load_saved_config(OfflineConfig, run.config_path)
    split_path = run.path / "tasks.json"
    if not split_path.is_file():
        raise UserError(f"run {run.path} has no tasks.json (its task split)")
    split = json.loads(split_path.read_text())
    vae_run = Path(split["vae_run"])
    vae_run = (RunDirectory(vae_run) if (vae_run / "config.yaml").is_file()
               else find_run(config.vae_run, run.path.resolve().parents[2], "vae",
                             config.env_type))
    vae, _, dimensions = load_vae_run(vae_run, config.env_type, request.device)
    run_episodes = int(dimensions["episodes_per_task"])
    episodes = checked_episodes(request.episodes, run_episodes)
    train_seeds = [int(seed) for seed in split["train_seeds"]]
    own_seeds = evaluation_seeds(train_seeds, config.num_eval_tasks, config.seed)
    seeds = request.task_seeds or evaluation_seeds(
        train_seeds, request.num_tasks or config.num_eval_tasks, config.seed)
    options = config.environment_options(evaluation=True)
    tasks = np.stack([task_from_seed(config.env_type, seed, options) for seed in seeds])
    bamdp = BatchedBAMDP(make_batched_env(config.env_type, len(seeds), options), episodes)
    bamdp.set_tasks(tasks)
    agent = make_agent(config, 1, bamdp.observation_dim + 2 * vae.latent_dim, bamdp.action_space,
                       request.device, cql_alpha=config.cql_alpha if config.use_cql else 0.0,
                       cql_num_actions=config.cql_num_actions)
    agent.load_state_dict(checkpoint["agent"])
    batch, recorder = play_with_online_belief(agent, vae, bamdp, seeds, request)
    return Simulation(
        protocols=[meta_episode_protocol("online_belief", seeds, tasks, batch, episodes)],
        summary=evaluation_scalars(batch, episodes),
        own_evaluation=seeds == own_seeds and episodes == run_episodes,
        env=bamdp.env,
        dataset_meta=dataset_meta(config.env_type, resolve_options(config.env_type, options),
                                  bamdp, run, "borel_offline", "online belief"),
        training_steps=agent.num_updates,
        frames=recorder.frames if recorder else {})


# ------------------------------------------------------------------------------ FOCAL
def focal_tasks(config: FocalConfig, request: SimulationRequest
                ) -> tuple[TaskSplit, OfflineTaskData, int, bool]:
    """The tasks a FOCAL simulation plays: without task options the run's own split (its
    training tasks, then its held-out ones); else the tasks ``--task-seeds`` names or the first
    ``--num-tasks`` held-out ones of the run's dataset, alone. Returns the split, its data, the
    number of training tasks in it and whether these are the run's own tasks."""
    directory = dataset_directory(config.data_dir, config.env_type, config.dataset_name)
    if request.task_seeds is None and request.num_tasks is None:
        split = split_tasks(directory, config.num_train_tasks, config.num_eval_tasks)
        return (split, OfflineTaskData.from_config(config, split, request.device),
                config.num_train_tasks, True)
    found = dict(task_files(directory))
    held_out = sorted(found)[config.num_train_tasks:]
    seeds = request.task_seeds or held_out[: request.num_tasks]
    missing = [seed for seed in seeds if seed not in found]
    if missing:
        raise UserError(f"FOCAL needs each task's offline data for its context, and "
                        f"{directory} holds no task file for seed(s) {missing}")
    if len(seeds) < (request.num_tasks or 0):
        raise UserError(f"--num-tasks {request.num_tasks}: {directory} holds only "
                        f"{len(held_out)} tasks after the {config.num_train_tasks} training "
                        "ones")
    split = TaskSplit([], list(seeds), [found[seed] for seed in seeds])
    return split, OfflineTaskData.from_config(config, split, request.device), 0, False


def simulate_focal_run(run: RunDirectory, checkpoint: dict, request: SimulationRequest
                       ) -> Simulation:
    """FOCAL with its own evaluator: the offline-context protocol (contexts drawn from each
    task's offline data; the run's training tasks too when it evaluates them) and the
    online-context protocol. ``--task-seeds`` / ``--num-tasks`` pick tasks of the run's dataset
    (``--num-tasks``: the tasks after the training ones). Runs on BOReL's env-types play BOReL's
    protocol instead (:func:`simulate_focal_meta_episodes`)."""
    config = load_saved_config(FocalConfig, run.config_path)
    if run.read_json("meta.json").get("evaluation_protocol") == "meta_episodes":
        return simulate_focal_meta_episodes(run, checkpoint, request, config)
    trajectories = math.ceil(config.num_steps_per_eval / config.max_path_length)
    own_episodes = trajectories if trajectories == config.num_online_episodes else None
    split, data, _, own = focal_tasks(config, request)
    if own:
        evaluator = FocalEvaluator.from_config(config, data, num_episodes=request.episodes)
    else:
        evaluator = FocalEvaluator.from_config(config, data, list(range(len(split.eval_seeds))),
                                               [], num_episodes=request.episodes)
    data_seeds = split.train_seeds + split.eval_seeds
    focal = FOCAL(data.observation_dim, data.action_dim, data.transition_dim,
                  FocalHyperparameters.from_config(config), request.device)
    focal.load_state_dict(checkpoint["focal"])
    num_test, repeats = len(evaluator.test_task_ids), evaluator.num_evals
    env = evaluator.offline_env.env
    first_repeats = {data_seeds[evaluator.offline_copies[copy]]: copy
                     for copy in range(0, num_test * repeats, repeats)}
    recorder = FrameRecorder(env, first_repeats) if request.record_frames else None
    offline = evaluator.offline_context_rollouts(focal, recorder)
    online = evaluator.online_context_rollouts(focal)
    offline_returns = evaluator.stacked_returns(offline)
    online_returns = evaluator.stacked_returns(online)
    per_task = evaluator.per_task(offline_returns)

    def protocol(name: str, copies: np.ndarray, rows: slice, batches: list,
                 returns: np.ndarray) -> Any:
        copy_seeds = [data_seeds[index] for index in copies[rows]]
        copy_repeats = [position % repeats for position in range(len(copy_seeds))]
        return episodes_protocol(name, copy_seeds, data.tasks[copies[rows]], copy_repeats,
                                 [batch.select(rows) for batch in batches], returns[rows])

    test_rows, train_rows = slice(0, num_test * repeats), slice(num_test * repeats, None)
    protocols = [protocol("offline_context", evaluator.offline_copies, test_rows, offline,
                          offline_returns)]
    if evaluator.train_task_ids:
        protocols.append(protocol("offline_context_train_tasks", evaluator.offline_copies,
                                  train_rows, offline, offline_returns))
    protocols.append(protocol("online_context", evaluator.online_copies, slice(None), online,
                              online_returns))
    evaluator.close()
    options = resolve_options(config.env_type, config.environment_options(evaluation=True))
    return Simulation(
        protocols=protocols,
        summary=return_columns(per_task[:num_test],
                               per_task[num_test:] if evaluator.train_task_ids else None,
                               evaluator.per_task(online_returns)),
        own_evaluation=own and request.episodes in (None, own_episodes),
        env=env,
        dataset_meta=dataset_meta(config.env_type, options, evaluator.offline_env, run, "focal",
                                  "offline and online context"),
        training_steps=focal.num_updates,
        frames=recorder.frames if recorder else {})


def simulate_focal_meta_episodes(run: RunDirectory, checkpoint: dict,
                                  request: SimulationRequest, config: FocalConfig
                                  ) -> Simulation:
    """FOCAL on one of BOReL's env-types, played as its run evaluates it
    (``algorithms/focal_meta_evaluation.py``): one meta-episode of k inner episodes per held-out
    task, with the online context (z = 0, then z from the meta-episode's own transitions after
    each inner episode) and with an offline context; Discrete actions give ``DiscreteFOCAL``."""
    spec = get_spec(config.env_type)
    episodes = config.episodes_per_task or spec.episodes_per_task
    if request.episodes not in (None, episodes):
        raise UserError(f"--episodes {request.episodes}: a FOCAL run on {config.env_type!r} plays "
                        f"meta-episodes of the {episodes} inner episodes its data holds (its "
                        "offline contexts come from them)")
    split, data, num_train, own = focal_tasks(config, request)
    seeds = list(split.eval_seeds)
    test_task_ids = list(range(num_train, num_train + len(seeds)))
    options = config.environment_options(evaluation=True)
    evaluator = MetaEpisodeEvaluator(config.env_type, options, data, num_train, test_task_ids,
                                     episodes, config.offline_context_size, config.seed)
    agent_class = (DiscreteFOCAL if isinstance(evaluator.action_space, spaces.Discrete)
                   else FOCAL)
    focal = agent_class(data.observation_dim, data.action_dim, data.transition_dim,
                        FocalHyperparameters.from_config(config), request.device)
    focal.load_state_dict(checkpoint["focal"])
    bamdp, tasks = evaluator.env, data.tasks[test_task_ids]
    recorder = (FrameRecorder(bamdp.env, {seed: copy for copy, seed in enumerate(seeds)})
                if request.record_frames else None)
    offline = evaluator.offline_context_rollout(focal, recorder)
    online = evaluator.online_context_rollout(focal)
    evaluator.close()
    return Simulation(
        protocols=[meta_episode_protocol("offline_context", seeds, tasks, offline, episodes),
                   meta_episode_protocol("online_context", seeds, tasks, online, episodes)],
        summary=meta_episode_return_columns(online.episode_returns(episodes),
                                            offline.episode_returns(episodes)),
        own_evaluation=own,
        env=bamdp.env,
        dataset_meta=dataset_meta(config.env_type, resolve_options(config.env_type, options),
                                  bamdp, run, "focal", "offline and online context"),
        training_steps=focal.num_updates,
        frames=recorder.frames if recorder else {})


# ------------------------------------------------------------------------------ online VariBAD
def simulate_online_run(run: RunDirectory, checkpoint: dict, request: SimulationRequest
                        ) -> Simulation:
    """Online VariBAD's agent with the encoder of the VAE trained beside it (both from the
    checkpoint), evaluated as ``online_training.py`` does: one meta-episode per task with the
    belief updated online after every step, on the held-out tasks (``eval/`` tags) and on the
    first training tasks (``eval/train_`` tags). ``--num-tasks`` draws more held-out tasks the
    same way; ``--task-seeds`` plays the given tasks only."""
    config = load_saved_config(OnlineConfig, run.config_path)
    split, model = run.read_json("tasks.json"), run.read_json("model.json")
    if "trainer" not in checkpoint or "agent" not in checkpoint:
        raise UserError(f"checkpoint of {run.path} holds no agent and VAE (not an online run)")
    episodes = checked_episodes(request.episodes, int(model["episodes_per_task"]))
    options = resolve_options(config.env_type, config.environment_options(evaluation=True))
    train_seeds = [int(seed) for seed in split["train_seeds"]]
    train_tasks = np.asarray(split["train_tasks"], dtype=np.float64)
    evaluated_train = [int(seed) for seed in split["evaluated_train_seeds"]]
    if request.task_seeds:
        groups = {"online_belief": list(request.task_seeds)}
    else:
        held_out = ([int(seed) for seed in split["eval_seeds"]] if not request.num_tasks else
                    evaluation_seeds(train_seeds, request.num_tasks, config.seed,
                                     lambda seed: task_from_seed(config.env_type, seed, options),
                                     train_tasks))
        groups = {"online_belief": held_out, "online_belief_train_tasks": evaluated_train}
    seeds = [seed for group in groups.values() for seed in group]
    tasks = np.stack([task_from_seed(config.env_type, seed, options) for seed in seeds])
    bamdp = BatchedBAMDP(make_batched_env(config.env_type, len(seeds), options), episodes)
    bamdp.set_tasks(tasks)
    vae = build_vae(config, int(model["observation_dim"]), int(model["action_dim"]),
                    int(model["task_dim"]), model["num_states"]).to(request.device)
    vae.load_state_dict(checkpoint["trainer"]["vae"])
    vae.eval()
    agent = make_agent(config, 1, bamdp.observation_dim + 2 * vae.latent_dim, bamdp.action_space,
                       request.device)
    agent.load_state_dict(checkpoint["agent"])
    batch, recorder = play_with_online_belief(agent, vae, bamdp, seeds, request)
    protocols, summary, first = [], {}, 0
    for name, group in groups.items():
        rows = slice(first, first + len(group))
        first += len(group)
        part = batch.select(rows)
        protocols.append(meta_episode_protocol(name, group, tasks[rows], part, episodes))
        summary.update(evaluation_scalars(part, episodes, "eval/train_" if name.endswith(
            "train_tasks") else "eval/"))
    return Simulation(
        protocols=protocols, summary=summary,
        own_evaluation=(not request.task_seeds and not request.num_tasks
                        and episodes == int(model["episodes_per_task"])),
        env=bamdp.env,
        dataset_meta=dataset_meta(config.env_type, options, bamdp, run,
                                  f"online_{model['algorithm']}", "online belief"),
        training_steps=agent.num_updates,
        frames=recorder.frames if recorder else {})


# ------------------------------------------------------------------------------ kinds
@dataclasses.dataclass(frozen=True)
class Kind:
    """How to simulate the runs of one stage: ``simulate(run, checkpoint, request)`` plays the
    run's evaluation protocols, ``logged(run)`` reads its last logged evaluation."""

    description: str
    simulate: Callable[[RunDirectory, dict, SimulationRequest], Simulation]
    logged: Callable[[RunDirectory], LoggedEvaluation | None]


KINDS: dict[str, Kind] = {
    "data_collection": Kind("stage-1 agents (train_single_agent.py)", simulate_collection_run,
                            logged_borel_evaluation),
    "offline": Kind("BOReL offline agent with online beliefs (train_agent_offline.py)",
                    simulate_offline_run, logged_borel_evaluation),
    "focal": Kind("FOCAL (launch_focal.py)", simulate_focal_run, logged_focal_evaluation),
    "online": Kind("online VariBAD (online_training.py)", simulate_online_run,
                   logged_borel_evaluation),
}
"""Run kinds by stage folder. A new kind is one entry: a
``simulate`` that rebuilds the policy from the run's config and checkpoint and plays the run's own
evaluation through the function the run evaluates with, and a ``logged`` reader
(``logged_borel_evaluation`` for runs that log BOReL's ``eval/`` tags)."""


def parse_command_line(argv: list[str]) -> tuple[Path, SimulationConfig]:
    """``RUN_DIR`` followed by flags of :class:`SimulationConfig` (kebab-case, strict)."""
    if "--help" in argv or "-h" in argv:
        print(config_help(SimulationConfig, "sim_policy.py", None, usage=USAGE))
        raise SystemExit(0)
    if not argv or argv[0].startswith("-"):
        raise UserError(f"missing RUN_DIR; usage: {USAGE}")
    flags, config_file = parse_flags(SimulationConfig, argv[1:])
    if config_file is not None:
        raise ConfigError("sim_policy.py takes no --config file; give flags")
    return Path(argv[0]), apply_mapping(SimulationConfig(), flags, "the command line",
                                        from_text=True)


if __name__ == "__main__":
    run_script(lambda: main(*parse_command_line(sys.argv[1:])))
