"""FOCAL: offline meta-RL with a distance-metric context encoder and a behaviour-regularised SAC.

Reads ``configs/<env-type>.json`` (FOCAL's per-env overrides) and the stage-1 datasets
``data/<env-type>/<dataset-name>/task_<seed>.npz`` (the same files BOReL reads): the first
``num_train_tasks`` tasks by seed train, the next ``num_eval_tasks`` are held out. FOCAL's
env-types (dashes) are evaluated with FOCAL's protocol (one episode per task, offline context
growing by one path per trajectory; ``algorithms/focal_evaluation.py``); BOReL's env-types
(underscores) with BOReL's: one meta-episode of k inner episodes per held-out task, with z from
the meta-episode's own transitions (online context) and from the task's offline data (offline
context; ``algorithms/focal_meta_evaluation.py``). Discrete action spaces (the gridworld) train
``DiscreteFOCAL``. Writes the run directory ``runs/focal/<env-type>/<exp-name>_s<seed>/``:
``config.yaml``, ``meta.json`` (with the task split), ``progress.csv`` (one row per evaluation,
FOCAL's column names), ``evaluation.json`` (the latest evaluation's per-task per-episode returns),
``scalars.csv`` and TensorBoard events, ``checkpoints/`` and ``figures/`` (embedding plots,
trajectories).

    python launch_focal.py configs/sparse-point-robot.json
    python launch_focal.py --env-type cheetah-vel --num-iterations 100 --device auto
    python launch_focal.py --env-type cheetah-vel --seeds 0-4 --launcher ray --ray-num-gpus 0.5

    python launch_focal.py --env-type gridworld

``--seeds 0-4`` trains one run per seed (``<exp-name>_s0`` ... ``_s4``), one after another, with
``--launcher processes`` up to ``--workers`` at once in worker processes, or with ``--launcher
ray`` as Ray tasks.

Paper: FOCAL (Li, Yang, Luo, ICLR 2021), sections 4-5; spec focal.md section 3 (algorithm) and
section 4 (evaluation protocol); BOReL's protocol: spec borel.md section 5.5.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from algorithms.common import mean_metrics
from algorithms.focal import FOCAL, FocalHyperparameters
from algorithms.focal_data import OfflineTaskData, split_tasks
from algorithms.focal_discrete import DiscreteFOCAL
from algorithms.focal_evaluation import EvaluationResult, FocalEvaluator, return_columns
from algorithms.focal_meta_evaluation import (
    MetaEpisodeEvaluation,
    MetaEpisodeEvaluator,
)
from algorithms.focal_meta_evaluation import return_columns as meta_episode_return_columns
from environments.registry import get_spec
from utils.config import load_config
from utils.datasets import dataset_directory
from utils.embeddings import embedding_figure
from utils.errors import UserError, run_script
from utils.io import atomic_write_text
from utils.launchers import GroupOutputs, launch
from utils.logger import Logger
from utils.plotting import trajectory_figure
from utils.progress import progress_range
from utils.runs import RunDirectory, run_path
from utils.seeding import (
    parse_seeds,
    prepare_process,
    restore_generator,
    restore_torch_random_state,
    torch_random_state,
    wait_for_device,
)
from utils.stage_configs import FocalConfig

STAGE = "focal"
TRAINING_COLUMNS = {  # FOCAL's progress.csv name -> key of FOCAL.update's metrics
    "Z Loss": "z_loss", "QF Loss": "q_loss", "VF Loss": "v_loss", "Policy Loss": "policy_loss",
    "Dual Critic Loss": "dual_critic_loss", "alpha": "alpha", "div_estimate Mean": "divergence",
    "Q Predictions Mean": "q_prediction", "V Predictions Mean": "v_prediction",
    "Log Pis Mean": "log_prob", "Policy mu Mean": "policy_mean",
    "Policy log std Mean": "policy_log_std", "Z spread": "latent_spread",
}
DISCRETE_TRAINING_COLUMNS = {"Behaviour Loss": "behaviour_loss"}


def train(config: FocalConfig) -> list[Path]:
    """One FOCAL run per seed of ``--seeds`` (else the run of ``--seed``), each run by
    ``--launcher``; returns the run directories."""
    seeds = parse_seeds(config.seeds) if config.seeds else [config.seed]
    return launch(train_seed, config, [[seed] for seed in seeds], seed_outputs)


def train_seed(config: FocalConfig, group: list[int]) -> Path:
    """The run of the group's one seed (the function each launcher task runs)."""
    return main(dataclasses.replace(config, seed=group[0], seeds=None))


def seed_outputs(config: FocalConfig, group: list[int]) -> GroupOutputs:
    return GroupOutputs(run_path(config.runs_dir, STAGE, config.env_type, config.exp_name,
                                 group[0]))


