"""The typed config of every stage; each field's default and meaning is documented here.

Per-env files (``data_collection_config/<env-type>.yaml``, ``vae_config/``, ``offline_config/``,
``online_config/``, and FOCAL's ``configs/<env-type>.json``) hold only what differs from these
defaults: the paper's values for that env. Shared groups of fields (the RL agent, the VAE
architecture) are mixins so that every stage names them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from utils.config import option


@dataclass
class CommonConfig:
    """Fields every stage has."""

    env_type: str = option("", "env-type name from the registry (gridworld, cheetah_vel, ...)")
    seed: int = option(73, "random seed; in stage 1 it also selects the task")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto uses CUDA when present")
    torch_threads: int = option(
        1, "CPU threads of PyTorch's operators (0: PyTorch's default); the small networks here "
        "run fastest on one, and several stall badly when the cores are shared")
    reuse_freed_memory: bool = option(
        True, "let glibc keep freed memory for the next step instead of returning it to the "
        "system (faster on CPU; the process holds on to its peak memory)")
    exp_name: str = option("default", "experiment name; the run lives in <exp-name>_s<seed>")
    runs_dir: str = option("runs", "root folder of run directories")
    data_dir: str = option("data", "root folder of datasets (<data-dir>/<env-type>/<name>/)")
    env_options: dict[str, Any] = option(
        {}, "overrides of the env-type's options, e.g. {start_distribution: uniform}")
    env_name: str | None = option(
        None, "Meta-World ML1 task for --env-type metaworld (e.g. handle-pull-v3); an env option")
    episodes_per_task: int | None = option(
        None, "inner episodes per BAMDP meta-episode (k); null uses the env-type's value")
    resume: bool = option(False, "continue an existing run from its latest checkpoint")
    overwrite: bool = option(False, "delete an existing run directory and start again")
    log_interval: int = option(10, "iterations between evaluations and log lines")
    save_interval: int = option(20, "iterations between kept checkpoints (and dataset saves)")
    use_tensorboard: bool = option(True, "write TensorBoard events beside scalars.csv")

    def environment_options(self, evaluation: bool = False) -> dict[str, Any]:
        """The env options in force: ``env_options``, then (for the evaluation env)
        ``eval_env_options`` where the stage has them, then ``env_name`` if given."""
        options = dict(self.env_options)
        if evaluation:
            options.update(getattr(self, "eval_env_options", {}))
        if self.env_name is not None:
            options["env_name"] = self.env_name
        return options


@dataclass
class AgentConfig:
    """SAC (Box actions) and DQN (Discrete actions) hyper-parameters."""

    algorithm: Literal["auto", "sac", "dqn"] = option(
        "auto", "auto picks SAC for Box and DQN for Discrete action spaces")
    critic_hidden_sizes: list[int] = option([128, 128], "hidden layers of each Q network")
    policy_hidden_sizes: list[int] = option([128, 128], "hidden layers of the SAC policy")
    actor_lr: float = option(3e-4, "Adam learning rate of the policy")
    critic_lr: float = option(3e-4, "Adam learning rate of the Q networks (DQN: its only lr)")
    entropy_alpha: float = option(0.2, "SAC entropy temperature (initial value when tuned)")
    automatic_entropy_tuning: bool = option(False, "learn alpha toward the target entropy")
    target_entropy: float | None = option(None, "target entropy; null means -action_dim")
    alpha_lr: float = option(3e-4, "Adam learning rate of log alpha when tuned")
    gamma: float = option(0.99, "discount factor")
    tau: float = option(0.005, "Polyak rate of the target networks, applied every update")
    batch_size: int = option(256, "transitions per gradient step (per task)")
    epsilon_initial: float = option(1.0, "DQN exploration rate at iteration 0")
    epsilon_final: float = option(0.0, "DQN exploration rate after the decay")
    epsilon_decay_iters: int = option(50, "iterations over which DQN epsilon decays linearly")
    max_grad_norm: float | None = option(None, "clip gradient norms to this value; null: no clip")


@dataclass
class LauncherConfig:
    """Where a script's seed groups run: in this process, in worker processes on this machine, or
    as Ray tasks (utils/launchers.py)."""

    launcher: Literal["local", "processes", "ray"] = option(
        "local", "local runs the seed groups one after another in this process; processes runs "
        "--workers of them at once, each in its own process on this machine; ray runs each as a "
        "Ray task (pip install -r requirements-ray.txt)")
    workers: int = option(
        0, "with --launcher processes: seed groups running at once; 0: one per CPU core")
    ray_address: str | None = option(
        None, "Ray cluster to join ('auto' or host:port of the head node); null starts a local "
        "Ray instance on this machine")
    ray_num_cpus: float = option(1.0, "CPUs that Ray reserves for each task")
    ray_num_gpus: float = option(
        0.0, "GPUs that Ray reserves for each task (a fraction lets tasks share a GPU)")
    max_retries: int = option(
        3, "times Ray reruns a task whose worker or node died; the rerun continues from what the "
        "failed attempt saved")


@dataclass
class VAEArchitectureConfig:
    """The VariBAD belief model: GRU encoder over (a, r, s') and reward/state decoders."""

    latent_dim: int = option(5, "size of the latent task variable z")
    gru_hidden_size: int = option(128, "hidden size of the encoder GRU")
    action_embedding_size: int = option(16, "action embedding width (0 drops the action)")
    state_embedding_size: int = option(32, "state embedding width")
    reward_embedding_size: int = option(16, "reward embedding width")
    reward_decoder: Literal["deterministic", "bernoulli", "multihead_bernoulli"] = option(
        "deterministic", "reward decoder type; multihead_bernoulli has one head per grid cell")
    reward_decoder_inputs: list[str] = option(
        ["next_state"], "decoder inputs besides z: any of next_state, action, state")
    reward_decoder_hidden_sizes: list[int] = option([32, 32], "hidden layers of the decoder")
    decode_state: bool = option(False, "also train a state decoder predicting s'")
    state_decoder_hidden_sizes: list[int] = option([32, 32], "hidden layers of the state decoder")
    vae_lr: float = option(3e-4, "Adam learning rate of encoder and decoders")
    kl_weight: float = option(0.05, "weight of sum_t KL(q_t || q_{t-1}) in the loss")
    reward_loss_weight: float = option(1.0, "weight of the reward reconstruction term")
    state_loss_weight: float = option(1.0, "weight of the state reconstruction term")
    kl_to_gauss_prior: bool = option(False, "KL of every posterior to N(0, I) instead")
    decode_task: bool = option(False, "also train a task decoder predicting the task vector")
    task_loss_weight: float = option(1.0, "weight of the task reconstruction term")


@dataclass
class DataCollectionConfig(CommonConfig, AgentConfig, LauncherConfig):
    """Stage 1 (train_single_agent.py): one SAC/DQN agent per task; its whole history is saved."""

    seeds: str | None = option(
        None, "train several tasks at once as a batched ensemble: '0-39' or '1,5,9'")
    seeds_per_task: int | None = option(
        None, "split --seeds into groups of this many, each one batched collection (one "
        "process or Ray task with --launcher processes or ray); null: all seeds in one group")
    dataset_name: str = option("default", "dataset folder: <data-dir>/<env-type>/<name>/")
    num_iters: int = option(100, "training iterations")
    num_init_rollouts_pool: int = option(10, "random-action meta-episodes before training")
    num_rollouts_per_iter: int = option(5, "meta-episodes collected per iteration")
    rl_updates_per_iter: int = option(200, "gradient steps per iteration")
    buffer_size: int = option(1_000_000, "replay capacity per task (transitions)")
    save_models: bool = option(True, "keep an agent checkpoint every save interval")


@dataclass
class VAEConfig(CommonConfig, VAEArchitectureConfig):
    """Stage 2 (train_vae_offline.py): the belief model on the offline multi-task data."""

    dataset_name: str = option("default", "dataset folder: <data-dir>/<env-type>/<name>/")
    num_trajs_per_task: int | None = option(
        None, "use a random subset (fixed by the seed) of this many trajectories per task")
    use_sparse_rewards: bool = option(
        False, "train on the dataset's sparse_rewards (ant semi-circle: dense collection, "
        "sparse task)")
    num_iters: int = option(100, "epochs over the data")
    tasks_batch_size: int = option(8, "tasks per gradient step")
    trajs_per_task_batch: int = option(8, "trajectories per task per gradient step")
    hindsight_relabelling: bool = option(True, "Reward Relabelling of the first episodes")
    relabelling_fraction: float = option(
        0.632, "probability that a trajectory's first episodes are relabelled; the original drew "
        "n of n trajectories with replacement, which touches 1 - 1/e = 63.2% of them")
    policy_replaying: bool = option(False, "Policy Replaying (for tasks with other dynamics)")
    collection_run: str = option(
        "default", "stage-1 run(s) whose agents Policy Replaying replays: a path or exp-name")
    replaying_dataset_name: str = option("policy_replaying", "dataset folder of replayed rollouts")
    num_replaying_policies: int = option(20, "other tasks' agents replayed in each task")
    replaying_rollouts_per_policy: int = option(10, "meta-episodes per replayed agent")
    eval_interval: int = option(20, "epochs between reward-prediction figures")


@dataclass
class OfflineConfig(CommonConfig, AgentConfig):
    """Stage 3 (train_agent_offline.py): State Relabelling and offline SAC/DQN on hyper-states."""

    vae_run: str = option(
        "default", "stage-2 run: a path or an exp-name under runs/vae/<env-type>/")
    transform_data_bamdp: bool = option(False, "rebuild the hyper-state cache even if valid")
    num_train_tasks: int | None = option(None, "training tasks (first by seed); null: all")
    num_eval_tasks: int = option(20, "evaluation tasks")
    num_trajs_per_task: int | None = option(None, "use this many trajectories per task")
    meta_batch: int = option(16, "tasks per gradient step")
    num_iters: int = option(1000, "training iterations")
    rl_updates_per_iter: int = option(250, "gradient steps per iteration")
    use_cql: bool = option(False, "add the conservative CQL(H) term to the critic loss")
    cql_alpha: float = option(2.0, "weight of the CQL term")
    cql_num_actions: int = option(10, "sampled actions per state in the CQL estimate")
    belief_rewards: bool = option(False, "train on the belief reward E_b[r-hat] instead of r")
    num_belief_samples: int = option(20, "posterior samples of the belief reward")
    eval_env_options: dict[str, Any] = option(
        {}, "env options of the evaluation env (the data's start distribution is not used)")


@dataclass
class OnlineConfig(CommonConfig, AgentConfig, VAEArchitectureConfig):
    """online_training.py: off-policy VariBAD, agent and VAE trained while interacting (spec
    borel.md 6). The agent acts on hyper-states [s, mu, log sigma^2]."""

    num_train_tasks: int = option(80, "training tasks: the tasks of seeds 0 .. N-1")
    num_eval_tasks: int = option(
        20, "held-out tasks, drawn with the run's seed and different from every training task")
    num_eval_train_tasks: int | None = option(
        None, "training tasks evaluated too (the first N; null: as many as --num-eval-tasks)")
    num_iters: int = option(1000, "training iterations")
    num_init_rollouts_pool: int = option(5, "random meta-episodes per training task at start")
    num_rollouts_per_iter: int = option(5, "meta-episodes per sampled task per iteration")
    num_tasks_sample: int = option(5, "training tasks collected from per iteration")
    rl_updates_per_iter: int = option(1000, "RL gradient steps per iteration")
    vae_updates_per_iter: int = option(25, "VAE gradient steps per iteration")
    meta_batch: int = option(16, "tasks per RL and VAE gradient step")
    policy_buffer_size: int = option(1_000_000, "hyper-state transitions kept per task")
    vae_buffer_size: int = option(
        100_000, "transitions kept per task for the VAE, as whole meta-episodes")
    vae_batch_num_rollouts_per_task: int = option(2, "meta-episodes per task per VAE step")
    pretrain_len: int = option(0, "VAE updates after the random pool, before the first iteration")
    belief_rewards: bool = option(
        False, "the agent trains on the belief reward R+ = E_{z~b}[r-hat] instead of r")
    oracle_belief_rewards: bool = option(
        False, "with belief rewards: use the env's exact belief reward (gridworld) as R+")
    switch_to_belief_reward: int | None = option(
        None, "iteration from which R+ is stored (null: from the start)")
    num_belief_samples: int = option(20, "posterior samples of the learned belief reward R+")
    goal_is_terminal: bool = option(
        True, "reaching the goal ends bootstrapping, as in stages 1 and 3 and the original; "
        "false bootstraps through it, since the meta-episode goes on (spec 9.8)")
    recompute_beliefs: bool = option(
        False, "after each iteration's VAE updates, recompute the beliefs (and R+) of every "
        "stored hyper-state with the current VAE; off in the paper (collection-time beliefs)")
    eval_env_options: dict[str, Any] = option(
        {}, "env options of the evaluation env (e.g. start at the origin)")


@dataclass
class FocalConfig(CommonConfig, LauncherConfig):
    """launch_focal.py: FOCAL (distance-metric context encoder + BRAC SAC) on offline data.

    Defaults are FOCAL's ``configs/default.py`` (spec focal.md 3.10), except ``data_slice``:
    default.py loaded only the expert checkpoint's trajectories; the default here is the whole
    collection history, as BOReL trains on, and the configs of FOCAL's env-types name their
    slice. ``configs/<env-type>.json`` holds each env's overrides (spec 5.1 and 9), for FOCAL's
    env-types (dashes: one episode per task, FOCAL's evaluation) and BOReL's (underscores: k
    episodes per task, BOReL's evaluation protocol with online and offline context). Discrete
    action spaces get a categorical policy with an exact KL to a behaviour-cloning model in place
    of the dual critic.
    """

    seeds: str | None = option(
        None, "one FOCAL run per seed ('0-4' or '1,5,9'), each in its own run directory and, "
        "with --launcher ray, its own Ray task; null: the run of --seed")
    # ---------------------------------------------------------------- data and task split
    dataset_name: str = option("default", "dataset folder: <data-dir>/<env-type>/<name>/")
    num_train_tasks: int = option(80, "training tasks: the first ones by seed")
    num_eval_tasks: int = option(20, "held-out tasks: the next ones by seed")
    num_trajs_per_task: int | None = option(
        50, "keep the last N trajectories (in collection order) of each task's slice; null: all")
    data_slice: Literal["all", "expert", "medium", "random"] = option(
        "all", "quality slice by the collecting agent's training step s, with M the task's "
        "largest s: expert s >= 2M/3, medium M/3 <= s < 2M/3, random s < M/3")
    ignore_terminations: bool = option(
        False, "bootstrap through every stored transition (the point robots store reaching the "
        "goal as a termination, which FOCAL's envs never ended on)")
    # ---------------------------------------------------------------- networks
    latent_size: int = option(20, "task embedding size L")
    net_size: int = option(256, "width of the 3 hidden layers of the policy, Q, V and dual critic")
    context_hidden_sizes: list[int] = option([200, 200, 200], "context encoder hidden layers")
    use_next_obs_in_context: bool = option(False, "add s' to each context transition")
    use_task_embedding: bool = option(
        True, "false: a baseline without task inference (z = 0, the encoder is not trained)")
    # ---------------------------------------------------------------- schedule
    meta_batch: int = option(16, "tasks per gradient step (T)")
    mb_replace: bool = option(True, "draw the meta-batch's tasks with replacement")
    batch_size: int = option(256, "RL transitions per task per gradient step (B)")
    embedding_batch_size: int = option(64, "context transitions per task (N)")
    num_iterations: int = option(500, "outer iterations")
    num_train_steps_per_itr: int = option(2000, "gradient steps per iteration")
    num_initial_steps: int = option(
        2000, "per training task; only for the paper's 'Number of env steps total' x-axis")
    sample_steps_per_iteration: int = option(
        4000, "tasks sampled x transitions copied per iteration in the original; only for the "
        "'Number of env steps total' x-axis")
    # ---------------------------------------------------------------- evaluation
    # FOCAL's env-types use num-evals ... num-online-episodes; BOReL's play one meta-episode of
    # k x H steps per held-out task (H the env's own episode length) and use offline-context-size.
    num_evals: int = option(2, "evaluation repeats per task")
    num_steps_per_eval: int = option(
        600, "steps per evaluation repeat: ceil(this / max-path-length) trajectories, each with "
        "max-path-length more offline context transitions")
    max_path_length: int = option(200, "evaluation episode length")
    evaluate_train_tasks: bool = option(
        True, "also evaluate the first num-eval-tasks training tasks (AverageReturn_all_train_"
        "tasks)")
    num_online_episodes: int = option(
        2, "episodes of the online-context protocol: the first with z = 0, each later one with z "
        "from the policy's own earlier transitions in the task")
    offline_context_size: int | None = option(
        None, "BOReL's (BAMDP) env-types: offline transitions of the task that give z in the "
        "offline-context protocol; null: one meta-episode's worth (k x H)")
    num_embedding_contexts: int = option(
        10, "contexts per task encoded at each evaluation for the embedding plot, RMS and ESR")
    eval_env_options: dict[str, Any] = option({}, "env options of the evaluation env")
    # ---------------------------------------------------------------- actor-critic
    discount: float = option(0.99, "discount factor")
    reward_scale: float = option(5.0, "rewards in the Bellman target are multiplied by this")
    soft_target_tau: float = option(0.005, "Polyak rate of the target V network")
    policy_lr: float = option(3e-4, "policy learning rate")
    qf_lr: float = option(3e-4, "Q learning rate")
    vf_lr: float = option(3e-4, "V learning rate")
    max_entropy: bool = option(True, "keep -log pi in the V target and the actor loss")
    policy_mean_reg_weight: float = option(1e-3, "L2 weight on the policy mean")
    policy_std_reg_weight: float = option(1e-3, "L2 weight on the policy log std")
    # ---------------------------------------------------------------- context encoder
    context_lr: float = option(3e-4, "context encoder learning rate")
    z_loss_weight: float = option(10.0, "weight of the distance-metric loss")
    metric_loss: Literal["inverse_square", "inverse", "linear", "square"] = option(
        "inverse_square", "negative (different-task) term: beta/(d^2 + eps), beta/(d + eps), "
        "-beta d or -beta d^2")
    metric_beta: float = option(
        1.0, "beta of the negative term (the paper's ablation: 1, 2, 8, 16 for inverse-square, "
        "inverse, linear, square)")
    metric_epsilon: float = option(0.1, "epsilon in the negative-power distance terms")
    metric_positive: Literal["rms", "square"] = option(
        "rms", "positive (same-task) term: sqrt(d^2 + 1e-3) as the code, or d^2 as the paper")
    metric_distance: Literal["mean", "sum"] = option(
        "mean", "d^2 averages (code) or sums (paper) the squared differences over the L dims")
    allow_backward_z: bool = option(
        False, "coupled: the Bellman (Q) loss also trains the encoder through z")
    sparse_rewards: bool = option(False, "contexts use the dataset's sparse rewards; reported "
                                  "returns sum the env's sparse reward")
    # ---------------------------------------------------------------- BRAC
    use_brac: bool = option(True, "behaviour regularisation with the KL dual critic (Discrete "
                            "actions: the exact KL to a behaviour-cloning model)")
    use_value_penalty: bool = option(False, "subtract alpha * divergence in the V target")
    use_policy_regularisation: bool = option(True, "add alpha * divergence to the policy loss")
    value_penalty_state: Literal["next", "current"] = option(
        "next", "divergence of the value penalty at s' (BRAC) or at s (the original code)")
    c_lr: float = option(1e-4, "dual critic (Discrete: behaviour-cloning model) learning rate")
    c_iter: int = option(3, "dual critic (Discrete: behaviour-cloning model) steps per gradient "
                         "step (later ones on fresh batches)")
    dual_critic_penalty: Literal["gradient", "magnitude", "none"] = option(
        "gradient", "penalty on the dual critic: one-sided gradient penalty on ||grad_a c|| "
        "(BRAC), the original code's penalty on |c|, or none")
    gradient_penalty_weight: float = option(5.0, "weight of the dual critic's penalty")
    alpha_lr: float = option(1.0, "step size of the BRAC alpha")
    alpha_init: float = option(500.0, "initial BRAC alpha")
    alpha_max: float = option(2000.0, "alpha is kept in [0, alpha-max]")
    target_divergence: float = option(0.05, "target KL divergence of the alpha update")
    train_alpha: bool = option(True, "learn alpha toward the target divergence; false: fixed")


@dataclass
class ReproduceConfig(LauncherConfig):
    """reproduce.py: every stage for one env at a preset's budgets, then the results table."""

    launcher: Literal["local", "processes", "ray"] = option(
        "processes", "where the chains of steps after stage 1 run (each BOReL variant's VAE and "
        "stage 3, each FOCAL run): processes runs --workers of them at once on this machine; "
        "local one after another in this process; ray as Ray tasks")

    env_type: str = option("", "env-type name from the registry (gridworld, cheetah_vel, ...)")
    env_name: str | None = option(None, "Meta-World ML1 task for --env-type metaworld")
    preset: Literal["quick", "paper"] = option(
        "quick", "quick: sized for a 2-core CPU; paper: the papers' budgets (GPU recommended)")
    seeds: str = option(
        "73", "seeds of the VAE, stage-3 and FOCAL runs ('73', '0-4' or '1,5'); the table "
        "pools evaluation tasks over them")
    focal_ablations: bool | None = option(
        None, "also run FOCAL without a task embedding and with the other distance metrics; "
        "null: the preset decides (paper: yes, quick: no)")
    device: Literal["auto", "cpu", "cuda"] | None = option(
        None, "device of every stage; null: cpu for the quick preset, auto (CUDA when present) "
        "for the paper preset")
    torch_threads: int = option(1, "CPU threads of PyTorch's operators in every stage")
    runs_dir: str = option("runs", "root folder of run directories")
    data_dir: str = option("data", "root folder of datasets")
    results_dir: str = option("results", "the table and figures go to <results-dir>/<env-type>/")
    use_tensorboard: bool = option(True, "write TensorBoard events in every run")
    resume: bool = option(True, "skip finished steps and resume unfinished ones")
    overwrite: bool = option(False, "run every step again from scratch")


@dataclass
class SimulationConfig:
    """sim_policy.py RUN_DIR: roll a trained run's policy out, report, render and save it."""

    num_tasks: int | None = option(
        None, "the first N of the run's evaluation tasks (extended with fresh evaluation tasks "
        "where the run's kind draws them); null: the run's own evaluation tasks")
    task_seeds: str | None = option(
        None, "play the tasks of these seeds instead: '0-3' or '1,5,9'")
    episodes: int | None = option(
        None, "episodes per task: the inner episodes of a meta-episode (BOReL) or FOCAL's "
        "trajectories per protocol; null: the run's own number")
    video: bool = option(False, "write one GIF per task into the output folder")
    save_dataset: str | None = option(
        None, "write the rollouts as datasets into this folder (task_<seed>.npz), e.g. "
        "data/<env-type>/<dataset-name>")
    output_dir: str | None = option(None, "folder of the table and videos; null: <RUN_DIR>/sim")
    overwrite: bool = option(False, "replace dataset files that already exist")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto uses CUDA when present")


STAGE_CONFIGS: dict[str, tuple[type, str]] = {
    "data_collection": (DataCollectionConfig, "data_collection_config"),
    "vae": (VAEConfig, "vae_config"),
    "offline": (OfflineConfig, "offline_config"),
    "online": (OnlineConfig, "online_config"),
    "focal": (FocalConfig, "configs"),
}
