"""Stage 2: train the VariBAD belief model (VAE) on the offline multi-task data.

Reads ``vae_config/<env-type>.yaml`` and every task's dataset in
``data/<env-type>/<dataset-name>/``. With ``--hindsight-relabelling true`` (Reward Relabelling)
the first inner episodes of a fraction of each task's trajectories are replaced by other tasks'
episodes relabelled with this task's reward function; with ``--policy-replaying true`` they are
replaced by rollouts of other tasks' stage-1 agents in this task (collected once into
``data/<env-type>/<replaying-dataset-name>/``). Writes ``runs/vae/<env-type>/<exp-name>_s<seed>/``:
the config, ``model.json`` (dimensions for stage 3), checkpoints, the ELBO terms in TensorBoard
and ``scalars.csv``, and figures of reward predictions (gridworld: reward-belief heat maps).

    python train_vae_offline.py --env-type gridworld --hindsight-relabelling true
    python train_vae_offline.py --env-type point_robot_wind --policy-replaying true

Paper: BOReL (Dorfman et al., 2021) sections 3-4; spec borel.md section 4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from algorithms.agents import load_collection_agents
from algorithms.common import mean_metrics
from algorithms.relabelling import (
    check_relabelling_possible,
    collect_replaying_rollouts,
    policy_replaying,
    reward_relabelling,
)
from algorithms.vae import VAETrainer, build_vae, reward_predictions
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env, resolve_options
from utils.batches import TrajectoryBatches, epoch_schedule
from utils.config import load_config
from utils.datasets import (
    TaskDataset,
    dataset_directory,
    load_dataset_directory,
    save_task_dataset,
    task_file,
    task_files,
)
from utils.errors import UserError, run_script
from utils.io import remove_stale_temporaries
from utils.logger import Logger
from utils.plotting import grid_belief_figure, reward_prediction_figure
from utils.progress import progress_range
from utils.runs import RunDirectory, code_version, find_run, run_path
from utils.seeding import prepare_process, restore_generator
from utils.stage_configs import VAEConfig

STAGE = "vae"
FIGURE_TASKS = 5


def prepare_datasets(config: VAEConfig, directory: Path) -> tuple[list[TaskDataset], list[int]]:
    """The tasks' datasets (sorted by seed), with sparse rewards swapped in and the trajectory
    subset drawn if the config asks, and their seeds."""
    seeds = [seed for seed, _ in task_files(directory)]
    datasets = load_dataset_directory(directory, config.env_type)
    subset_rng = np.random.default_rng([config.seed, 3])
    prepared = []
    for dataset in datasets:
        if config.use_sparse_rewards:
            if dataset.sparse_rewards is None:
                raise UserError(f"--use-sparse-rewards true but the datasets in {directory} hold "
                                "no sparse_rewards")
            dataset = TaskDataset(**{**vars(dataset), "rewards": dataset.sparse_rewards})
        if config.num_trajs_per_task and config.num_trajs_per_task < dataset.num_trajectories:
            chosen = np.sort(subset_rng.choice(dataset.num_trajectories,
                                               config.num_trajs_per_task, replace=False))
            dataset = dataset.select(chosen)
        prepared.append(dataset)
    return prepared, seeds


def replaying_datasets(config: VAEConfig, datasets: list[TaskDataset], seeds: list[int],
                       bamdp_factory, device: torch.device) -> list[TaskDataset]:
    """Policy Replaying rollouts of every task: loaded if present, else collected from the agents
    of the stage-1 run(s) named by ``collection_run`` and saved."""
    directory = dataset_directory(config.data_dir, config.env_type, config.replaying_dataset_name)
    if all(task_file(directory, seed).is_file() for seed in seeds):
        replayed = load_dataset_directory(directory, config.env_type)
        by_seed = dict(zip([seed for seed, _ in task_files(directory)], replayed, strict=True))
        return [by_seed[seed] for seed in seeds]
    reference = find_run(config.collection_run, config.runs_dir, "data_collection",
                         config.env_type)
    runs = [reference]
    if not Path(config.collection_run).is_dir():  # an exp-name: every seed group's run of it
        runs = [RunDirectory(path) for path in sorted(reference.path.parent.glob(
            f"{config.collection_run}_s*")) if (path / "config.yaml").is_file()] or runs
    groups = []
    for run in runs:
        agent, member_seeds, _ = load_collection_agents(run, device)
        groups.append((agent, member_seeds))
    meta = {**datasets[0].meta, "code_version": code_version(), "policy_replaying": True}
    replayed = collect_replaying_rollouts(
        groups, bamdp_factory, [(seed, dataset.task) for seed, dataset in zip(
            seeds, datasets, strict=True)],
        config.num_replaying_policies, config.replaying_rollouts_per_policy,
        np.random.default_rng([config.seed, 4]), meta)
    remove_stale_temporaries(directory, [task_file(directory, seed).name for seed in seeds])
    for seed, dataset in zip(seeds, replayed, strict=True):
        save_task_dataset(task_file(directory, seed), dataset)
    return replayed


def main(config: VAEConfig) -> Path:
    spec = get_spec(config.env_type)
    device = prepare_process(config)
    if config.hindsight_relabelling and config.policy_replaying:
        raise UserError("choose one of --hindsight-relabelling and --policy-replaying")
    env_options = resolve_options(config.env_type, config.environment_options())
    env = make_batched_env(config.env_type, 1, env_options)
    directory = dataset_directory(config.data_dir, config.env_type, config.dataset_name)
    datasets, seeds = prepare_datasets(config, directory)
    episodes_per_task = int(datasets[0].meta.get("episodes_per_task", spec.episodes_per_task))

    def bamdp_factory(num_envs: int) -> BatchedBAMDP:
        return BatchedBAMDP(make_batched_env(config.env_type, num_envs, env_options),
                            episodes_per_task)

    bamdp = bamdp_factory(1)
    if datasets[0].observations.shape[2] != bamdp.observation_dim:
        raise UserError(f"datasets in {directory} have observations of size "
                        f"{datasets[0].observations.shape[2]}, but {config.env_type} with "
                        f"{episodes_per_task} episodes per task gives {bamdp.observation_dim}")
    multihead = config.reward_decoder == "multihead_bernoulli"
    if multihead and not hasattr(env, "cell_index"):
        raise UserError(f"the multi-head reward decoder needs a grid; {config.env_type} has none")

    if config.hindsight_relabelling:
        check_relabelling_possible(env, config.env_type)
        training_data = reward_relabelling(
            datasets, env, bamdp.to_native_actions, episodes_per_task,
            config.relabelling_fraction, np.random.default_rng([config.seed, 1]))
    elif config.policy_replaying:
        replayed = replaying_datasets(config, datasets, seeds, bamdp_factory, device)
        training_data = policy_replaying(datasets, replayed, episodes_per_task,
                                         np.random.default_rng([config.seed, 1]))
    else:
        training_data = datasets

    run = RunDirectory.create(
        run_path(config.runs_dir, STAGE, config.env_type, config.exp_name, config.seed),
        config, config.resume, config.overwrite, device=str(device))
    dimensions = {
        "observation_dim": int(datasets[0].observations.shape[2]),
        "action_dim": int(datasets[0].actions.shape[2]),
        "task_dim": int(datasets[0].task.shape[0]),
        "num_states": int(env.num_states) if multihead else None,
        "trajectory_len": int(datasets[0].trajectory_len),
        "episodes_per_task": episodes_per_task,
        "dataset": str(directory), "seeds": seeds,
    }
    run.write_json("model.json", dimensions)
    vae = build_vae(config, dimensions["observation_dim"], dimensions["action_dim"],
                    dimensions["task_dim"], dimensions["num_states"]).to(device)
    trainer = VAETrainer(vae, config.vae_lr, config.kl_weight, config.reward_loss_weight,
                         config.state_loss_weight, config.task_loss_weight,
                         config.kl_to_gauss_prior)
    batches = TrajectoryBatches(training_data, device, env.cell_index if multihead else None)
    figure_batches = TrajectoryBatches(datasets, device, env.cell_index if multihead else None)
    schedule_rng = np.random.default_rng([config.seed, 2])
    noise = torch.Generator(device=device)
    noise.manual_seed(config.seed)
    logger = Logger(run.path, config.use_tensorboard)

    start = 0
    checkpoint = run.load_checkpoint() if config.resume else None
    if checkpoint is not None:
        start = int(checkpoint["epoch"])
        trainer.load_state_dict(checkpoint["trainer"])
        schedule_rng.bit_generator.state = checkpoint["schedule_rng"]
        restore_generator(noise, checkpoint["noise"])
    logger.truncate_after(start)  # drop rows logged after the checkpoint by a killed run

    counts = [dataset.num_trajectories for dataset in training_data]
    bar = progress_range(start, config.num_iters, f"stage 2 {config.env_type}")
    for epoch in bar:
        epoch_metrics = [trainer.update(batches.gather(tasks, trajectories), noise)
                         for tasks, trajectories in epoch_schedule(
                             counts, config.tasks_batch_size, config.trajs_per_task_batch,
                             schedule_rng)]
        finished = epoch + 1
        if finished % config.log_interval == 0 or finished == config.num_iters:
            scalars = {f"vae/{key}": value for key, value in mean_metrics(epoch_metrics).items()}
            scalars["vae/updates"] = float(trainer.num_updates)
            logger.log(finished, scalars)
            bar.set_postfix(loss=f"{scalars['vae/loss']:.3f}")
        if finished % config.eval_interval == 0 or finished == config.num_iters:
            draw_figures(logger, vae, figure_batches, env, seeds, multihead, finished)
        if finished % config.save_interval == 0 or finished == config.num_iters:
            run.save_checkpoint({
                "epoch": finished, "trainer": trainer.state_dict(),
                "schedule_rng": schedule_rng.bit_generator.state, "noise": noise.get_state(),
            }, step=finished, keep=True)
    logger.close()
    return run.path


@torch.no_grad()
def draw_figures(logger: Logger, vae, batches: TrajectoryBatches, env, seeds: list[int],
                 multihead: bool, step: int) -> None:
    """Reward predictions along the last trajectory of the first tasks (gridworld: the belief
    heat maps over time of the first task)."""
    count = min(FIGURE_TASKS, batches.num_tasks)
    tasks = np.arange(count)
    trajectories = np.array([batches.num_trajectories(task) - 1 for task in tasks])
    batch = batches.gather(tasks, trajectories)
    means, predictions = reward_predictions(vae, batch)
    lengths = batch["lengths"].cpu().numpy()
    if multihead:
        length = int(lengths[0])
        steps = sorted({int(step) for step in np.linspace(0, length, 6)})
        probabilities = vae.reward_decoder.cell_probabilities(means[0, steps]).cpu().numpy()
        observations = batch["observations"][0].cpu().numpy()
        positions = np.concatenate([observations[:1], batch["next_observations"][0].cpu().numpy()])
        figure = grid_belief_figure(probabilities, positions[steps], batches.datasets[0].task,
                                    steps, env.num_cells)
        logger.figure("vae/reward_belief_task_0", figure, step)
        return
    true = [batch["rewards"][index, : lengths[index], 0].cpu().numpy() for index in tasks]
    predicted = [predictions[index, : lengths[index]].cpu().numpy() for index in tasks]
    titles = [f"seed {seeds[index]}" for index in tasks]
    logger.figure("vae/reward_predictions", reward_prediction_figure(true, predicted, titles), step)


if __name__ == "__main__":
    run_script(lambda: main(load_config(VAEConfig, config_dir="vae_config",
                                        program="train_vae_offline.py")))