def main(config: FocalConfig) -> Path:
    """One FOCAL run with ``--seed``."""
    spec = get_spec(config.env_type)
    meta_episodes = spec.paper == "borel"  # BOReL's env-types: BOReL's evaluation protocol
    if not meta_episodes and config.episodes_per_task not in (None, 1):
        raise UserError(f"FOCAL's env-type {config.env_type!r} plays one episode per task; "
                        "--episodes-per-task applies to BOReL's env-types (e.g. gridworld)")
    device = prepare_process(config)
    split = split_tasks(dataset_directory(config.data_dir, config.env_type, config.dataset_name),
                        config.num_train_tasks, config.num_eval_tasks)
    data = OfflineTaskData.from_config(config, split, device)
    num_train, num_test = config.num_train_tasks, config.num_eval_tasks
    test_task_ids = list(range(num_train, num_train + num_test))
    if meta_episodes:
        evaluator = MetaEpisodeEvaluator(
            config.env_type, config.environment_options(evaluation=True), data, num_train,
            test_task_ids, config.episodes_per_task or spec.episodes_per_task,
            config.offline_context_size, config.seed)
        action_space = evaluator.action_space
    else:
        evaluator = FocalEvaluator.from_config(config, data)
        action_space = evaluator.offline_env.action_space
    agent_class = DiscreteFOCAL if isinstance(action_space, spaces.Discrete) else FOCAL
    focal = agent_class(data.observation_dim, data.action_dim, data.transition_dim,
                        FocalHyperparameters.from_config(config), device)

    run = RunDirectory.create(
        run_path(config.runs_dir, STAGE, config.env_type, config.exp_name, config.seed),
        config, config.resume, config.overwrite, device=str(device))
    meta = run.read_json("meta.json")
    run.write_json("meta.json", {**meta, "task_split": split.as_dict(),
                                 "trajectories_per_task": data.num_trajectories,
                                 "evaluation_protocol": "meta_episodes" if meta_episodes
                                 else "focal"})
    logger = Logger(run.path, config.use_tensorboard)
    sampler = torch.Generator(device=device)
    sampler.manual_seed(config.seed)

    start, train_seconds, rows = 0, 0.0, []
    checkpoint = run.load_checkpoint() if config.resume else None
    if checkpoint is not None:
        start, train_seconds = int(checkpoint["iteration"]), float(checkpoint["train_seconds"])
        rows = [dict(row) for row in checkpoint["progress"]]
        focal.load_state_dict(checkpoint["focal"])
        restore_torch_random_state(checkpoint, device)
        restore_generator(sampler, checkpoint["sampler"])
    logger.truncate_after(start)  # drop rows logged after the checkpoint by a killed run
    write_progress(run.path / "progress.csv", rows)

    def save(iteration: int) -> None:
        state = {"iteration": iteration, "focal": focal.state_dict(),
                 "train_seconds": train_seconds, "progress": rows,
                 "sampler": sampler.get_state(), **torch_random_state(device)}
        run.save_checkpoint(state, step=iteration, keep=iteration % config.save_interval == 0)

    bar = progress_range(start, config.num_iterations, f"FOCAL {config.env_type}")
    for iteration in bar:
        started = time.perf_counter()
        update_metrics = []
        for _ in range(config.num_train_steps_per_itr):
            batch = data.sample_training_batch(
                num_train, config.meta_batch, config.batch_size, config.embedding_batch_size,
                config.c_iter if config.use_brac else 1, config.mb_replace, sampler)
            update_metrics.append(focal.update(batch))
        wait_for_device(device)
        iteration_seconds = time.perf_counter() - started
        train_seconds += iteration_seconds
        finished = iteration + 1
        if finished % config.log_interval == 0 or finished == config.num_iterations:
            evaluation_started = time.perf_counter()
            result = evaluator.evaluate(focal, config.num_embedding_contexts,
                                        config.embedding_batch_size)
            evaluation_seconds = time.perf_counter() - evaluation_started
            training_metrics = mean_metrics(update_metrics)
            if meta_episodes:
                row = meta_episode_row(finished, focal.num_updates, training_metrics, result)
            else:
                row = progress_row(config, finished, focal.num_updates, training_metrics, result)
            row.update({"Train Time (s)": iteration_seconds, "Eval Time (s)": evaluation_seconds,
                        "Epoch Time (s)": iteration_seconds + evaluation_seconds,
                        "Total Train Time (s)": train_seconds})
            rows.append(row)
            write_progress(run.path / "progress.csv", rows)
            if meta_episodes:
                logger.log(finished, meta_episode_scalars(row, training_metrics, result))
                bar.set_postfix(return_sum=f"{row[ONLINE_SUM_COLUMN]:.2f}")
                save_meta_episode_figures(logger, evaluator, data, result, num_train, finished)
                write_evaluation(run, finished, split.eval_seeds, data.tasks[test_task_ids],
                                 result.online_returns, result.offline_returns,
                                 result.online_successes, result.offline_successes)
            else:
                logger.log(finished, tensorboard_scalars(row, training_metrics, result))
                bar.set_postfix(test_return=f"{row['AverageReturn_all_test_tasks']:.2f}")
                save_figures(logger, evaluator, data, result, num_train, finished)
                write_evaluation(run, finished, split.eval_seeds, data.tasks[test_task_ids],
                                 result.online_returns, result.test_returns)
        if finished % config.save_interval == 0 or finished == config.num_iterations:
            save(finished)
    evaluator.close()
    logger.close()
    return run.path


