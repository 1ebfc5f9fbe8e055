"""Registry entries of the MuJoCo task families (imported by ``environments.registry``).

Only :class:`EnvSpec` values live here, so importing this module does not import MuJoCo. BOReL's
names (underscores) play k = 2 episodes per task; FOCAL's names (dashes) play one. Every episode
lasts 200 steps. FOCAL's ``sparse-*`` names keep the dense reward for learning and report
FOCAL's sparse companion (r - rho) / |rho| for r >= rho in ``infos['sparse_reward']``. The ant-dir,
ant-goal and humanoid names leave MuJoCo's contact forces at zero, as the papers' MuJoCo 2.0 runs
did (``--env-options contact_forces=true`` computes them).
"""

from environments.registry_types import EnvSpec

_MUJOCO = "environments.mujoco"
_CHEETAH_VEL = f"{_MUJOCO}.half_cheetah:HalfCheetahVelocity"
_CHEETAH_DIR = f"{_MUJOCO}.half_cheetah:HalfCheetahDirection"
_ANT_DIR = f"{_MUJOCO}.ant:AntDirection"
_ANT_GOAL = f"{_MUJOCO}.ant:AntGoal"
_ANT_SEMICIRCLE = f"{_MUJOCO}.ant:AntSemicircle"
_HUMANOID_DIR = f"{_MUJOCO}.humanoid:HumanoidDirection"
_WALKER = f"{_MUJOCO}.rand_params:Walker2DRandomParams"
_HOPPER = f"{_MUJOCO}.rand_params:HopperRandomParams"

MUJOCO_SPECS: list[EnvSpec] = [
    # ---------------------------------------------------------------- BOReL (k = 2)
    EnvSpec(
        "cheetah_vel",
        _CHEETAH_VEL,
        {"max_episode_steps": 200},
        episodes_per_task=2,
        description="half-cheetah, target velocity v* ~ U[0, 3], r = -|v - v*| - 0.05||a||^2",
    ),
    EnvSpec(
        "cheetah_dir",
        _CHEETAH_DIR,
        {"max_episode_steps": 200},
        episodes_per_task=2,
        description="half-cheetah, direction d in {-1, +1}, r = d v - 0.05||a||^2",
    ),
    EnvSpec(
        "ant_dir",
        _ANT_DIR,
        {"contact_forces": False, "max_episode_steps": 200, "forward_backward": False},
        episodes_per_task=2,
        description="ant, direction theta ~ U[0, 2pi), velocity along it - costs + 1, falls end",
    ),
    EnvSpec(
        "ant_goal",
        _ANT_GOAL,
        {"contact_forces": False, "max_episode_steps": 200},
        episodes_per_task=2,
        description="ant, goal uniform in a disc of radius 3, r = -L1(xy - g) - costs",
    ),
    EnvSpec(
        "ant_semicircle",
        _ANT_SEMICIRCLE,
        {"max_episode_steps": 200, "reward_variant": "dense", "start_distribution": "origin"},
        episodes_per_task=2,
        description="ant, goal on the upper unit arc, dense r = -L1(xy - g) - 0.1||a||^2",
    ),
    EnvSpec(
        "ant_semicircle_sparse",
        _ANT_SEMICIRCLE,
        {"max_episode_steps": 200, "reward_variant": "sparse", "start_distribution": "origin"},
        episodes_per_task=2,
        description="ant, goal on the upper unit arc, r = 1[||xy - g|| <= 0.2] - 0.1||a||^2",
    ),
    EnvSpec(
        "humanoid_dir",
        _HUMANOID_DIR,
        {"contact_forces": False, "max_episode_steps": 200},
        episodes_per_task=2,
        description="humanoid, direction theta ~ U[0, 2pi), falls end the episode",
    ),
    EnvSpec(
        "walker_rand_params",
        _WALKER,
        {"max_episode_steps": 200},
        episodes_per_task=2,
        description="walker-2D, masses/inertias/friction x 1.5^U(-3,3), damping x 1.3^U(-3,3)",
    ),
    EnvSpec(
        "hopper_rand_params",
        _HOPPER,
        {"max_episode_steps": 200},
        episodes_per_task=2,
        description="hopper, masses/inertias/friction x 1.5^U(-3,3), damping x 1.3^U(-3,3)",
    ),
    # ---------------------------------------------------------------- FOCAL (k = 1)
    EnvSpec(
        "cheetah-vel",
        _CHEETAH_VEL,
        {"max_episode_steps": 200},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL half-cheetah-vel: v* ~ U[0, 3], r = -|v - v*| - 0.05||a||^2",
    ),
    EnvSpec(
        "sparse-cheetah-vel",
        _CHEETAH_VEL,
        {"max_episode_steps": 200, "sparse_goal_radius": -0.1},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL cheetah-vel with sparse contexts: (r + 0.1) / 0.1 where r >= -0.1",
    ),
    EnvSpec(
        "cheetah-dir",
        _CHEETAH_DIR,
        {"max_episode_steps": 200},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL half-cheetah-fwd-back: d in {-1, +1}, r = d v - 0.05||a||^2",
    ),
    EnvSpec(
        "sparse-cheetah-dir",
        _CHEETAH_DIR,
        {"max_episode_steps": 200, "sparse_goal_radius": 0.5},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL cheetah-dir with sparse contexts: (r - 0.5) / 0.5 where r >= 0.5",
    ),
    EnvSpec(
        "ant-dir",
        _ANT_DIR,
        {"contact_forces": False, "max_episode_steps": 200, "forward_backward": True},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL ant-fwd-back: theta in {0, pi}, falls end the episode",
    ),
    EnvSpec(
        "sparse-ant-dir",
        _ANT_DIR,
        {"contact_forces": False, "max_episode_steps": 200, "forward_backward": True,
         "sparse_goal_radius": 3.0},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL ant-fwd-back with sparse contexts: (r - 3) / 3 where r >= 3",
    ),
    EnvSpec(
        "ant-goal",
        _ANT_GOAL,
        {"contact_forces": False, "max_episode_steps": 200},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL ant-goal: goal uniform in a disc of radius 3, r = -L1(xy - g) - costs",
    ),
    EnvSpec(
        "humanoid-dir",
        _HUMANOID_DIR,
        {"contact_forces": False, "max_episode_steps": 200},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL humanoid-dir: theta ~ U[0, 2pi), falls end the episode",
    ),
    EnvSpec(
        "walker-rand-params",
        _WALKER,
        {"max_episode_steps": 200},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL walker-2D-params: random masses, inertias, damping and friction",
    ),
    EnvSpec(
        "sparse-walker-rand-params",
        _WALKER,
        {"max_episode_steps": 200, "sparse_goal_radius": 0.5},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL walker-params with sparse contexts: (r - 0.5) / 0.5 where r >= 0.5",
    ),
    EnvSpec(
        "hopper-rand-params",
        _HOPPER,
        {"max_episode_steps": 200},
        episodes_per_task=1,
        paper="focal",
        description="FOCAL hopper-params: random masses, inertias, damping and friction",
    ),
]
