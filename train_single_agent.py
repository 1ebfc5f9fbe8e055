"""Stage 1: train one SAC/DQN agent per task and save its whole training history as a dataset.

Reads ``data_collection_config/<env-type>.yaml``. Writes one dataset file per task,
``data/<env-type>/<dataset-name>/task_<seed>.npz`` (re-saved atomically every save interval: the
random initial pool and every later rollout, with the training step of each trajectory), and the
run directory ``runs/data_collection/<env-type>/<exp-name>_s<seeds>/`` (config, logs, agent
checkpoints, trajectory figures). ``--seeds 0-39`` trains the 40 agents in one process as a stacked
ensemble on vectorised envs; each agent only ever sees its own task's data. ``--seeds-per-task 10``
splits the seeds into groups of 10, each a batched collection with its own run directory
``<exp-name>_s<group>``, run one after another, with ``--launcher processes`` side by side in
``--workers`` processes (one stacked ensemble per core: the fastest way to use a machine's cores),
or with ``--launcher ray`` as Ray tasks. The grouping fixes the groups' random streams, so the
same ``--seeds-per-task`` gives the same datasets with every launcher.

    python train_single_agent.py --env-type gridworld --seed 73
    python train_single_agent.py --env-type point_robot_sparse --seeds 0-39 --device auto
    python train_single_agent.py --env-type point_robot_sparse --seeds 0-39 --seeds-per-task 20 \
        --launcher processes
    python train_single_agent.py --env-type cheetah_vel --seeds 0-99 --seeds-per-task 10 \
        --launcher ray --ray-num-cpus 2

Paper: BOReL (Dorfman et al., 2021) section 4 and appendix, data collection; spec borel.md
section 3.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from algorithms.agents import act, choose_algorithm, epsilon_at, evaluate_agents, make_agent
from algorithms.common import mean_metrics
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env, resolve_options
from utils.config import load_config
from utils.datasets import (
    FORMAT_VERSION,
    dataset_directory,
    load_task_dataset,
    save_task_dataset,
    task_file,
)
from utils.errors import UserError, run_script
from utils.io import remove_stale_temporaries
from utils.launchers import GroupOutputs, launch, split_seeds, worker_count
from utils.logger import Logger
from utils.plotting import trajectory_figure
from utils.progress import progress_range
from utils.replay import FIELDS, EnsembleReplayBuffer
from utils.rollouts import (
    MetaEpisodeBatch,
    TaskHistories,
    collect_meta_episodes,
    evaluation_scalars,
)
from utils.runs import RunDirectory, code_version, run_path
from utils.seeding import (
    parse_seeds,
    prepare_process,
    restore_generator,
    restore_torch_random_state,
    seed_label,
    torch_random_state,
)
from utils.stage_configs import DataCollectionConfig

STAGE = "data_collection"


def copy_seeds(seeds: list[int], replicas: int) -> list[int]:
    """Distinct random-stream seeds for copy r of task s (independent of the other tasks)."""
    return [int(np.random.SeedSequence([seed, replica]).generate_state(1)[0])
            for seed in seeds for replica in range(replicas)]


def collect(config: DataCollectionConfig) -> list[Path]:
    """Every seed of ``config``, in groups of ``seeds_per_task``, each group a batched collection
    run by ``--launcher``; returns the groups' run directories. ``--launcher processes`` needs
    ``--seeds-per-task``: each group's random streams derive from its seeds, so the grouping must
    come from the command line, not from the machine's core count."""
    seeds = parse_seeds(config.seeds) if config.seeds else [config.seed]
    if config.launcher == "processes" and len(seeds) > 1 and config.seeds_per_task is None:
        workers = worker_count(config)
        raise UserError(
            "--launcher processes runs seed groups side by side; give their size with "
            f"--seeds-per-task, for example {math.ceil(len(seeds) / workers)} for "
            f"{len(seeds)} seeds on {workers} worker(s)")
    return launch(collect_group, config, split_seeds(seeds, config.seeds_per_task),
                  group_outputs)


def group_config(config: DataCollectionConfig, group: list[int]) -> DataCollectionConfig:
    """The config of one group's collection. When ``--seeds-per-task`` splits the seeds, each
    group's random streams (networks, replay sampling, random actions) are seeded from the pair
    (seed, the group's first task seed), so that groups do not repeat each other's draws."""
    if config.seeds is None or config.seeds_per_task is None:
        return config
    random_seed = np.random.SeedSequence(config.seed % 2**32, spawn_key=(group[0] % 2**32,))
    return dataclasses.replace(config, seeds=seed_label(group),
                               seed=int(random_seed.generate_state(1)[0]))