def progress_row(config: FocalConfig, epoch: int, num_updates: int,
                 training_metrics: dict[str, float], result: EvaluationResult
                 ) -> dict[str, float]:
    """One row of progress.csv in FOCAL's column names (spec focal.md 4.3), with the metrics of
    ``FOCAL.update`` averaged over the iteration's updates (NaN when it made none)."""
    row: dict[str, float] = {
        "Epoch": epoch,
        "Number of train steps total": num_updates,
        "Number of env steps total": config.num_initial_steps * config.num_train_tasks
        + epoch * config.sample_steps_per_iteration,
        **return_columns(result.test_returns, result.train_returns, result.online_returns),
    }
    for column, key in TRAINING_COLUMNS.items():
        row[column] = training_metrics[key] if training_metrics else float("nan")
    row["Embedding RMS"], row["Embedding ESR"] = result.rms, result.esr
    return row


def tensorboard_scalars(row: dict[str, float], training_metrics: dict[str, float],
                        result: EvaluationResult) -> dict[str, float]:
    """The logger's tags (eval/, focal/, time/) for one evaluation, with the iteration's mean
    update metrics as ``focal/<name>``."""
    scalars = {
        "eval/test_return": row["AverageReturn_all_test_tasks"],
        "eval/test_return_first_trajectory": row["AverageReturn_first_trajectory_all_test_tasks"],
        "eval/online_context_return_sum": row["AverageReturn_online_context_sum_all_test_tasks"],
        "eval/embedding_rms": result.rms, "eval/embedding_esr": result.esr,
        "time/train_seconds": row["Train Time (s)"], "time/eval_seconds": row["Eval Time (s)"],
        "data/env_steps_total": row["Number of env steps total"],
    }
    if "AverageReturn_all_train_tasks" in row:
        scalars["eval/train_return"] = row["AverageReturn_all_train_tasks"]
    for episode, value in enumerate(result.online_returns.mean(axis=0), start=1):
        scalars[f"eval/online_context_return_episode_{episode}"] = float(value)
    scalars.update({f"focal/{key}": value for key, value in training_metrics.items()})
    return scalars


def save_figures(logger: Logger, evaluator: FocalEvaluator, data: OfflineTaskData,
                 result: EvaluationResult, num_train: int, step: int) -> None:
    """The embedding plot and, for planar tasks, the last offline-context trajectory of the first
    held-out task."""
    log_embedding_figure(logger, result.latents, data.tasks, num_train, result.rms, result.esr,
                         step)
    env, rollout = evaluator.offline_env, result.last_rollout
    if evaluator.test_task_ids and env.env.trajectory_xy(rollout.observations[0]) is not None:
        logger.figure("eval/trajectory_test_task_0", trajectory_figure(
            env.env, data.tasks[evaluator.offline_copies[0]], rollout.observations[0],
            rollout.next_observations[0], rollout.truncations[0], int(rollout.lengths[0]),
            title=f"held-out task 0, offline context, iteration {step}"), step)


def log_embedding_figure(logger: Logger, latents: np.ndarray, tasks: np.ndarray, num_train: int,
                         rms: float, esr: float, step: int) -> None:
    """The 2-D projection of every task's embeddings (num_tasks, C, L), training tasks marked."""
    is_train = np.arange(len(tasks)) < num_train
    figure = embedding_figure(latents, tasks, is_train, title=f"task embeddings, iteration "
                              f"{step} (RMS {rms:.3f}, ESR {esr:.2f})")
    logger.figure("eval/task_embeddings", figure, step)


def training_columns(training_metrics: dict[str, float]) -> dict[str, float]:
    """FOCAL's loss columns from the update metrics averaged over the iteration, for the metrics
    the agent reports (the Discrete variant has a behaviour loss instead of the dual critic's and
    no Gaussian mean or log std)."""
    columns = {**TRAINING_COLUMNS, **DISCRETE_TRAINING_COLUMNS}
    return {column: training_metrics[key] for column, key in columns.items()
            if key in training_metrics}


ONLINE_SUM_COLUMN = "AverageReturn_online_context_sum_all_test_tasks"


