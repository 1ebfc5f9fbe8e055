"""Run directories, checkpoints, the logger, seeding and device choice, networks, the registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from environments.registry import (
    get_spec,
    make_batched_env,
    make_env,
    registered_env_types,
    resolve_options,
)
from models.mlp import HIDDEN_BIAS, LAST_LAYER_INIT, MLP
from utils.config import load_saved_config
from utils.errors import UserError
from utils.logger import Logger, read_scalars, scalar_series
from utils.replay import FIELDS, EnsembleReplayBuffer, TrajectoryBuffer
from utils.runs import RunDirectory, find_run, run_path
from utils.seeding import (
    resolve_device,
    restore_generator,
    restore_torch_random_state,
    seed_everything,
    torch_random_state,
)
from utils.stage_configs import DataCollectionConfig


def new_run(tmp_path, **flags):
    config = DataCollectionConfig(env_type="gridworld", num_iters=3)
    path = run_path(tmp_path / "runs", "data_collection", "gridworld", "default", 73)
    return RunDirectory.create(path, config, device="cpu", argv=["x"], **{
        "resume": False, "overwrite": False, **flags}), config


def test_new_run_writes_config_meta_and_folders(tmp_path):
    run, config = new_run(tmp_path)
    assert run.path == tmp_path / "runs/data_collection/gridworld/default_s73"
    assert load_saved_config(DataCollectionConfig, run.config_path) == config
    meta = json.loads((run.path / "meta.json").read_text())
    assert meta["device"] == "cpu" and meta["argv"] == ["x"]
    assert {"torch", "numpy", "gymnasium", "mujoco", "python"} <= set(meta["libraries"])
    assert run.checkpoint_dir.is_dir() and run.figure_dir.is_dir()


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    run, _ = new_run(tmp_path)
    run.save_checkpoint({"weights": torch.ones(2)}, step=1, keep=False)
    with pytest.raises(UserError, match="already exists; pass --resume true .* --overwrite true"):
        new_run(tmp_path)
    resumed, _ = new_run(tmp_path, resume=True)
    assert resumed.load_checkpoint()["step"] == 1
    assert json.loads((resumed.path / "meta.json").read_text())["resumed"] is True
    restarted, _ = new_run(tmp_path, overwrite=True)
    assert restarted.load_checkpoint() is None
    with pytest.raises(UserError, match="contradict"):
        new_run(tmp_path, resume=True, overwrite=True)


def test_checkpoints_are_weights_only_and_ordered_numerically(tmp_path):
    run, _ = new_run(tmp_path)
    for step in (20, 100, 3):
        run.save_checkpoint({"weights": torch.full((2,), float(step)), "counter": step,
                             "rng": {"state": [1, 2, 3]}}, step=step, keep=True)
    assert run.checkpoint_steps() == [3, 20, 100]
    latest = run.load_checkpoint()
    assert latest["step"] == 3 and latest["counter"] == 3
    assert torch.equal(run.load_checkpoint("step_100.pt")["weights"], torch.full((2,), 100.0))
    assert not list(run.checkpoint_dir.glob("*.tmp"))


def test_unsafe_or_corrupt_checkpoint_is_refused(tmp_path):
    run, _ = new_run(tmp_path)
    torch.save({"object": np.random.default_rng(0)}, run.checkpoint_dir / "latest.pt")
    with pytest.raises(UserError, match="cannot be loaded"):
        run.load_checkpoint()
    (run.checkpoint_dir / "latest.pt").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="cannot be loaded"):
        run.load_checkpoint()


def test_find_run_by_name_or_path(tmp_path):
    run, _ = new_run(tmp_path)
    runs_dir = tmp_path / "runs"
    assert find_run("default", runs_dir, "data_collection", "gridworld").path == run.path
    assert find_run("default_s73", runs_dir, "data_collection", "gridworld").path == run.path
    assert find_run(str(run.path), runs_dir, "vae", "other").path == run.path
    with pytest.raises(UserError, match=r"no data_collection run 'defualt'.*default_s73"):
        find_run("defualt", runs_dir, "data_collection", "gridworld")


def test_logger_writes_scalars_and_truncates_after_a_resume(tmp_path):
    logger = Logger(tmp_path, use_tensorboard=True)
    for step in range(5):
        logger.log(step, {"train/loss": 1.0 / (step + 1), "eval/return": float(step)})
    logger.truncate_after(2)
    logger.log(3, {"train/loss": 9.0})
    logger.close()
    assert scalar_series(tmp_path / "scalars.csv", "train/loss") == ([0, 1, 2, 3],
                                                                      [1.0, 0.5, 1 / 3, 9.0])
    assert len(read_scalars(tmp_path / "scalars.csv")) == 7
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with pytest.raises(ValueError, match="must start with one of"):
        Logger(tmp_path, use_tensorboard=False).log(0, {"loss": 1.0})


def test_logger_saves_figures_as_png(tmp_path):
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    path = Logger(tmp_path, use_tensorboard=False).figure("eval/trajectory task 0", figure, 10)
    assert path.name == "eval_trajectory_task_0_step10.png" and path.stat().st_size > 1000


def test_seeding_makes_torch_and_numpy_repeatable():
    seed_everything(5)
    first = (torch.rand(3), np.random.rand(3))
    seed_everything(5)
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_a_checkpointed_torch_random_state_continues_the_same_draws(tmp_path):
    device = torch.device("cpu")
    torch.manual_seed(3)
    torch.rand(5)
    torch.save(torch_random_state(device), tmp_path / "state.pt")
    expected = torch.rand(4)
    torch.rand(7)
    restore_torch_random_state(torch.load(tmp_path / "state.pt", weights_only=True), device)
    assert torch.equal(torch.rand(4), expected)
    assert set(torch_random_state(device)) == {"torch_rng"}  # no GPU state on the CPU


def test_random_states_from_another_device_type_are_refused():
    generator = torch.Generator()
    generator.manual_seed(4)
    saved = generator.get_state()
    expected = torch.rand(3, generator=generator)
    restore_generator(generator, saved)
    assert torch.equal(torch.rand(3, generator=generator), expected)
    # A CUDA generator's state is a Philox seed and offset (16 bytes), a CPU one's 5 KB.
    with pytest.raises(UserError, match="another device type.*--device it started with"):
        restore_generator(generator, torch.zeros(16, dtype=torch.uint8))
    written_on_a_gpu = {"torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.zeros(16, dtype=torch.uint8)}
    with pytest.raises(UserError, match="another device type"):
        restore_torch_random_state(written_on_a_gpu, torch.device("cpu"))
    with pytest.raises(UserError, match="another device type"):
        restore_torch_random_state({"torch_rng": torch.get_rng_state()}, torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_state_loaded_onto_the_gpu_restores(tmp_path):
    """The scripts load checkpoints into host memory, but one loaded with map_location a GPU
    (a user's own code) puts the random states and the buffers' host-side arrays there;
    restoring must still work."""
    device = torch.device("cuda")
    torch.manual_seed(3)
    torch.cuda.manual_seed(3)
    saved = torch_random_state(device)
    expected = torch.rand(4), torch.rand(4, device=device)
    dims = {name: 1 for name in FIELDS}
    steps = {name: np.ones((2, 5, 1), np.float32) for name in FIELDS}
    buffer = EnsembleReplayBuffer(2, 8, dims, device)
    buffer.add_trajectories(steps, np.array([3, 3]), np.array([0, 1]))
    trajectories = TrajectoryBuffer(2, 4, 5, dims)
    trajectories.add(steps, np.array([3, 3]), np.array([0, 1]))
    torch.save({**saved, "replay": buffer.state_dict(), "trajectories": trajectories.state_dict()},
               tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", map_location=device, weights_only=True)
    assert loaded["torch_rng"].device.type == "cuda"
    restore_torch_random_state(loaded, device)
    assert torch.equal(torch.rand(4), expected[0])
    assert torch.equal(torch.rand(4, device=device), expected[1])
    restored = EnsembleReplayBuffer(2, 8, dims, device)
    restored.load_state_dict(loaded["replay"])
    assert restored.host_sizes.tolist() == [3, 3] and restored.positions.tolist() == [3, 3]
    restored_trajectories = TrajectoryBuffer(2, 4, 5, dims)
    restored_trajectories.load_state_dict(loaded["trajectories"])
    assert restored_trajectories.sizes.tolist() == [1, 1]


def test_device_choice():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            resolve_device("cuda")


def test_mlp_shapes_and_initialisation():
    torch.manual_seed(0)
    network = MLP(7, [64, 32], 3)
    assert network(torch.zeros(5, 4, 7)).shape == (5, 4, 3)
    first, second, last = (module for module in network.network if isinstance(module,
                                                                              torch.nn.Linear))
    assert torch.all(first.bias == HIDDEN_BIAS) and torch.all(second.bias == HIDDEN_BIAS)
    assert first.weight.abs().max() <= 1 / np.sqrt(7)
    assert last.weight.abs().max() <= LAST_LAYER_INIT and last.bias.abs().max() <= LAST_LAYER_INIT
    assert MLP(7, [16], None).output_dim == 16


def test_registry_resolves_both_papers_names_and_rejects_unknown_ones():
    names = registered_env_types()
    assert {"gridworld", "point_robot_sparse", "sparse-point-robot", "point-robot-wind"} <= set(
        names)
    assert get_spec("gridworld").episodes_per_task == 4
    assert get_spec("sparse-point-robot").paper == "focal"
    assert get_spec("sparse-point-robot").episodes_per_task == 1
    with pytest.raises(UserError, match=r"unknown env-type 'gridwold' \(closest: gridworld"):
        get_spec("gridwold")
    with pytest.raises(UserError, match=r"env option 'start_distrib' .*start_distribution"):
        resolve_options("gridworld", {"start_distrib": "uniform"})
    with pytest.raises(UserError, match="rejects its options"):
        make_batched_env("gridworld", 1, {"start_distribution": "everywhere"})


@pytest.mark.filterwarnings("ignore:.*Box observation space:UserWarning")
def test_env_follows_the_gymnasium_api():
    from gymnasium.utils.env_checker import check_env

    env = make_env("point_robot_sparse")
    check_env(env, skip_render_check=True)
    task = env.sample_tasks(1, np.random.default_rng(0))[0]
    env.set_task(task)
    np.testing.assert_array_equal(env.get_task(), task)
