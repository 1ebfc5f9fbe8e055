"""The MuJoCo task families: spaces, rewards against hand computations, terminations, tasks,
exact reward recomputation, rand-param restore, vectorised copies and offscreen rendering."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import imageio.v3 as imageio
import mujoco
import numpy as np
import pytest

from environments.bamdp import BatchedBAMDP
from environments.mujoco.base import ASSETS_DIR, gymnasium_asset
from environments.mujoco.rand_params import PARAMETER_BASES
from environments.mujoco.rendering import write_frames
from environments.mujoco.specs import MUJOCO_SPECS
from environments.registry import get_spec, make_batched_env, make_env

# name: (observation dim, action dim, task dim, action bound, episodes per task)
EXPECTED = {
    "cheetah_vel": (20, 6, 1, 1.0, 2),
    "cheetah_dir": (20, 6, 1, 1.0, 2),
    "ant_dir": (27, 8, 1, 1.0, 2),
    "ant_goal": (113, 8, 2, 1.0, 2),
    "ant_semicircle": (29, 8, 2, 1.0, 2),
    "ant_semicircle_sparse": (29, 8, 2, 1.0, 2),
    "humanoid_dir": (376, 17, 1, 0.4, 2),
    "walker_rand_params": (17, 6, 65, 1.0, 2),
    "hopper_rand_params": (11, 3, 41, 1.0, 2),
    "cheetah-vel": (20, 6, 1, 1.0, 1),
    "sparse-cheetah-vel": (20, 6, 1, 1.0, 1),
    "cheetah-dir": (20, 6, 1, 1.0, 1),
    "sparse-cheetah-dir": (20, 6, 1, 1.0, 1),
    "ant-dir": (27, 8, 1, 1.0, 1),
    "sparse-ant-dir": (27, 8, 1, 1.0, 1),
    "ant-goal": (113, 8, 2, 1.0, 1),
    "humanoid-dir": (376, 17, 1, 0.4, 1),
    "walker-rand-params": (17, 6, 65, 1.0, 1),
    "sparse-walker-rand-params": (17, 6, 65, 1.0, 1),
    "hopper-rand-params": (11, 3, 41, 1.0, 1),
}
RECOMPUTABLE = [name for name in EXPECTED if "rand-params" not in name.replace("_", "-")]
RAND_PARAMS = [name for name in EXPECTED if name not in RECOMPUTABLE]
SPARSE_RADII = {
    "sparse-cheetah-vel": -0.1,
    "sparse-cheetah-dir": 0.5,
    "sparse-ant-dir": 3.0,
    "sparse-walker-rand-params": 0.5,
}


@pytest.fixture(scope="module")
def environments():
    """One two-copy family per env-type, shared by the tests of this module."""
    built = {name: make_batched_env(name, num_envs=2) for name in EXPECTED}
    yield built
    for env in built.values():
        env.close()


def random_actions(env, rng: np.random.Generator, steps: int) -> np.ndarray:
    low, high = env.action_space.low, env.action_space.high
    return rng.uniform(low, high, size=(steps, env.num_envs, low.shape[0]))


def rollout(env, tasks: np.ndarray, seeds: list[int], steps: int, shared_actions: bool = False):
    """Step ``env`` with random actions (the same for every copy if ``shared_actions``),
    resetting copies that fall; returns the actions and the transitions."""
    env.set_tasks(tasks)
    env.seed(seeds)
    observations = env.reset()
    actions = random_actions(env, np.random.default_rng(0), steps)
    if shared_actions:
        actions[:] = actions[:, :1]
    record: dict[str, list] = {key: [] for key in ("obs", "next_obs", "rewards", "sparse", "done")}
    for action in actions:
        result = env.step(action)
        record["obs"].append(observations)
        record["next_obs"].append(result.observations)
        record["rewards"].append(result.rewards)
        record["sparse"].append(result.infos.get("sparse_reward"))
        record["done"].append(result.terminated)
        observations = result.observations
        if result.terminated.any():
            observations = env.reset(result.terminated)
    stacked = {key: np.array(value) for key, value in record.items() if value[0] is not None}
    return actions, stacked


def simulate_raw(model: mujoco.MjModel, qpos, qvel, action, frame_skip: int) -> mujoco.MjData:
    """One control step on a bare MuJoCo model, as the family does it."""
    data = mujoco.MjData(model)
    data.qpos[:] = qpos
    data.qvel[:] = qvel
    data.ctrl[:] = np.asarray(action, dtype=np.float32)
    mujoco.mj_step(model, data, nstep=frame_skip)
    mujoco.mj_rnePostConstraint(model, data)
    return data


# ------------------------------------------------------------------------------------- registry
def test_every_mujoco_env_type_is_registered_with_its_papers_episodes_per_task():
    assert {spec.name for spec in MUJOCO_SPECS} == set(EXPECTED)
    for name, expected in EXPECTED.items():
        spec = get_spec(name)
        assert spec.episodes_per_task == expected[-1]
        assert spec.paper == ("focal" if "-" in name else "borel")


def test_spec_modules_do_not_import_mujoco():
    import subprocess
    import sys

    code = (
        "import sys, environments.registry; "
        "assert 'mujoco' not in sys.modules and 'metaworld' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_spaces_dimensions_and_step_shapes(environments, name):
    obs_dim, action_dim, task_dim, bound, _ = EXPECTED[name]
    env = environments[name]
    assert env.observation_space.shape == (obs_dim,)
    assert env.action_space.shape == (action_dim,)
    np.testing.assert_array_equal(env.action_space.low, np.float32(-bound))
    np.testing.assert_array_equal(env.action_space.high, np.float32(bound))
    assert env.task_dim == task_dim
    assert env.max_episode_steps == 200
    env.set_tasks(np.stack([env.task_from_seed(0), env.task_from_seed(1)]))
    observations = env.reset()
    assert observations.shape == (2, obs_dim) and observations.dtype == np.float32
    result = env.step(np.zeros((2, action_dim)))
    assert result.observations.shape == (2, obs_dim)
    assert result.observations.dtype == np.float32
    assert result.rewards.shape == (2,) and result.rewards.dtype == np.float32
    assert result.terminated.dtype == bool and result.successes.dtype == bool
    assert ("sparse_reward" in result.infos) == (
        name in SPARSE_RADII or name.startswith("ant_semicircle")
    )


def test_gymnasium_env_checker_accepts_a_single_copy():
    from gymnasium.utils.env_checker import check_env

    env = make_env("cheetah_vel")
    with pytest.warns(UserWarning, match="infinity"):
        check_env(env, skip_render_check=True)
    env.close()


# ------------------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("name", list(EXPECTED))
def test_the_same_seed_gives_the_same_task(environments, name):
    env = environments[name]
    other = make_batched_env(name, num_envs=1)
    for seed in (0, 7, 73):
        np.testing.assert_array_equal(env.task_from_seed(seed), other.task_from_seed(seed))
        assert env.task_from_seed(seed).shape == (env.task_dim,)
    other.close()


def test_task_distributions():
    rng = np.random.default_rng(0)
    velocities = make_batched_env("cheetah_vel").sample_tasks(500, rng)
    assert velocities.min() >= 0.0 and velocities.max() <= 3.0 and velocities.max() > 2.9
    goals = make_batched_env("ant_goal").sample_tasks(500, rng)
    assert np.linalg.norm(goals, axis=1).max() <= 3.0
    assert np.mean(np.linalg.norm(goals, axis=1) < 1.5) == pytest.approx(0.25, abs=0.06)
    arc = make_batched_env("ant_semicircle").sample_tasks(200, rng)
    np.testing.assert_allclose(np.linalg.norm(arc, axis=1), 1.0)
    assert arc[:, 1].min() >= 0.0
    angles = make_batched_env("ant_dir").sample_tasks(500, rng)
    assert angles.min() >= 0.0 and angles.max() < 2 * np.pi and angles.max() > 6.0
    exponents = make_batched_env("walker_rand_params").sample_tasks(10, rng)
    assert np.abs(exponents).max() <= 3.0 and np.abs(exponents).max() > 2.5


def test_finite_task_sets_cycle_with_the_seed():
    cheetah = make_batched_env("cheetah-dir")
    assert [cheetah.task_from_seed(seed)[0] for seed in range(4)] == [-1.0, 1.0, -1.0, 1.0]
    ant = make_batched_env("ant-dir")
    assert [ant.task_from_seed(seed)[0] for seed in range(3)] == [0.0, np.pi, 0.0]
    assert set(ant.sample_tasks(20, np.random.default_rng(0))[:, 0]) == {0.0, np.pi}
    with pytest.raises(ValueError, match="-1 or \\+1"):
        cheetah.set_tasks(np.array([[0.5]]))
    with pytest.raises(ValueError, match="0 or pi"):
        ant.set_tasks(np.array([[1.0]]))
    with pytest.raises(ValueError, match="log-multipliers"):
        make_batched_env("hopper_rand_params").set_tasks(np.full((1, 41), 3.5))


@pytest.mark.parametrize("name", RECOMPUTABLE)
def test_set_tasks_changes_the_reward_but_not_the_dynamics(name):
    env = make_batched_env(name, num_envs=2)
    tasks = np.stack([env.task_from_seed(0), env.task_from_seed(1)])
    env.set_tasks(tasks)
    env.seed([5, 5])
    env.reset()
    if name == "ant_semicircle_sparse":  # start both copies on the first goal
        for index in range(2):
            qpos, qvel = env.get_state(index)
            qpos[:2] = tasks[0]
            env.set_state(index, qpos, qvel)
    actions = random_actions(env, np.random.default_rng(0), 15)
    actions[:] = actions[:, :1]
    results = [env.step(action) for action in actions]
    next_observations = np.array([result.observations for result in results])
    rewards = np.array([result.rewards for result in results])
    np.testing.assert_array_equal(next_observations[:, 0], next_observations[:, 1])
    assert np.any(rewards[:, 0] != rewards[:, 1])
    env.close()


@pytest.mark.parametrize("name", ["walker_rand_params", "hopper_rand_params"])
def test_rand_param_tasks_change_the_dynamics(name):
    env = make_batched_env(name, num_envs=2)
    tasks = np.stack([env.task_from_seed(0), env.task_from_seed(1)])
    _, record = rollout(env, tasks, seeds=[5, 5], steps=10, shared_actions=True)
    np.testing.assert_array_equal(record["obs"][0, 0], record["obs"][0, 1])
    assert np.abs(record["next_obs"][:, 0] - record["next_obs"][:, 1]).max() > 1e-3
    env.close()


# ------------------------------------------------------------------------------------- rewards
def test_cheetah_rewards_match_a_hand_computation():
    model = mujoco.MjModel.from_xml_path(str(gymnasium_asset("half_cheetah.xml")))
    rng = np.random.default_rng(3)
    qpos = (model.qpos0 + rng.uniform(-0.1, 0.1, model.nq)).astype(np.float32).astype(float)
    qpos[0] = 0.0
    qvel = rng.normal(0.0, 0.5, model.nv).astype(np.float32).astype(float)
    action = np.array([0.5, -0.25, 1.0, -1.0, 0.0, 0.75])
    data = simulate_raw(model, qpos, qvel, action, frame_skip=5)
    velocity = data.qpos[0] / 0.05
    control_cost = 0.05 * (0.25 + 0.0625 + 1.0 + 1.0 + 0.0 + 0.5625)
    for name, task, expected in [
        ("cheetah_vel", 1.7, -abs(velocity - 1.7) - control_cost),
        ("cheetah_dir", -1.0, -velocity - control_cost),
    ]:
        env = make_batched_env(name)
        env.set_tasks(np.array([[task]]))
        env.set_state(0, qpos, qvel)
        result = env.step(action[None])
        np.testing.assert_allclose(result.rewards[0], expected, rtol=1e-6)
        np.testing.assert_array_equal(result.observations[0, :8], data.qpos[1:].astype(np.float32))


def test_ant_direction_reward_matches_a_hand_computation():
    model = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / "ant.xml"))
    qpos = model.qpos0.copy()
    qpos[2] = 0.25  # the torso touches the floor
    qvel = np.zeros(model.nv)
    qvel[:2] = [0.4, -0.3]
    action = np.full(8, 0.5)
    data = simulate_raw(model, qpos, qvel, action, frame_skip=5)
    angle = 2.0
    forward = (data.qpos[0] * np.cos(angle) + data.qpos[1] * np.sin(angle)) / 0.05
    contact = 0.5e-3 * np.sum(np.clip(data.cfrc_ext, -1.0, 1.0) ** 2)
    assert contact > 0.0
    with_contacts = forward - 0.5 * 8 * 0.25 - contact + 1.0
    without_contacts = forward - 0.5 * 8 * 0.25 + 1.0  # the papers' MuJoCo 2.0: cfrc_ext = 0
    for options, expected in (({"contact_forces": True}, with_contacts), (None, without_contacts)):
        env = make_batched_env("ant_dir", 1, options)
        env.set_tasks(np.array([[angle]]))
        env.set_state(0, qpos, qvel)
        result = env.step(action[None])
        np.testing.assert_allclose(result.rewards[0], expected, rtol=1e-6)


def test_ant_goal_and_semicircle_rewards_match_hand_computations():
    action = np.full((1, 8), 0.5)  # 0.1 * ||a||^2 = 0.2
    next_obs = np.zeros((1, 113), dtype=np.float32)
    next_obs[0, :2] = [1.0, -2.0]
    next_obs[0, 29:] = 0.5  # 84 clipped contact forces: 0.5e-3 * 84 * 0.25 = 0.0105
    goal = np.array([0.5, 0.5])
    ant_goal = make_batched_env("ant_goal")
    reward = ant_goal.reward(next_obs, action, next_obs, goal)
    np.testing.assert_allclose(reward, [-(0.5 + 2.5) - 0.2 - 0.0105], rtol=1e-6)

    semicircle_obs = np.zeros((2, 29), dtype=np.float32)
    semicircle_obs[:, :2] = [[0.9, 0.1], [0.5, 0.5]]  # 0.14 and 0.71 from the goal (1, 0)
    goal = np.array([1.0, 0.0])
    actions = np.repeat(action, 2, axis=0)
    dense = make_batched_env("ant_semicircle").reward(semicircle_obs, actions, semicircle_obs, goal)
    np.testing.assert_allclose(dense, [-0.2 - 0.2, -1.0 - 0.2], rtol=1e-6)
    sparse_env = make_batched_env("ant_semicircle_sparse")
    sparse = sparse_env.reward(semicircle_obs, actions, semicircle_obs, goal)
    np.testing.assert_allclose(sparse, [1.0 - 0.2, -0.2], rtol=1e-6)
    np.testing.assert_array_equal(
        sparse_env.success(semicircle_obs, actions, semicircle_obs, goal), [True, False]
    )
    assert (
        not make_batched_env("ant_semicircle")
        .success(semicircle_obs, actions, semicircle_obs, goal)
        .any()
    )


def test_humanoid_reward_matches_a_hand_computation():
    model = mujoco.MjModel.from_xml_path(str(gymnasium_asset("humanoid.xml")))
    qpos, qvel = model.qpos0.copy(), np.zeros(model.nv)
    qvel[:2] = [0.5, 0.2]
    action = np.linspace(-0.4, 0.4, 17)

    def mass_center(data):
        mujoco.mj_kinematics(model, data)
        return (model.body_mass @ data.xipos[:, :2]) / model.body_mass.sum()

    start = mujoco.MjData(model)
    start.qpos[:] = qpos
    before = mass_center(start)
    data = simulate_raw(model, qpos, qvel, action, frame_skip=5)
    impact = min(0.5e-6 * np.sum(data.cfrc_ext**2), 10.0)
    after = mass_center(data)
    angle = 0.3
    progress = (after - before) @ [np.cos(angle), np.sin(angle)]
    expected = 0.25 * progress / 0.003 - 0.1 * np.sum(action**2) - impact + 5.0
    env = make_batched_env("humanoid_dir")
    env.set_tasks(np.array([[angle]]))
    env.set_state(0, qpos, qvel)
    np.testing.assert_allclose(env.step(action[None]).rewards[0], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "name, model_file",
    [
        ("walker_rand_params", "walker2d_rand_params.xml"),
        ("hopper_rand_params", "hopper_rand_params.xml"),
    ],
)
def test_rand_param_reward_matches_a_hand_computation(name, model_file):
    model = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / model_file))
    assert model.opt.timestep == 0.004
    qpos, qvel = model.qpos0.copy(), np.zeros(model.nv)
    qvel[0] = 1.5
    action = np.full(model.nu, 0.5)
    data = simulate_raw(model, qpos, qvel, action, frame_skip=4)
    expected = data.qpos[0] / 0.016 + 1.0 - 1e-3 * model.nu * 0.25
    env = make_batched_env(name)
    env.set_tasks(np.zeros((1, env.task_dim)))
    env.set_state(0, qpos, qvel)
    np.testing.assert_allclose(env.step(action[None]).rewards[0], expected, rtol=1e-6)


@pytest.mark.parametrize("name", RECOMPUTABLE)
def test_reward_recomputes_exactly_what_step_returned(name):
    env = make_batched_env(name, num_envs=2)
    tasks = np.stack([env.task_from_seed(3), env.task_from_seed(4)])
    actions, record = rollout(env, tasks, seeds=[1, 2], steps=40)
    recomputed = env.reward(record["obs"], actions, record["next_obs"], tasks[None])
    np.testing.assert_array_equal(recomputed, record["rewards"])
    if "sparse" in record:
        sparse = env.sparse_reward(record["obs"], actions, record["next_obs"], tasks[None])
        np.testing.assert_array_equal(sparse, record["sparse"])
    env.close()


@pytest.mark.parametrize("name", ["cheetah_vel", "ant_dir", "ant_semicircle_sparse"])
def test_relabelling_a_bamdp_trajectory_under_another_task_matches_stepping_that_task(name):
    env = make_batched_env(name, num_envs=2)
    bamdp = BatchedBAMDP(env, episodes_per_task=2, max_episode_steps=15)
    tasks = np.stack([env.task_from_seed(0), env.task_from_seed(5)])
    bamdp.set_tasks(tasks)
    bamdp.seed([9, 9])
    observations = bamdp.reset()
    rng = np.random.default_rng(0)
    record: dict[str, list] = {"obs": [], "actions": [], "next_obs": [], "rewards": []}
    for _ in range(bamdp.trajectory_len):
        actions = np.repeat(rng.uniform(-1, 1, size=(1, env.action_space.shape[0])), 2, axis=0)
        result = bamdp.step(actions.astype(np.float32))
        record["obs"].append(observations)
        record["actions"].append(actions.astype(np.float32))
        record["next_obs"].append(result.next_observations)
        record["rewards"].append(result.rewards)
        observations = result.observations
    stored = {key: np.array(value) for key, value in record.items()}
    assert stored["obs"].shape[-1] == env.observation_space.shape[0] + 1
    native = bamdp.to_native_actions(stored["actions"][:, 0])
    relabelled = env.reward(stored["obs"][:, 0], native, stored["next_obs"][:, 0], tasks[1])
    np.testing.assert_array_equal(relabelled, stored["rewards"][:, 1])
    env.close()


@pytest.mark.parametrize("name", list(SPARSE_RADII))
def test_focal_sparse_rewards_follow_the_buffer_rule(name):
    env = make_batched_env(name, num_envs=2)
    _, record = rollout(env, np.stack([env.task_from_seed(1)] * 2), seeds=[0, 1], steps=30)
    radius = SPARSE_RADII[name]
    rewards = record["rewards"].astype(np.float64)
    expected = np.where(rewards >= radius, (rewards - radius) / abs(radius), 0.0)
    np.testing.assert_allclose(record["sparse"], expected, rtol=1e-6)
    env.close()


@pytest.mark.parametrize("name", RAND_PARAMS)
def test_rand_param_rewards_refuse_to_be_recomputed(name):
    env = make_batched_env(name)
    assert env.reward_recomputable is False and env.task_changes_dynamics is True
    obs = np.zeros((1, env.observation_space.shape[0]), dtype=np.float32)
    with pytest.raises(NotImplementedError, match="Policy Replaying"):
        env.reward(obs, np.zeros((1, env.action_space.shape[0])), obs, env.task_from_seed(0))


# ------------------------------------------------------------------------------------- termination
def _step_from(
    name: str, qpos_changes: dict[int, float], qvel_changes: dict[int, float] | None = None
) -> bool:
    """Whether one zero-action step from qpos0 (with the given entries changed) terminates."""
    env = make_batched_env(name)
    env.set_tasks(env.task_from_seed(0)[None])
    qpos = env.model.qpos0.copy()
    qvel = np.zeros(env.model.nv)
    for index, value in qpos_changes.items():
        qpos[index] = value
    for index, value in (qvel_changes or {}).items():
        qvel[index] = value
    env.set_state(0, qpos, qvel)
    return bool(env.step(np.zeros((1, env.action_space.shape[0]))).terminated[0])


def test_termination_rules():
    assert not _step_from("ant_dir", {})
    assert _step_from("ant_dir", {2: 1.5})  # torso above 1.0
    assert not _step_from("ant_goal", {2: 1.5})  # the goal tasks never terminate
    assert not _step_from("ant_semicircle", {2: 1.5})
    assert not _step_from("humanoid_dir", {})
    assert _step_from("humanoid_dir", {2: 2.5})  # torso above 2
    assert not _step_from("walker_rand_params", {})
    assert _step_from("walker_rand_params", {2: 1.2})  # torso angle beyond 1
    assert _step_from("walker_rand_params", {1: 2.3})  # torso above 2
    assert not _step_from("hopper_rand_params", {})
    assert _step_from("hopper_rand_params", {2: 0.3})  # torso angle beyond 0.2
    assert _step_from("hopper_rand_params", {}, {0: 150.0})  # a state entry beyond 100
    assert not _step_from("cheetah_vel", {2: 3.0})  # upside down, yet never terminates


@pytest.mark.parametrize("name", ["cheetah_vel", "ant_goal", "ant_semicircle"])
def test_families_without_falls_never_terminate_under_random_actions(environments, name):
    env = environments[name]
    _, record = rollout(env, np.stack([env.task_from_seed(0)] * 2), seeds=[0, 1], steps=100)
    assert not record["done"].any()


# ------------------------------------------------------------------------------------- rand params
@pytest.mark.parametrize("name", ["walker_rand_params", "hopper_rand_params"])
def test_rand_params_restore_gives_bit_identical_trajectories(name):
    env = make_batched_env(name)
    task_a, task_b = env.task_from_seed(11)[None], env.task_from_seed(12)[None]
    _, first = rollout(env, task_a, seeds=[4], steps=30)
    _, other = rollout(env, task_b, seeds=[4], steps=30)
    _, again = rollout(env, task_a, seeds=[4], steps=30)
    np.testing.assert_array_equal(again["next_obs"], first["next_obs"])
    np.testing.assert_array_equal(again["rewards"], first["rewards"])
    assert not np.array_equal(other["next_obs"], first["next_obs"])

    env.set_tasks(np.zeros((1, env.task_dim)))
    model = env._simulators[0].model
    pristine = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / type(env).model_file))
    for field in [
        *PARAMETER_BASES,
        "body_subtreemass",
        "dof_invweight0",
        "body_invweight0",
        "dof_M0",
        "actuator_acc0",
    ]:
        np.testing.assert_array_equal(getattr(model, field), getattr(pristine, field), field)
    assert model.stat.meaninertia == pristine.stat.meaninertia


def test_rand_param_tasks_scale_each_entry_from_the_pristine_model():
    env = make_batched_env("walker_rand_params", num_envs=2)
    tasks = env.sample_tasks(2, np.random.default_rng(0))
    env.set_tasks(tasks)
    pristine = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / "walker2d_rand_params.xml"))
    mass, inertia, damping, friction = np.split(tasks[1], [8, 32, 41])
    model = env._simulators[1].model
    np.testing.assert_array_equal(model.body_mass, pristine.body_mass * 1.5**mass)
    np.testing.assert_array_equal(
        model.body_inertia, pristine.body_inertia * 1.5 ** inertia.reshape(8, 3)
    )
    np.testing.assert_array_equal(model.dof_damping, pristine.dof_damping * 1.3**damping)
    np.testing.assert_array_equal(
        model.geom_friction, pristine.geom_friction * 1.5 ** friction.reshape(8, 3)
    )
    assert model.dof_damping[:3].tolist() == [0.0, 0.0, 0.0]
    assert env._simulators[0].model is not model


# ------------------------------------------------------------------------------------- vectorised
@pytest.mark.parametrize("name", ["cheetah_vel", "ant_dir", "walker_rand_params"])
def test_copies_are_independent_and_match_a_single_copy(name):
    batched = make_batched_env(name, num_envs=3)
    task_a, task_b = batched.task_from_seed(0), batched.task_from_seed(1)
    actions = random_actions(batched, np.random.default_rng(0), 20)
    actions[:, 2] = actions[:, 0]
    batched.set_tasks(np.stack([task_a, task_b, task_a]))
    batched.seed([5, 6, 5])
    batched.reset()
    single = make_batched_env(name, num_envs=1)
    single.set_tasks(task_a[None])
    single.seed([5])
    single.reset()
    for action in actions:
        together = batched.step(action)
        alone = single.step(action[:1])
        np.testing.assert_array_equal(together.observations[0], together.observations[2])
        np.testing.assert_array_equal(together.observations[0], alone.observations[0])
        np.testing.assert_array_equal(together.rewards[0], alone.rewards[0])
    assert not np.array_equal(together.observations[0], together.observations[1])


def test_masked_reset_leaves_the_other_copies_alone():
    env = make_batched_env("ant_goal", num_envs=2)
    env.set_tasks(np.stack([env.task_from_seed(0)] * 2))
    env.seed([0, 1])
    env.reset()
    stepped = env.step(np.full((2, 8), 0.3)).observations
    after = env.reset(np.array([True, False]))
    np.testing.assert_array_equal(after[1], stepped[1])
    assert not np.array_equal(after[0], stepped[0])


def test_the_absolute_position_is_tracked_outside_the_simulator():
    env = make_batched_env("cheetah_vel")
    env.set_tasks(np.array([[1.0]]))
    env.reset()
    for _ in range(40):
        observation = env.step(np.full((1, 6), 0.8)).observations[0]
    qpos, _ = env.get_state(0)
    assert env._simulators[0].qpos[0] == 0.0
    assert abs(observation[17] - qpos[0]) < 0.1  # torso x from the last substep


# ------------------------------------------------------------------------------------- rendering
def test_render_frames_and_write_gif_and_png(tmp_path):
    env = make_batched_env("ant_semicircle", num_envs=2)
    env.set_tasks(np.stack([env.task_from_seed(0)] * 2))
    env.reset()
    try:
        first = env.render_frames(1)
    except RuntimeError as error:
        pytest.skip(f"no offscreen OpenGL on this machine: {error}")
    frames = [first]
    for _ in range(3):
        env.step(np.full((2, 8), 0.5))
        frames.append(env.render_frames(1))
    env.close()
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    assert first.std() > 5.0
    gif = write_frames(frames, tmp_path / "figures" / "rollout.gif")
    assert imageio.imread(gif, index=None).shape[0] == 4
    png = write_frames(frames, tmp_path / "rollout.png", strip_frames=2)
    assert imageio.imread(png).shape[:2] == (240, 640)
    with pytest.raises(ValueError, match="suffix"):
        write_frames(frames, tmp_path / "rollout.mp4")


def test_set_state_and_get_state_round_trip_through_float32():
    env = make_batched_env("ant_dir")
    env.set_tasks(env.task_from_seed(0)[None])
    qpos = env.model.qpos0 + 0.1
    qvel = np.linspace(-1.0, 1.0, env.model.nv)
    observation = env.set_state(0, qpos, qvel)
    got_qpos, got_qvel = env.get_state(0)
    np.testing.assert_array_equal(got_qpos[2:], qpos[2:].astype(np.float32))
    np.testing.assert_array_equal(got_qpos[:2], qpos[:2])
    np.testing.assert_array_equal(got_qvel, qvel.astype(np.float32))
    np.testing.assert_array_equal(observation, np.concatenate([qpos[2:], qvel]).astype(np.float32))


def test_figures_helpers_draw_the_task_and_the_planar_path():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name in ("ant_dir", "ant_goal", "ant_semicircle", "humanoid_dir"):
        env = make_batched_env(name)
        figure, ax = plt.subplots()
        env.plot_task(ax, env.task_from_seed(2))
        assert ax.patches or ax.lines
        plt.close(figure)
    observations = np.zeros((5, 29), dtype=np.float32)
    observations[:, :2] = np.arange(10).reshape(5, 2)
    xy = make_batched_env("ant_semicircle").trajectory_xy(observations)
    np.testing.assert_array_equal(xy, observations[:, :2])
    assert make_batched_env("ant_dir").trajectory_xy(observations) is None


@pytest.mark.parametrize("name", ["ant_goal", "ant_dir", "humanoid_dir"])
def test_contact_forces_can_be_left_at_zero_as_under_mujoco_2(name):
    with_forces = make_batched_env(name, num_envs=1, env_options={"contact_forces": True})
    without = make_batched_env(name, num_envs=1)  # the papers' names default to MuJoCo 2.0's zeros
    task = with_forces.task_from_seed(0)[None]
    actions, record = rollout(with_forces, task, seeds=[0], steps=20)
    _, zeroed = rollout(without, task, seeds=[0], steps=20)
    np.testing.assert_array_equal(zeroed["next_obs"][..., :27], record["next_obs"][..., :27])
    if name == "ant_goal":
        assert np.abs(record["next_obs"][..., 29:]).max() > 0.0
        np.testing.assert_array_equal(zeroed["next_obs"][..., 29:], 0.0)
    if name == "humanoid_dir":
        np.testing.assert_array_equal(zeroed["next_obs"][..., 292:], 0.0)
    assert np.all(zeroed["rewards"] >= record["rewards"])  # no contact cost
    recomputed = without.reward(zeroed["obs"], actions, zeroed["next_obs"], task)
    np.testing.assert_array_equal(recomputed, zeroed["rewards"])