def meta_episode_row(epoch: int, num_updates: int, training_metrics: dict[str, float],
                     result: MetaEpisodeEvaluation) -> dict[str, float]:
    """One row of progress.csv for BOReL's env-types: mean over held-out tasks of each inner
    episode's return, their sum and the success rate, for the online and the offline context."""
    row: dict[str, float] = {"Epoch": epoch, "Number of train steps total": num_updates}
    row.update(meta_episode_return_columns(result.online_returns, result.offline_returns))
    for protocol, successes in (("online", result.online_successes),
                                ("offline", result.offline_successes)):
        row[f"SuccessRate_{protocol}_context_all_test_tasks"] = float(successes.mean())
    row.update(training_columns(training_metrics))
    row["Embedding RMS"], row["Embedding ESR"] = result.rms, result.esr
    return row


def meta_episode_scalars(row: dict[str, float], training_metrics: dict[str, float],
                         result: MetaEpisodeEvaluation) -> dict[str, float]:
    """Stage 3's tags for the online-context protocol (``eval/return_episode_{i}``,
    ``eval/return_sum``, ``eval/success_rate``), the same with ``offline_context_`` for the
    offline one, the embedding statistics, ``focal/`` losses and ``time/``."""
    scalars: dict[str, float] = {}
    for prefix, returns, successes in (
            ("eval/", result.online_returns, result.online_successes),
            ("eval/offline_context_", result.offline_returns, result.offline_successes)):
        for episode, value in enumerate(returns.mean(axis=0), start=1):
            scalars[f"{prefix}return_episode_{episode}"] = float(value)
        scalars[f"{prefix}return_sum"] = float(returns.sum(axis=1).mean())
        scalars[f"{prefix}success_rate"] = float(successes.mean())
    scalars.update({"eval/embedding_rms": result.rms, "eval/embedding_esr": result.esr,
                    "time/train_seconds": row["Train Time (s)"],
                    "time/eval_seconds": row["Eval Time (s)"]})
    scalars.update({f"focal/{key}": value for key, value in training_metrics.items()})
    return scalars


def save_meta_episode_figures(logger: Logger, evaluator: MetaEpisodeEvaluator,
                              data: OfflineTaskData, result: MetaEpisodeEvaluation,
                              num_train: int, step: int) -> None:
    """The embedding plot and, for planar tasks, the first held-out task's meta-episode (one
    colour per inner episode) under each protocol."""
    log_embedding_figure(logger, result.latents, data.tasks, num_train, result.rms, result.esr,
                         step)
    env = evaluator.env.env
    task = data.tasks[evaluator.test_task_ids[0]]
    for protocol, rollout in (("online", result.online_rollout),
                              ("offline", result.offline_rollout)):
        if env.trajectory_xy(rollout.observations[0]) is None:
            return
        logger.figure(f"eval/trajectory_test_task_0_{protocol}_context", trajectory_figure(
            env, task, rollout.observations[0], rollout.next_observations[0],
            rollout.truncations[0], int(rollout.lengths[0]),
            title=f"held-out task 0, {protocol} context, iteration {step}"), step)


def write_evaluation(run: RunDirectory, step: int, seeds: list[int], tasks: np.ndarray,
                     online_returns: np.ndarray, offline_returns: np.ndarray,
                     online_successes: np.ndarray | None = None,
                     offline_successes: np.ndarray | None = None) -> None:
    """``evaluation.json`` (atomic): the latest evaluation's returns of every held-out task,
    ``online_context`` and ``offline_context`` as [task][episode] lists (FOCAL's env-types:
    online episodes and offline-context trajectories, averaged over repeats), the task vectors
    and seeds, and per-task success where the protocol records it."""
    content: dict = {"step": step, "task_seeds": list(seeds), "tasks": tasks.tolist(),
                     "online_context": np.asarray(online_returns).tolist(),
                     "offline_context": np.asarray(offline_returns).tolist()}
    if online_successes is not None and offline_successes is not None:
        content["online_context_success"] = np.asarray(online_successes).tolist()
        content["offline_context_success"] = np.asarray(offline_successes).tolist()
    run.write_json("evaluation.json", content)


def write_progress(path: Path, rows: list[dict[str, float]]) -> None:
    """Rewrite progress.csv atomically: one row per evaluation, columns in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def command_line(argv: list[str]) -> list[str]:
    """FOCAL's habit: a leading positional ``configs/<env>.json`` means ``--config`` that file."""
    if argv and not argv[0].startswith("-"):
        return ["--config", argv[0], *argv[1:]]
    return argv


if __name__ == "__main__":
    run_script(lambda: train(load_config(FocalConfig, command_line(sys.argv[1:]),
                                        config_dir="configs", program="launch_focal.py")))
