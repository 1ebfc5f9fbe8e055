"""FOCAL: offline meta-RL with a distance-metric context encoder and a behaviour-regularised SAC.

Reads ``configs/<env-type>.json`` (FOCAL's per-env overrides) and the stage-1 datasets
``data/<env-type>/<dataset-name>/task_<seed>.npz`` (the same files BOReL reads): the first
``num_train_tasks`` tasks by seed train, the next ``num_eval_tasks`` are held out. Writes the run
directory ``runs/focal/<env-type>/<exp-name>_s<seed>/``: ``config.yaml``, ``meta.json`` (with the
task split), ``progress.csv`` (one row per evaluation, FOCAL's column names), ``scalars.csv`` and
TensorBoard events, ``checkpoints/`` and ``figures/`` (embedding plots, trajectories).

    python launch_focal.py configs/sparse-point-robot.json
    python launch_focal.py --env-type cheetah-vel --num-iterations 100 --device auto

Paper: FOCAL (Li, Yang, Luo, ICLR 2021), sections 4-5; spec focal.md section 3 (algorithm) and
section 4 (evaluation protocol).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from algorithms.focal import FOCAL, FocalHyperparameters
from algorithms.focal_data import OfflineTaskData, split_tasks
from algorithms.focal_evaluation import EvaluationResult, FocalEvaluator
from environments.registry import get_spec
from utils.config import load_config
from utils.datasets import dataset_directory
from utils.embeddings import embedding_figure
from utils.errors import UserError, run_script
from utils.io import atomic_write_text
from utils.logger import Logger
from utils.plotting import trajectory_figure
from utils.progress import progress_range
from utils.runs import RunDirectory, run_path
from utils.seeding import keep_freed_memory, resolve_device, seed_everything, set_torch_threads
from utils.stage_configs import FocalConfig

STAGE = "focal"
TRAINING_COLUMNS = {  # FOCAL's progress.csv name -> key of FOCAL.update's metrics
    "Z Loss": "z_loss", "QF Loss": "q_loss", "VF Loss": "v_loss", "Policy Loss": "policy_loss",
    "Dual Critic Loss": "dual_critic_loss", "alpha": "alpha", "div_estimate Mean": "divergence",
    "Q Predictions Mean": "q_prediction", "V Predictions Mean": "v_prediction",
    "Log Pis Mean": "log_prob", "Policy mu Mean": "policy_mean",
    "Policy log std Mean": "policy_log_std", "Z spread": "latent_spread",
}


def main(config: FocalConfig) -> Path:
    spec = get_spec(config.env_type)
    if spec.episodes_per_task != 1 or config.episodes_per_task not in (None, 1):
        raise UserError(f"FOCAL plays one episode per task; env-type {config.env_type!r} is a "
                        "BAMDP name (use the FOCAL name, e.g. sparse-point-robot)")
    device = resolve_device(config.device)
    set_torch_threads(config.torch_threads)
    if config.reuse_freed_memory:
        keep_freed_memory()
    seed_everything(config.seed)
    split = split_tasks(dataset_directory(config.data_dir, config.env_type, config.dataset_name),
                        config.num_train_tasks, config.num_eval_tasks)
    data = OfflineTaskData.load(split, config.env_type, config.data_slice,
                                config.num_trajs_per_task, config.sparse_rewards,
                                config.ignore_terminations, config.use_next_obs_in_context, device)
    num_train, num_test = config.num_train_tasks, config.num_eval_tasks
    evaluator = FocalEvaluator(
        config.env_type, config.environment_options(evaluation=True), data, num_train,
        test_task_ids=list(range(num_train, num_train + num_test)),
        train_task_ids=list(range(min(num_test, num_train))) if config.evaluate_train_tasks
        else [],
        num_evals=config.num_evals, num_steps_per_eval=config.num_steps_per_eval,
        max_path_length=config.max_path_length, num_online_episodes=config.num_online_episodes,
        sparse_returns=config.sparse_rewards, seed=config.seed)
    focal = FOCAL(data.observation_dim, data.action_dim, data.transition_dim,
                  FocalHyperparameters.from_config(config), device)

    run = RunDirectory.create(
        run_path(config.runs_dir, STAGE, config.env_type, config.exp_name, config.seed),
        config, config.resume, config.overwrite, device=str(device))
    meta = json.loads((run.path / "meta.json").read_text())
    run.write_json("meta.json", {**meta, "task_split": split.as_dict(),
                                 "trajectories_per_task": data.num_trajectories})
    logger = Logger(run.path, config.use_tensorboard)
    sampler = torch.Generator(device=device)
    sampler.manual_seed(config.seed)

    start, train_seconds, rows = 0, 0.0, []
    checkpoint = run.load_checkpoint(map_location=device) if config.resume else None
    if checkpoint is not None:
        start, train_seconds = int(checkpoint["iteration"]), float(checkpoint["train_seconds"])
        rows = [dict(row) for row in checkpoint["progress"]]
        focal.load_state_dict(checkpoint["focal"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if "cuda_rng" in checkpoint:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)
        sampler.set_state(checkpoint["sampler"].to(sampler.get_state().device))
        logger.truncate_after(start)
    write_progress(run.path / "progress.csv", rows)

    def save(iteration: int) -> None:
        state = {"iteration": iteration, "focal": focal.state_dict(),
                 "train_seconds": train_seconds, "progress": rows,
                 "torch_rng": torch.get_rng_state(), "sampler": sampler.get_state()}
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
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
        iteration_seconds = time.perf_counter() - started
        train_seconds += iteration_seconds
        finished = iteration + 1
        if finished % config.log_interval == 0 or finished == config.num_iterations:
            evaluation_started = time.perf_counter()
            result = evaluator.evaluate(focal, config.num_embedding_contexts,
                                        config.embedding_batch_size)
            evaluation_seconds = time.perf_counter() - evaluation_started
            row = progress_row(config, finished, focal.num_updates, update_metrics, result)
            row.update({"Train Time (s)": iteration_seconds, "Eval Time (s)": evaluation_seconds,
                        "Epoch Time (s)": iteration_seconds + evaluation_seconds,
                        "Total Train Time (s)": train_seconds})
            rows.append(row)
            write_progress(run.path / "progress.csv", rows)
            logger.log(finished, tensorboard_scalars(row, update_metrics, result))
            bar.set_postfix(test_return=f"{row['AverageReturn_all_test_tasks']:.2f}")
            save_figures(logger, evaluator, data, result, num_train, finished)
        if finished % config.save_interval == 0 or finished == config.num_iterations:
            save(finished)
    evaluator.close()
    logger.close()
    return run.path


def progress_row(config: FocalConfig, epoch: int, num_updates: int,
                 update_metrics: list[dict[str, float]], result: EvaluationResult
                 ) -> dict[str, float]:
    """One row of progress.csv in FOCAL's column names (spec focal.md 4.3)."""
    row: dict[str, float] = {
        "Epoch": epoch,
        "Number of train steps total": num_updates,
        "Number of env steps total": config.num_initial_steps * config.num_train_tasks
        + epoch * config.sample_steps_per_iteration,
        "AverageReturn_all_test_tasks": float(result.test_returns[:, -1].mean()),
        "AverageReturn_first_trajectory_all_test_tasks": float(result.test_returns[:, 0].mean()),
    }
    if result.test_returns.shape[0] <= 2:
        for index, value in enumerate(result.test_returns[:, -1]):
            row[f"AverageReturn_all_test_tasks{index}"] = float(value)
    if result.train_returns is not None:
        row["AverageReturn_all_train_tasks"] = float(result.train_returns[:, -1].mean())
    online = result.online_returns.mean(axis=0)
    for episode, value in enumerate(online, start=1):
        row[f"AverageReturn_online_context_episode{episode}_all_test_tasks"] = float(value)
    row["AverageReturn_online_context_sum_all_test_tasks"] = float(online.sum())
    for column, key in TRAINING_COLUMNS.items():
        row[column] = float(np.mean([metrics[key] for metrics in update_metrics])) \
            if update_metrics else float("nan")
    row["Embedding RMS"], row["Embedding ESR"] = result.rms, result.esr
    return row


