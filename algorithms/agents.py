"""Building a SAC or DQN agent from the shared agent fields, acting with it on numpy arrays, and
stage 1's evaluation of the agents.

SAC is used for Box action spaces and DQN for Discrete ones unless the config says otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces

from algorithms.dqn import DQN
from algorithms.sac import SAC
from environments.bamdp import BatchedBAMDP
from environments.registry import get_spec, make_batched_env
from utils.config import load_saved_config
from utils.errors import UserError
from utils.rollouts import MetaEpisodeBatch, StepObserver, collect_meta_episodes
from utils.runs import RunDirectory
from utils.seeding import parse_seeds
from utils.stage_configs import AgentConfig, DataCollectionConfig

Agent = SAC | DQN
EVALUATION_SEED_OFFSET = 1_000_003
"""Stage 1 evaluates the agent of task seed s in an env stream seeded with s + this offset."""


def choose_algorithm(config: AgentConfig, action_space: spaces.Space) -> str:
    """``sac`` or ``dqn``: the config's choice, or by the action space when it says ``auto``."""
    discrete = isinstance(action_space, spaces.Discrete)
    algorithm = config.algorithm if config.algorithm != "auto" else ("dqn" if discrete else "sac")
    if (algorithm == "dqn") != discrete:
        kind = "Discrete" if discrete else "Box"
        raise UserError(f"--algorithm {algorithm} does not fit the env's {kind} action space")
    return algorithm


def make_agent(config: AgentConfig, num_members: int, observation_dim: int,
               action_space: spaces.Space, device: torch.device, cql_alpha: float = 0.0,
               cql_num_actions: int = 10) -> Agent:
    """K stacked agents with the hyper-parameters of ``config`` (CQL off unless asked)."""
    if choose_algorithm(config, action_space) == "dqn":
        return DQN(num_members, observation_dim, int(action_space.n), config.critic_hidden_sizes,
                   lr=config.critic_lr, gamma=config.gamma, tau=config.tau,
                   max_grad_norm=config.max_grad_norm, cql_alpha=cql_alpha, device=device)
    return SAC(
        num_members, observation_dim, int(action_space.shape[0]), config.policy_hidden_sizes,
        config.critic_hidden_sizes, actor_lr=config.actor_lr, critic_lr=config.critic_lr,
        gamma=config.gamma, tau=config.tau, entropy_alpha=config.entropy_alpha,
        automatic_entropy_tuning=config.automatic_entropy_tuning,
        target_entropy=config.target_entropy, alpha_lr=config.alpha_lr,
        max_grad_norm=config.max_grad_norm, cql_alpha=cql_alpha,
        cql_num_actions=cql_num_actions, device=device,
    )


def epsilon_at(config: AgentConfig, iteration: int) -> float:
    """DQN exploration while collecting in ``iteration``: eps_init + min(1, it / T)
    (eps_final - eps_init), i.e. the value set after iteration it - 1 (spec borel.md 3.1)."""
    fraction = min(1.0, iteration / max(config.epsilon_decay_iters, 1))
    return config.epsilon_initial + fraction * (config.epsilon_final - config.epsilon_initial)


def act(agent: Agent, observations: np.ndarray, num_members: int, deterministic: bool,
        epsilon: float = 0.0) -> np.ndarray:
    """Actions for observations (num_members * R, obs_dim) grouped member-major: copy c is acted
    on by member c // R. Returns (K * R, action_dim) in [-1, 1], or (K * R,) integer actions."""
    inputs = torch.as_tensor(observations, dtype=torch.float32, device=agent.device)
    inputs = inputs.view(num_members, -1, inputs.shape[-1])
    if isinstance(agent, DQN):
        actions = agent.act(inputs, epsilon=0.0 if deterministic else epsilon)
        return actions.reshape(-1).cpu().numpy()
    actions = agent.act(inputs, deterministic=deterministic)
    return actions.reshape(-1, actions.shape[-1]).cpu().numpy()


def evaluate_agents(agent: Agent, bamdp: BatchedBAMDP, task_seeds: list[int], num_members: int,
                    on_step: StepObserver | None = None) -> MetaEpisodeBatch:
    """Stage 1's evaluation: one meta-episode per copy of ``bamdp`` (whose tasks are set) with the
    deterministic policy (tanh of the mean, or greedy DQN); copy c is acted on by member
    c // (K / num_members) and its env stream is seeded with ``task_seeds[c]`` +
    ``EVALUATION_SEED_OFFSET``, so every evaluation of a task sees the same start states."""
    bamdp.seed([seed + EVALUATION_SEED_OFFSET for seed in task_seeds])
    return collect_meta_episodes(bamdp, lambda observations: act(
        agent, observations, num_members, deterministic=True), on_step)


def load_collection_agents(run: RunDirectory, device: torch.device,
                           checkpoint: dict | None = None
                           ) -> tuple[Agent, list[int], DataCollectionConfig]:
    """The stacked agents of a stage-1 run (its latest checkpoint, or ``checkpoint`` when already
    loaded), the seeds of its members in order, and the run's config."""
    config = load_saved_config(DataCollectionConfig, run.config_path)
    seeds = parse_seeds(config.seeds) if config.seeds else [config.seed]
    spec = get_spec(config.env_type)
    bamdp = BatchedBAMDP(make_batched_env(config.env_type, 1, config.environment_options()),
                         config.episodes_per_task or spec.episodes_per_task)
    agent = make_agent(config, len(seeds), bamdp.observation_dim, bamdp.action_space, device)
    if checkpoint is None:
        checkpoint = run.load_checkpoint()
    if checkpoint is None:
        raise UserError(f"stage-1 run {run.path} has no checkpoint to load agents from")
    agent.load_state_dict(checkpoint["agent"])
    return agent, seeds, config
