"""Meta-World ML1 (``metaworld``) through ``metaworld==3.1.1``.

One family per ML1 environment, chosen with the option ``env_name`` (``"reach-v3"``,
``"handle-pull-v3"``, ...). The papers' ``-v2`` names are aliases of the ``-v3`` tasks (with a
warning); a bare name such as ``"handle-pull"`` means its ``-v3`` task. Spec: borel.md 7.

Task: one of ML1's goal variations, i.e. the vector ``rand_vec`` that fixes the object's start
position and the goal at reset (its size depends on the environment: 6 for reach, object xyz then
goal xyz). ``metaworld.ML1(env_name, seed=benchmark_seed)`` draws 50 training and 50 test
variations; ``goal_set`` picks which of the two lists is the family's task distribution. Seed s
selects variation ``s % 50``; ``sample_tasks`` draws variations without replacement (with
replacement beyond 50). ``set_tasks`` accepts any vector inside ML1's range for the environment.

Observation (39): ML1's partially observable observation (hand, gripper and object state of this
and the previous step; the goal entries are zero). Actions in [-1, 1]^4 (hand displacement,
gripper). Reward: Meta-World's v3 reward in [0, 10]; it reads simulator quantities that the
observation does not hold (the object's start position, the gripper's initial state), so it cannot
be recomputed: ``reward`` raises. ``successes`` is Meta-World's ``info['success']``. Episodes
never terminate early; they last 500 steps (applied by the wrappers). Resets are deterministic
given the task; a new task takes effect at the next reset.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys

if sys.platform.startswith("linux"):
    # Offscreen rendering without a display, as in environments.mujoco.base (effective only if
    # MuJoCo has not been imported yet; set MUJOCO_GL yourself to choose another backend).
    os.environ.setdefault("MUJOCO_GL", "egl")

import metaworld
import mujoco
import numpy as np
from gymnasium import spaces
from metaworld.types import Task

from environments.base import BatchedStep, BatchedTaskEnv
from environments.mujoco.base import make_renderer
from environments.registry import warn_alias
from utils.errors import closest_names

MAX_EPISODE_STEPS = 500
GOAL_SETS = ("train", "test")
DEFAULT_BENCHMARK_SEED = 1337
RENDER_CAMERA = "corner"
INFO_KEYS = (
    "near_object",
    "grasp_success",
    "grasp_reward",
    "in_place_reward",
    "obj_to_target",
    "unscaled_reward",
)


def resolve_env_name(env_name: str) -> str:
    """The ML1 ``-v3`` name for ``env_name``; ``-v2`` names are accepted with a warning."""
    known = metaworld.ML1.ENV_NAMES
    if env_name in known:
        return env_name
    if env_name.endswith("-v2") and f"{env_name[:-3]}-v3" in known:
        warn_alias(env_name, f"{env_name[:-3]}-v3")
        return f"{env_name[:-3]}-v3"
    if f"{env_name}-v3" in known:
        return f"{env_name}-v3"
    raise ValueError(
        f"unknown Meta-World ML1 environment {env_name!r}{closest_names(env_name, known)}"
    )


@functools.cache
def goal_variations(env_name: str, benchmark_seed: int, goal_set: str) -> np.ndarray:
    """ML1's goal variations (``rand_vec``) of ``env_name``, shape (50, task_dim), read-only.

    Built once per process and arguments (ML1 resets the environment 100 times, about 2 s).
    """
    benchmark = metaworld.ML1(env_name, seed=benchmark_seed)
    tasks = benchmark.train_tasks if goal_set == "train" else benchmark.test_tasks
    variations = np.stack([pickle.loads(task.data)["rand_vec"] for task in tasks])
    variations.setflags(write=False)
    return variations


class MetaWorldML1(BatchedTaskEnv):
    """K copies of one ML1 environment, each with its own goal variation."""

    reward_recomputable = False
    success_is_terminal = False

    def __init__(
        self,
        num_envs: int = 1,
        env_name: str = "reach-v3",
        goal_set: str = "train",
        benchmark_seed: int = DEFAULT_BENCHMARK_SEED,
        max_episode_steps: int = MAX_EPISODE_STEPS,
    ) -> None:
        super().__init__(num_envs)
        if goal_set not in GOAL_SETS:
            raise ValueError(f"goal_set must be one of {GOAL_SETS}, got {goal_set!r}")
        self.env_name = resolve_env_name(env_name)
        self.goal_set = goal_set
        self.benchmark_seed = int(benchmark_seed)
        self.max_episode_steps = int(max_episode_steps)
        self._env_class = metaworld.env_dict.ALL_V3_ENVIRONMENTS[self.env_name]
        self._envs = [self._env_class() for _ in range(num_envs)]
        for env in self._envs:
            # Time limits belong to the wrappers; Meta-World would refuse a step beyond its own.
            env.max_path_length = sys.maxsize
        reset_space = self._envs[0]._random_reset_space
        self._task_low = reset_space.low.astype(np.float64)
        self._task_high = reset_space.high.astype(np.float64)
        self.task_dim = int(self._task_low.size)
        observation_space = self._envs[0].sawyer_observation_space
        self.observation_space = spaces.Box(
            observation_space.low.astype(np.float32),
            observation_space.high.astype(np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self._observations = np.zeros((num_envs, self.observation_space.shape[0]), np.float32)
        self._renderers: dict[int, mujoco.Renderer] = {}
        self.render_width = 320
        self.render_height = 240

    # ----------------------------------------------------------------------------- tasks
    def _variations(self) -> np.ndarray:
        return goal_variations(self.env_name, self.benchmark_seed, self.goal_set)

    def sample_tasks(self, num_tasks: int, rng: np.random.Generator) -> np.ndarray:
        variations = self._variations()
        indices = rng.choice(len(variations), size=num_tasks, replace=num_tasks > len(variations))
        return variations[indices].copy()

    def task_from_seed(self, seed: int) -> np.ndarray:
        variations = self._variations()
        return variations[seed % len(variations)].copy()

    def validate_tasks(self, tasks: np.ndarray) -> None:
        super().validate_tasks(tasks)
        tolerance = 1e-9
        below = np.any(tasks < self._task_low - tolerance)
        if below or np.any(tasks > self._task_high + tolerance):
            raise ValueError(
                f"{self.env_name} tasks must lie in [{self._task_low}, {self._task_high}]"
            )

    def _on_tasks_set(self) -> None:
        for env, task in zip(self._envs, self._tasks, strict=True):
            data = {
                "rand_vec": task.copy(),
                "env_cls": self._env_class,
                "partially_observable": True,
            }
            env.set_task(Task(env_name=self.env_name, data=pickle.dumps(data)))

    # ----------------------------------------------------------------------------- episodes
    def _reset_copies(self, mask: np.ndarray) -> np.ndarray:
        for index in np.flatnonzero(mask):
            observation, _ = self._envs[index].reset()
            self._observations[index] = observation
        return self._observations.copy()

    def _step(self, actions: np.ndarray) -> BatchedStep:
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        successes = np.zeros(self.num_envs, dtype=bool)
        infos = {key: np.zeros(self.num_envs) for key in INFO_KEYS}
        for index, env in enumerate(self._envs):
            observation, reward, _, _, info = env.step(np.asarray(actions[index], np.float32))
            self._observations[index] = observation
            rewards[index] = reward
            successes[index] = bool(info["success"])
            for key in INFO_KEYS:
                infos[key][index] = info[key]
        return BatchedStep(
            observations=self._observations.copy(),
            rewards=rewards,
            terminated=np.zeros(self.num_envs, dtype=bool),
            successes=successes,
            infos=infos,
        )

    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """Not available: Meta-World's reward reads simulator state the data does not store."""
        raise NotImplementedError(
            f"Meta-World {self.env_name}: the reward depends on simulator state that stored "
            "transitions do not hold (object start position, gripper state), so it cannot be "
            "recomputed or relabelled"
        )

    # ----------------------------------------------------------------------------- figures
    def render_frames(self, index: int = 0) -> np.ndarray:
        """An RGB frame (render_height, render_width, 3) uint8 of copy ``index`` from Meta-World's
        ``corner`` camera; needs an OpenGL backend (``MUJOCO_GL=egl`` without a display)."""
        env = self._envs[index]
        renderer = self._renderers.get(index)
        if renderer is None or (renderer.width, renderer.height) != (
            self.render_width,
            self.render_height,
        ):
            if renderer is not None:
                renderer.close()
            renderer = make_renderer(env.model, self.render_height, self.render_width)
            self._renderers[index] = renderer
        renderer.update_scene(env.data, camera=RENDER_CAMERA)
        # Meta-World's cameras are mounted upside down; turn the image the right way up.
        return np.ascontiguousarray(np.rot90(renderer.render(), 2))

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        for env in self._envs:
            env.close()