def tensorboard_scalars(row: dict[str, float], update_metrics: list[dict[str, float]],
                        result: EvaluationResult) -> dict[str, float]:
    """The logger's tags (eval/, focal/, time/) for one evaluation."""
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
    for key in (update_metrics[0] if update_metrics else {}):
        scalars[f"focal/{key}"] = float(np.mean([metrics[key] for metrics in update_metrics]))
    return scalars


def save_figures(logger: Logger, evaluator: FocalEvaluator, data: OfflineTaskData,
                 result: EvaluationResult, num_train: int, step: int) -> None:
    """The embedding plot and, for planar tasks, the last offline-context trajectory of the first
    held-out task."""
    is_train = np.arange(data.num_tasks) < num_train
    figure = embedding_figure(result.latents, data.tasks, is_train,
                              title=f"task embeddings, iteration {step} (RMS {result.rms:.3f}, "
                              f"ESR {result.esr:.2f})")
    logger.figure("eval/task_embeddings", figure, step)
    env, rollout = evaluator.offline_env, result.last_rollout
    if evaluator.test_task_ids and env.env.trajectory_xy(rollout.observations[0]) is not None:
        logger.figure("eval/trajectory_test_task_0", trajectory_figure(
            env.env, data.tasks[evaluator.offline_copies[0]], rollout.observations[0],
            rollout.next_observations[0], rollout.truncations[0], int(rollout.lengths[0]),
            title=f"held-out task 0, offline context, iteration {step}"), step)


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
    run_script(lambda: main(load_config(FocalConfig, command_line(sys.argv[1:]),
                                        config_dir="configs", program="launch_focal.py")))
