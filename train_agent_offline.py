"""Stage 3: State Relabelling and offline meta-RL on hyper-states, with online-belief evaluation.

Reads ``offline_config/<env-type>.yaml`` and a stage-2 run (``--vae-run``: a path or an exp-name
under ``runs/vae/<env-type>/``): its ``config.yaml``, ``model.json`` and checkpoint, and the
datasets it was trained on. Every stored trajectory is passed through the frozen encoder to give
hyper-states [s, mu, log sigma^2] (State Relabelling); the result is cached in
``<vae-run>/hyperstates/`` and reused while its sources are unchanged (``--transform-data-bamdp
true`` rebuilds it). Then SAC (Box actions) or DQN (Discrete) trains on meta-batches of tasks, and
every ``log_interval`` iterations the deterministic policy is evaluated on held-out tasks with the
belief updated online at every step across the k inner episodes. Writes
``runs/offline/<env-type>/<exp-name>_s<seed>/``: config, the task split (``tasks.json``), logs,
checkpoints, figures (per-episode trajectories, reward predictions, belief maps) and
``evaluation.json`` (the latest evaluation's per-task, per-episode returns and successes).

    python train_agent_offline.py --env-type gridworld --vae-run default
    python train_agent_offline.py --env-type point_robot_sparse --transform-data-bamdp true

Paper: BOReL (Dorfman et al., 2021) section 4 (State Relabelling, off-policy meta-RL);
spec borel.md section 5.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from algorithms.agents import choose_algorithm, make_agent
from algorithms.belief_evaluation import draw_figures
from algorithms.belief_rollouts import OnlineBelief, evaluate_with_online_belief
from algorithms.common import mean_metrics
from algorithms.state_relabelling import HyperstateCache, relabel_states
from algorithms.vae import load_vae_run
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env, task_from_seed
from utils.config import load_config
from utils.datasets import (
    TaskDataset,
    dataset_directory,
    load_task_dataset,
    task_files,
)
from utils.errors import UserError, run_script
from utils.logger import Logger
from utils.progress import progress_range
from utils.replay import FIELDS, EnsembleReplayBuffer
from utils.rollouts import evaluation_scalars
from utils.runs import RunDirectory, find_run, run_path
from utils.seeding import (
    evaluation_seeds,
    prepare_process,
    restore_generator,
    restore_torch_random_state,
    torch_random_state,
)
from utils.stage_configs import OfflineConfig, VAEConfig

STAGE = "offline"


def load_training_data(config: OfflineConfig, vae_config: VAEConfig, dimensions: dict
                       ) -> tuple[list[TaskDataset], list[tuple[int, Path]]]:
    """The datasets the VAE was trained on, for the first ``num_train_tasks`` seeds (with the
    VAE's reward choice and this stage's trajectory subset), and their files."""
    directory = dataset_directory(vae_config.data_dir, config.env_type, vae_config.dataset_name)
    files = task_files(directory)
    count = config.num_train_tasks or len(files)
    if count > len(files):
        raise UserError(f"--num-train-tasks {count} but {directory} holds {len(files)} tasks")
    files = files[:count]
    subset_rng = np.random.default_rng([config.seed, 3])
    datasets = []
    for _, path in files:
        dataset = load_task_dataset(path, config.env_type)
        if dataset.observations.shape[2] != dimensions["observation_dim"] or (
                dataset.actions.shape[2] != dimensions["action_dim"]):
            raise UserError(f"dataset {path} does not fit the VAE run (observations "
                            f"{dataset.observations.shape[2]} vs {dimensions['observation_dim']},"
                            f" actions {dataset.actions.shape[2]} vs {dimensions['action_dim']})")
        if vae_config.use_sparse_rewards:
            if dataset.sparse_rewards is None:
                raise UserError(f"the VAE run trains on sparse rewards but {path} has none")
            dataset = TaskDataset(**{**vars(dataset), "rewards": dataset.sparse_rewards})
        if config.num_trajs_per_task and config.num_trajs_per_task < dataset.num_trajectories:
            dataset = dataset.select(np.sort(subset_rng.choice(
                dataset.num_trajectories, config.num_trajs_per_task, replace=False)))
        datasets.append(dataset)
    return datasets, files


def main(config: OfflineConfig) -> Path:
    get_spec(config.env_type)  # an unknown env-type stops here, before anything is loaded
    device = prepare_process(config)

    vae_run = find_run(config.vae_run, config.runs_dir, "vae", config.env_type)
    vae, vae_config, dimensions = load_vae_run(vae_run, config.env_type, device)

    datasets, files = load_training_data(config, vae_config, dimensions)
    train_seeds = [seed for seed, _ in files]
    env = make_batched_env(config.env_type, 1, vae_config.environment_options())
    multihead = vae_config.reward_decoder == "multihead_bernoulli"
    cell_index = env.cell_index if multihead else None
    cache = HyperstateCache(vae_run.path / "hyperstates")
    sources = cache.describe_sources(files, vae_run.checkpoint_dir / "latest.pt", {
        "num_trajs_per_task": config.num_trajs_per_task, "seed": config.seed,
        "belief_rewards": config.belief_rewards, "num_belief_samples": config.num_belief_samples,
        "use_sparse_rewards": vae_config.use_sparse_rewards})
    if not config.transform_data_bamdp and cache.is_valid(sources):
        hyperstates = cache.load(train_seeds, config.env_type)
    else:
        hyperstates = relabel_states(vae, datasets, device, config.num_belief_samples
                                     if config.belief_rewards else 0, cell_index, config.seed)
        cache.store(train_seeds, hyperstates, sources)

    episodes_per_task = int(dimensions["episodes_per_task"])
    eval_seeds = evaluation_seeds(train_seeds, config.num_eval_tasks, config.seed)
    eval_options = config.environment_options(evaluation=True)
    eval_tasks = np.stack([task_from_seed(config.env_type, seed, eval_options)
                           for seed in eval_seeds])
    evaluation = BatchedBAMDP(make_batched_env(config.env_type, len(eval_seeds), eval_options),
                              episodes_per_task)
    evaluation.set_tasks(eval_tasks)
    choose_algorithm(config, evaluation.action_space)  # --algorithm must fit the actions

    run = RunDirectory.create(
        run_path(config.runs_dir, STAGE, config.env_type, config.exp_name, config.seed),
        config, config.resume, config.overwrite, device=str(device))
    run.write_json("tasks.json", {"vae_run": str(vae_run.path), "train_seeds": train_seeds,
                                  "eval_seeds": eval_seeds, "eval_tasks": eval_tasks.tolist()})
    hyper_dim = hyperstates[0].observations.shape[2]
    agent = make_agent(config, 1, hyper_dim, evaluation.action_space, device,
                       cql_alpha=config.cql_alpha if config.use_cql else 0.0,
                       cql_num_actions=config.cql_num_actions)
    capacity = max(dataset.num_transitions for dataset in hyperstates)
    dims = {"observations": hyper_dim, "actions": dimensions["action_dim"], "rewards": 1,
            "next_observations": hyper_dim, "terminations": 1}
    buffer = EnsembleReplayBuffer(len(hyperstates), capacity, dims, device)
    for index, dataset in enumerate(hyperstates):
        buffer.add_trajectories({name: getattr(dataset, name) for name in FIELDS},
                                dataset.lengths, np.full(dataset.num_trajectories, index))
    sampler = torch.Generator(device=device)
    sampler.manual_seed(config.seed)
    belief = OnlineBelief(vae.encoder, len(eval_seeds), device)
    logger = Logger(run.path, config.use_tensorboard)

    start = 0
    checkpoint = run.load_checkpoint() if config.resume else None
    if checkpoint is not None:
        start = int(checkpoint["iteration"])
        agent.load_state_dict(checkpoint["agent"])
        restore_generator(sampler, checkpoint["sampler"])
        restore_torch_random_state(checkpoint, device)
    logger.truncate_after(start)  # drop rows logged after the checkpoint by a killed run

    bar = progress_range(start, config.num_iters, f"stage 3 {config.env_type}")
    for iteration in bar:
        started = time.perf_counter()
        update_metrics = []
        for _ in range(config.rl_updates_per_iter):
            tasks = torch.randint(len(hyperstates), (config.meta_batch,), generator=sampler,
                                  device=device)
            update_metrics.append(agent.update(buffer.sample_tasks(tasks, config.batch_size,
                                                                   sampler)))
        finished = iteration + 1
        if finished % config.log_interval == 0 or finished == config.num_iters:
            rollout, beliefs = evaluate_with_online_belief(agent, belief, evaluation, eval_seeds)
            scalars = {f"train/{key}": value for key, value in mean_metrics(update_metrics).items()}
            scalars.update(evaluation_scalars(rollout, episodes_per_task))
            scalars["time/seconds_per_iteration"] = time.perf_counter() - started
            logger.log(finished, scalars)
            run.write_json("evaluation.json", {
                "step": finished, "seeds": eval_seeds,
                "returns": rollout.episode_returns(episodes_per_task).tolist(),
                "successes": rollout.successes[..., 0].any(axis=1).tolist()})
            bar.set_postfix(eval_return=f"{scalars['eval/return_sum']:.2f}")
            draw_figures(logger, evaluation, vae, rollout, beliefs, eval_tasks,
                         eval_seeds, multihead, device, finished)
        if finished % config.save_interval == 0 or finished == config.num_iters:
            state = {"iteration": finished, "agent": agent.state_dict(),
                     "sampler": sampler.get_state(), **torch_random_state(device)}
            run.save_checkpoint(state, step=finished, keep=True)
    logger.close()
    return run.path


if __name__ == "__main__":
    run_script(lambda: main(load_config(OfflineConfig, config_dir="offline_config",
                                        program="train_agent_offline.py")))