def collect_group(config: DataCollectionConfig, group: list[int]) -> Path:
    """One group's batched collection (the function each launcher task runs)."""
    return main(group_config(config, group))


def group_outputs(config: DataCollectionConfig, group: list[int]) -> GroupOutputs:
    """The run directory and the per-task dataset files that one group writes."""
    data_dir = dataset_directory(config.data_dir, config.env_type, config.dataset_name)
    return GroupOutputs(
        run_path(config.runs_dir, STAGE, config.env_type, config.exp_name, seed_label(group)),
        tuple(task_file(data_dir, seed) for seed in group))


def main(config: DataCollectionConfig) -> Path:
    """One batched collection of the seeds in ``config`` (``--seeds``, else ``--seed``)."""
    spec = get_spec(config.env_type)
    seeds = parse_seeds(config.seeds) if config.seeds else [config.seed]
    num_tasks, replicas = len(seeds), config.num_rollouts_per_iter
    device = prepare_process(config)
    episodes_per_task = config.episodes_per_task or spec.episodes_per_task
    env_options = resolve_options(config.env_type, config.environment_options())

    # K tasks x R copies for collection (copy c plays task c // R), K copies for evaluation.
    collection = BatchedBAMDP(make_batched_env(config.env_type, num_tasks * replicas,
                                               env_options), episodes_per_task)
    tasks = np.stack([collection.env.task_from_seed(seed) for seed in seeds])
    collection.set_tasks(np.repeat(tasks, replicas, axis=0))
    collection.seed(copy_seeds(seeds, replicas))
    evaluation = BatchedBAMDP(make_batched_env(config.env_type, num_tasks, env_options),
                              episodes_per_task)
    evaluation.set_tasks(tasks)
    member_of_copy = np.repeat(np.arange(num_tasks), replicas)

    algorithm = choose_algorithm(config, collection.action_space)
    data_dir = dataset_directory(config.data_dir, config.env_type, config.dataset_name)
    existing = [task_file(data_dir, seed) for seed in seeds if task_file(data_dir, seed).exists()]
    if existing and not (config.resume or config.overwrite):
        raise UserError(f"dataset {existing[0]} already exists; pass --resume true to continue "
                        "the collection or --overwrite true to replace it")
    run = RunDirectory.create(
        run_path(config.runs_dir, STAGE, config.env_type, config.exp_name, seed_label(seeds)),
        config, config.resume, config.overwrite, device=str(device))
    remove_stale_temporaries(data_dir, [task_file(data_dir, seed).name for seed in seeds])
    meta = {
        "format_version": FORMAT_VERSION, "env_type": config.env_type,
        "env_options": env_options, "episodes_per_task": episodes_per_task,
        "max_episode_steps": collection.max_episode_steps, "code_version": code_version(),
        "algorithm": algorithm, "collection_run": str(run.path),
    }
    histories = TaskHistories(tasks, [{**meta, "seed": seed} for seed in seeds])

    agent = make_agent(config, num_tasks, collection.observation_dim, collection.action_space,
                       device)
    total_meta_episodes = config.num_init_rollouts_pool + config.num_iters * replicas
    capacity = min(config.buffer_size, total_meta_episodes * collection.trajectory_len)
    stored_action_dim = (collection.action_space.n if algorithm == "dqn"
                         else collection.action_space.shape[0])
    dims = {"observations": collection.observation_dim, "actions": stored_action_dim,
            "rewards": 1, "next_observations": collection.observation_dim, "terminations": 1}
    buffer = EnsembleReplayBuffer(num_tasks, capacity, dims, device)
    sampler = torch.Generator(device=device)
    sampler.manual_seed(config.seed)
    action_rng = np.random.default_rng(config.seed)
    logger = Logger(run.path, config.use_tensorboard)

    def record(batch: MetaEpisodeBatch, members: np.ndarray, training_step: int) -> None:
        histories.append(batch, members, training_step)
        buffer.add_trajectories({name: getattr(batch, name) for name in FIELDS},
                                batch.lengths, members)

    def save(iteration: int) -> None:
        for index, seed in enumerate(seeds):
            save_task_dataset(task_file(data_dir, seed), histories.dataset(index))
        state = {
            "iteration": iteration, "agent": agent.state_dict(),
            "num_trajectories": [histories.num_trajectories(index) for index in range(num_tasks)],
            **torch_random_state(device), "sampler": sampler.get_state(),
            "action_rng": action_rng.bit_generator.state,
            "env_streams": collection.env.random_state(),
        }
        run.save_checkpoint(state, step=iteration, keep=config.save_models)

    start = 0
    checkpoint = run.load_checkpoint() if config.resume else None
    if checkpoint is not None:
        start = int(checkpoint["iteration"])
        agent.load_state_dict(checkpoint["agent"])
        restore_torch_random_state(checkpoint, device)
        restore_generator(sampler, checkpoint["sampler"])
        action_rng.bit_generator.state = checkpoint["action_rng"]
        collection.env.set_random_state(checkpoint["env_streams"])
        for index, seed in enumerate(seeds):
            dataset = load_task_dataset(task_file(data_dir, seed), config.env_type)
            saved = int(checkpoint["num_trajectories"][index])
            if dataset.num_trajectories < saved:
                raise UserError(f"dataset {task_file(data_dir, seed)} holds "
                                f"{dataset.num_trajectories} trajectories but the checkpoint "
                                f"expects {saved}; cannot resume")
            dataset = dataset.select(slice(0, saved))
            histories.restore(index, dataset)
            buffer.add_trajectories({name: getattr(dataset, name) for name in FIELDS},
                                    dataset.lengths, np.full(saved, index))
    else:
        # Random initial pool: num_init_rollouts_pool meta-episodes per task, uniform actions.
        for call in range(math.ceil(config.num_init_rollouts_pool / replicas)):
            batch = collect_meta_episodes(collection, lambda observations: (
                action_rng.integers(0, collection.action_space.n, len(observations))
                if algorithm == "dqn"
                else action_rng.uniform(-1.0, 1.0, (len(observations), stored_action_dim))))
            wanted = config.num_init_rollouts_pool - call * replicas
            keep = np.tile(np.arange(replicas) < wanted, num_tasks)
            record(batch.select(keep), member_of_copy[keep], training_step=0)
    logger.truncate_after(start)  # drop rows logged after the checkpoint by a killed run

    bar = progress_range(start, config.num_iters, f"stage 1 {config.env_type} x{num_tasks}")
    for iteration in bar:
        started = time.perf_counter()
        epsilon = epsilon_at(config, iteration)
        batch = collect_meta_episodes(collection, lambda observations, epsilon=epsilon: act(
            agent, observations, num_tasks, deterministic=False, epsilon=epsilon))
        record(batch, member_of_copy, training_step=agent.num_updates)
        update_metrics = [agent.update(buffer.sample(config.batch_size, sampler))
                          for _ in range(config.rl_updates_per_iter)]
        finished = iteration + 1
        if finished % config.log_interval == 0 or finished == config.num_iters:
            scalars = {f"train/{key}": value for key, value in mean_metrics(update_metrics).items()}
            rollout = evaluate_agents(agent, evaluation, seeds, num_tasks)
            scalars.update(evaluation_scalars(rollout, episodes_per_task))
            scalars["train/epsilon" if algorithm == "dqn" else "train/entropy_alpha"] = (
                epsilon if algorithm == "dqn" else float(agent.alpha.mean()))
            scalars["time/seconds_per_iteration"] = time.perf_counter() - started
            logger.log(finished, scalars)
            bar.set_postfix(eval_return=f"{scalars['eval/return_sum']:.2f}")
            if evaluation.env.trajectory_xy(rollout.observations[0]) is not None:
                logger.figure("eval/trajectory_task_0", trajectory_figure(
                    evaluation.env, tasks[0], rollout.observations[0],
                    rollout.next_observations[0], rollout.truncations[0],
                    int(rollout.lengths[0]), title=f"seed {seeds[0]}, iteration {finished}"),
                    finished)
        if finished % config.save_interval == 0 or finished == config.num_iters:
            save(finished)
    if start == 0 and config.num_iters == 0:
        save(0)
    logger.close()
    return run.path


if __name__ == "__main__":
    run_script(lambda: collect(load_config(
        DataCollectionConfig, config_dir="data_collection_config",
        program="train_single_agent.py")))
