"""Online off-policy VariBAD: a belief-conditioned SAC/DQN and the VariBAD VAE trained together
while interacting with the training tasks.

Reads ``online_config/<env-type>.yaml``. The training tasks are those of seeds 0 .. N-1; the
held-out evaluation tasks are new tasks drawn with the run's seed. Each iteration collects
meta-episodes with the stochastic policy (epsilon-greedy for DQN, annealed by iteration) in a
few sampled training tasks, all copies stepped together, with the belief updated online; stores
them in per-task VAE buffers (whole meta-episodes) and policy buffers (hyper-state transitions
[s, mu, log sigma^2] with the beliefs of collection time); then makes RL updates on meta-batches
of tasks and VAE updates on whole meta-episodes. Every ``log_interval`` iterations the
deterministic policy is evaluated on the held-out tasks and on training tasks, with the protocol
of stage 3. Writes ``runs/online/<env-type>/<exp-name>_s<seed>/``: config, task split
(``tasks.json``), dimensions (``model.json``), logs, checkpoints (agent, VAE, optimisers and, in
``latest.pt``, the buffers and random states for an exact ``--resume true``) and figures.

    python online_training.py --env-type gridworld
    python online_training.py --env-type point_robot_sparse --num-iters 200 --seed 1

Paper: BOReL (Dorfman et al., 2021), off-policy VariBAD; spec borel.md section 6.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from algorithms.agents import act, choose_algorithm, epsilon_at, make_agent
from algorithms.belief_evaluation import draw_figures
from algorithms.belief_rollouts import (
    OnlineBelief,
    collect_with_belief,
    evaluate_with_online_belief,
)
from algorithms.common import mean_metrics
from algorithms.online import (
    OnlineBuffers,
    policy_transitions,
    reward_source,
    task_split,
)
from algorithms.vae import VAETrainer, build_vae
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env, resolve_options
from utils.config import load_config
from utils.errors import UserError, run_script
from utils.logger import Logger
from utils.progress import progress_range
from utils.replay import sample_task_indices
from utils.rollouts import MetaEpisodeBatch, evaluation_scalars, stored_action_dim
from utils.runs import RunDirectory, run_path
from utils.seeding import (
    prepare_process,
    restore_generator,
    restore_torch_random_state,
    torch_random_state,
)
from utils.stage_configs import OnlineConfig

STAGE = "online"


def check_config(config: OnlineConfig) -> None:
    """Refuse settings that cannot run, with one clear line each."""
    positive = ("num_train_tasks", "num_eval_tasks", "num_init_rollouts_pool",
                "num_rollouts_per_iter", "num_tasks_sample", "meta_batch", "batch_size",
                "vae_batch_num_rollouts_per_task", "policy_buffer_size", "vae_buffer_size",
                "log_interval", "save_interval", "num_belief_samples")
    for name in positive:
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got "
                            f"{getattr(config, name)}")
    for name in ("num_iters", "rl_updates_per_iter", "vae_updates_per_iter", "pretrain_len"):
        if getattr(config, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 or more, got "
                            f"{getattr(config, name)}")
    if config.num_eval_train_tasks is not None and config.num_eval_train_tasks < 1:
        raise UserError(f"--num-eval-train-tasks must be at least 1 (or null), got "
                        f"{config.num_eval_train_tasks}")
    if config.oracle_belief_rewards and not config.belief_rewards:
        raise UserError("--oracle-belief-rewards true needs --belief-rewards true")


def main(config: OnlineConfig) -> Path:
    spec = get_spec(config.env_type)
    check_config(config)
    device = prepare_process(config)
    episodes_per_task = config.episodes_per_task or spec.episodes_per_task
    options = resolve_options(config.env_type, config.environment_options())
    eval_options = resolve_options(config.env_type, config.environment_options(evaluation=True))

    task_env = make_batched_env(config.env_type, 1, options)
    train_seeds, train_tasks, eval_seeds, eval_tasks = task_split(
        task_env, config.num_train_tasks, config.num_eval_tasks, config.seed)
    multihead = config.reward_decoder == "multihead_bernoulli"
    if multihead and not hasattr(task_env, "cell_index"):
        raise UserError(f"the multi-head reward decoder needs a grid; {config.env_type} has none")
    cell_index = task_env.cell_index if multihead else None

    # One BAMDP of (tasks sampled) x (rollouts per task) copies for collection; one for
    # evaluation holding the held-out tasks, then the first training tasks.
    replicas = config.num_rollouts_per_iter
    collection = BatchedBAMDP(make_batched_env(config.env_type, config.num_tasks_sample
                                               * replicas, options), episodes_per_task)
    collection.seed([int(np.random.SeedSequence([config.seed, 5, copy]).generate_state(1)[0])
                     for copy in range(collection.num_envs)])
    num_train_evaluated = min(config.num_train_tasks, config.num_eval_tasks
                              if config.num_eval_train_tasks is None
                              else config.num_eval_train_tasks)
    evaluated_seeds = eval_seeds + train_seeds[:num_train_evaluated]
    evaluation = BatchedBAMDP(make_batched_env(config.env_type, len(evaluated_seeds),
                                               eval_options), episodes_per_task)
    evaluation.set_tasks(np.concatenate([eval_tasks, train_tasks[:num_train_evaluated]]))
    algorithm = choose_algorithm(config, collection.action_space)
    if config.oracle_belief_rewards and not hasattr(task_env, "belief_rewards"):
        raise UserError(f"--oracle-belief-rewards true needs an env with an exact belief "
                        f"(the gridworld); {config.env_type} has none")

    run = RunDirectory.create(
        run_path(config.runs_dir, STAGE, config.env_type, config.exp_name, config.seed),
        config, config.resume, config.overwrite, device=str(device))
    observation_dim = collection.observation_dim
    action_dim = stored_action_dim(collection.action_space)
    trajectory_len = collection.trajectory_len
    run.write_json("tasks.json", {
        "train_seeds": train_seeds, "train_tasks": train_tasks.tolist(),
        "eval_seeds": eval_seeds, "eval_tasks": eval_tasks.tolist(),
        "evaluated_train_seeds": train_seeds[:num_train_evaluated]})
    run.write_json("model.json", {
        "observation_dim": observation_dim, "action_dim": action_dim,
        "task_dim": int(train_tasks.shape[1]),
        "num_states": int(task_env.num_states) if multihead else None,
        "trajectory_len": trajectory_len, "episodes_per_task": episodes_per_task,
        "algorithm": algorithm})

    vae = build_vae(config, observation_dim, action_dim, int(train_tasks.shape[1]),
                    task_env.num_states if multihead else None).to(device)
    trainer = VAETrainer(vae, config.vae_lr, config.kl_weight, config.reward_loss_weight,
                         config.state_loss_weight, config.task_loss_weight,
                         config.kl_to_gauss_prior)
    agent = make_agent(config, 1, observation_dim + 2 * config.latent_dim,
                       collection.action_space, device)
    buffers = OnlineBuffers(
        config.num_train_tasks, trajectory_len, observation_dim, action_dim, config.latent_dim,
        config.policy_buffer_size, config.vae_buffer_size, device,
        oracle=config.oracle_belief_rewards, keep_policy_trajectories=config.recompute_beliefs)
    sampler = torch.Generator(device=device)
    sampler.manual_seed(config.seed)
    noise = torch.Generator(device=device)
    noise.manual_seed(config.seed + 1)
    # The VAE's meta-episodes live in host memory: their indices are drawn on the host, from the
    # sampler itself on a CPU and from a host generator of its own on a GPU, so that drawing a
    # VAE batch never waits for the device.
    host_sampler = sampler
    if device.type != "cpu":
        host_sampler = torch.Generator()
        host_sampler.manual_seed(config.seed + 2)
    action_rng = np.random.default_rng([config.seed, 6])
    belief = OnlineBelief(vae.encoder, collection.num_envs, device)
    evaluation_belief = OnlineBelief(vae.encoder, evaluation.num_envs, device)
    logger = Logger(run.path, config.use_tensorboard)
    environment_steps = 0

    def store(rollout: MetaEpisodeBatch, beliefs: np.ndarray, task_of_row: np.ndarray,
              iteration: int) -> None:
        """Put a rollout into the buffers, with hyper-states of its collection-time beliefs."""
        nonlocal environment_steps
        source = reward_source(config.belief_rewards, config.oracle_belief_rewards,
                               config.switch_to_belief_reward, iteration)
        transitions = policy_transitions(
            vae, {**vars(rollout), "oracle_rewards": rollout.belief_rewards}, rollout.lengths,
            torch.as_tensor(beliefs, device=device), source, config.num_belief_samples, noise,
            cell_index, config.goal_is_terminal)
        buffers.add(rollout, transitions, task_of_row)
        environment_steps += int(rollout.lengths.sum())

    def collect(tasks_of_copies: np.ndarray, policy) -> tuple[MetaEpisodeBatch, np.ndarray]:
        collection.set_tasks(train_tasks[tasks_of_copies])
        return collect_with_belief(collection, belief, policy)

    def random_policy(hyper_observations: np.ndarray) -> np.ndarray:
        if algorithm == "dqn":
            return action_rng.integers(0, action_dim, len(hyper_observations))
        return action_rng.uniform(-1.0, 1.0, (len(hyper_observations), action_dim))

    def save(iteration: int) -> None:
        """Networks and optimisers in a kept checkpoint; buffers and random states in latest."""
        state = {"iteration": iteration, "agent": agent.state_dict(),
                 "trainer": trainer.state_dict()}
        resume_state = {
            "buffers": buffers.state_dict(), **torch_random_state(device),
            "sampler": sampler.get_state(), "noise": noise.get_state(),
            "host_sampler": host_sampler.get_state(),
            "action_rng": action_rng.bit_generator.state,
            "env_streams": collection.env.random_state(), "environment_steps": environment_steps}
        run.save_checkpoint(state, step=iteration, keep=True, latest_only=resume_state)

    start = 0
    checkpoint = run.load_checkpoint() if config.resume else None
    if checkpoint is not None:
        if "buffers" not in checkpoint:
            raise UserError(f"{run.checkpoint_dir / 'latest.pt'} holds no buffers; cannot resume")
        start = int(checkpoint["iteration"])
        agent.load_state_dict(checkpoint["agent"])
        trainer.load_state_dict(checkpoint["trainer"])
        buffers.load_state_dict(checkpoint["buffers"])
        restore_torch_random_state(checkpoint, device)
        restore_generator(sampler, checkpoint["sampler"])
        restore_generator(noise, checkpoint["noise"])
        if host_sampler is not sampler and "host_sampler" in checkpoint:
            restore_generator(host_sampler, checkpoint["host_sampler"])
        action_rng.bit_generator.state = checkpoint["action_rng"]
        collection.env.set_random_state(checkpoint["env_streams"])
        environment_steps = int(checkpoint["environment_steps"])
        logger.truncate_after(start)
    else:
        # Random initial pool: num_init_rollouts_pool meta-episodes in every training task,
        # collected num_envs at a time; then optional VAE pre-training.
        pool = np.repeat(np.arange(config.num_train_tasks), config.num_init_rollouts_pool)
        for first in range(0, len(pool), collection.num_envs):
            chunk = pool[first : first + collection.num_envs]
            copies = np.resize(chunk, collection.num_envs)
            rollout, beliefs = collect(copies, random_policy)
            keep = np.arange(collection.num_envs) < len(chunk)
            store(rollout.select(keep), beliefs[keep], chunk, 0)
        for _ in range(config.pretrain_len):
            trainer.update(vae_batch(config, buffers, host_sampler, train_tasks, cell_index,
                                     device), noise)

    bar = progress_range(start, config.num_iters, f"online {config.env_type}")
    for iteration in bar:
        started = time.perf_counter()
        epsilon = epsilon_at(config, iteration)
        sampled = sample_task_indices(config.num_train_tasks, config.num_tasks_sample,
                                      sampler).cpu().numpy()
        copies = np.repeat(sampled, replicas)
        rollout, beliefs = collect(copies, lambda hyper_observations, epsilon=epsilon: act(
            agent, hyper_observations, 1, deterministic=False, epsilon=epsilon))
        store(rollout, beliefs, copies, iteration)

        rl_metrics = []
        for _ in range(config.rl_updates_per_iter):
            tasks = sample_task_indices(config.num_train_tasks, config.meta_batch, sampler)
            rl_metrics.append(agent.update(buffers.policy.sample_tasks(
                tasks, config.batch_size, sampler)))
        vae_metrics = [trainer.update(vae_batch(config, buffers, host_sampler, train_tasks,
                                                cell_index, device), noise)
                       for _ in range(config.vae_updates_per_iter)]
        if config.recompute_beliefs and vae_metrics:
            buffers.rebuild_policy(vae, reward_source(
                config.belief_rewards, config.oracle_belief_rewards,
                config.switch_to_belief_reward, iteration), config.num_belief_samples, noise,
                cell_index, config.goal_is_terminal, device)

        finished = iteration + 1
        if finished % config.log_interval == 0 or finished == config.num_iters:
            scalars = {f"train/{key}": value for key, value in mean_metrics(rl_metrics).items()}
            scalars.update({f"vae/{key}": value
                            for key, value in mean_metrics(vae_metrics).items()})
            scalars["train/environment_steps"] = float(environment_steps)
            if algorithm == "dqn":
                scalars["train/epsilon"] = epsilon
            evaluated, evaluated_beliefs = evaluate_with_online_belief(
                agent, evaluation_belief, evaluation, evaluated_seeds)
            held_out = np.arange(evaluation.num_envs) < len(eval_seeds)
            scalars.update(evaluation_scalars(evaluated.select(held_out), episodes_per_task))
            scalars.update(evaluation_scalars(evaluated.select(~held_out), episodes_per_task,
                                              prefix="eval/train_"))
            scalars["time/seconds_per_iteration"] = time.perf_counter() - started
            logger.log(finished, scalars)
            bar.set_postfix(eval_return=f"{scalars['eval/return_sum']:.2f}",
                            train_tasks_return=f"{scalars['eval/train_return_sum']:.2f}")
            draw_figures(logger, evaluation, vae, evaluated, evaluated_beliefs, eval_tasks,
                         eval_seeds, multihead, device, finished)
        if finished % config.save_interval == 0 or finished == config.num_iters:
            save(finished)
    if start == 0 and config.num_iters == 0:
        save(0)
    logger.close()
    return run.path


def vae_batch(config: OnlineConfig, buffers: OnlineBuffers, host_sampler: torch.Generator,
              train_tasks: np.ndarray, cell_index, device: torch.device
              ) -> dict[str, torch.Tensor]:
    """A VAE batch: ``vae_batch_num_rollouts_per_task`` meta-episodes of ``meta_batch`` tasks,
    drawn with the CPU generator ``host_sampler``."""
    tasks = sample_task_indices(config.num_train_tasks, config.meta_batch, host_sampler).numpy()
    return buffers.vae_batch(tasks, config.vae_batch_num_rollouts_per_task, host_sampler,
                             train_tasks, cell_index, device)


if __name__ == "__main__":
    run_script(lambda: main(load_config(OnlineConfig, config_dir="online_config",
                                        program="online_training.py")))
