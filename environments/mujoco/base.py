"""The machinery shared by the MuJoCo task families: K simulators stepped in one loop.

A family holds one ``MjData`` per copy (and one ``MjModel`` per copy where the task changes the
physics) and advances every copy with ``mujoco.mj_step(model, data, nstep=frame_skip)`` inside one
Python loop; rewards, terminations and the FOCAL sparse companion are then computed for all K
copies at once.

Exact reward recomputation (``reward(obs, action, next_obs, task)`` returns bit for bit what
``step`` returned):

- Where the reward is a function of the stored observations (the ant's goal tasks), ``step`` applies
  the same formula to the float32 observations it returns.
- Where it needs a displacement that the observation leaves out (the x of the cheetah, the xy of
  the ant and the humanoid: ``planar_root_size`` leading qpos entries), the family *replays* the
  transition: ``reward`` rebuilds the simulator state from the stored observation, applies the
  stored action for one control step and measures what the reward needs (the displacement, the
  contact forces). ``step`` measures through the same code path, and three rules make the replay
  identical to the step:

  1. the planar root coordinates are kept out of the simulator: every step starts from root
     (x[, y]) = 0 and the absolute position is accumulated in float64 beside the simulator
     (the dynamics are invariant to horizontal translation; doing it in floating point exactly
     needs the same origin in both runs);
  2. the simulator state (qpos, qvel) is rounded to float32 after every step and reset, so the
     float32 observation holds it exactly;
  3. the solver's warm start (``qacc_warmstart``) is cleared before every step, so no hidden state
     carries over from the previous step.

  Actions are rounded to float32 before they reach the simulator, like the stored actions.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, ClassVar

if sys.platform.startswith("linux"):
    # Offscreen rendering on machines without a display; set MUJOCO_GL yourself to choose another
    # backend. It only has an effect if MuJoCo has not been imported yet.
    os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np
from gymnasium import spaces

from environments.base import BatchedStep, BatchedTaskEnv

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_MAX_EPISODE_STEPS = 200


def gymnasium_asset(file_name: str) -> Path:
    """Path of a model bundled with gymnasium (the papers' cheetah and humanoid use gym's files)."""
    spec = importlib.util.find_spec("gymnasium.envs.mujoco")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gymnasium's MuJoCo assets are not installed")
    return Path(spec.submodule_search_locations[0]) / "assets" / file_name


def square_sum(values: np.ndarray) -> np.ndarray:
    """sum_j values[..., j]^2 in float64, shape values.shape[:-1].

    The squares are laid out C-contiguously: NumPy then sums every row in the same order whatever
    the leading shape, so a reward computed for K copies and for a whole dataset gives the same
    bits (a strided array can be summed in another order).
    """
    squares = np.square(values, dtype=np.float64, order="C")
    return np.add.reduce(squares, axis=-1)


def plot_direction(ax: Any, angle: float) -> None:
    """Draw a direction task on a matplotlib axis: a unit arrow from the origin at ``angle``."""
    ax.arrow(0.0, 0.0, np.cos(angle), np.sin(angle), width=0.03, color="tab:green")
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.set_aspect("equal")


def make_renderer(model: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """An offscreen ``mujoco.Renderer``; raises a RuntimeError that says how to get one."""
    try:
        return mujoco.Renderer(model, height, width)
    except Exception as error:
        raise RuntimeError(
            f"MuJoCo cannot render offscreen ({error}); on a machine without a display set "
            "MUJOCO_GL=egl (or osmesa) before mujoco is first imported"
        ) from error


class Simulator:
    """One ``MjModel`` / ``MjData`` pair with cached views of the arrays the step loop touches
    (each ``data.qpos`` attribute access builds a new NumPy view, which costs more than the
    arithmetic done with it)."""

    __slots__ = ("model", "data", "qpos", "qvel", "ctrl", "qacc_warmstart")

    def __init__(self, model: mujoco.MjModel) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.qpos = self.data.qpos
        self.qvel = self.data.qvel
        self.ctrl = self.data.ctrl
        self.qacc_warmstart = self.data.qacc_warmstart


def focal_sparse_reward(rewards: np.ndarray, goal_radius: float) -> np.ndarray:
    """FOCAL's sparse companion of a dense reward r with threshold rho = goal_radius:
    (r - rho) / |rho| where r >= rho, else 0 (focal.md 1.5, the replay-buffer rule)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    sparse = np.where(rewards >= goal_radius, (rewards - goal_radius) / abs(goal_radius), 0.0)
    return sparse.astype(np.float32)


class MujocoTaskEnv(BatchedTaskEnv):
    """K copies of a MuJoCo task family (see the module docstring for the exactness rules).

    Subclasses set the class attributes, call ``__init__`` with their model file, and implement
    ``sample_tasks``, ``_sample_initial_state``, ``_write_observation``, ``_rewards`` and, where
    needed, ``_before_step``, ``_after_step``, ``_terminations`` and ``_successes``.

    Attributes:
        dt: seconds per control step, ``timestep * frame_skip``.
        sparse_goal_radius: FOCAL's threshold rho for the sparse companion reward (None: none).
        render_width, render_height: size of the frames ``render_frames`` returns.
    """

    replays_transitions: ClassVar[bool] = False
    """``reward`` re-simulates the transition from the stored observation (see the module doc);
    the observation must then start with qpos[planar_root_size:] followed by qvel."""
    planar_root_size: ClassVar[int] = 0
    """Leading qpos entries (root x, or x and y) left out of the observation and the simulator."""
    measurement_dim: ClassVar[int] = 0
    """Per-transition physics quantities the reward needs (displacement, contact costs)."""
    computes_contact_forces: bool = False
    """Call ``mj_rnePostConstraint`` after each step and reset so that ``cfrc_ext`` is filled
    (MuJoCo >= 2.0 leaves it zero otherwise)."""
    can_terminate: ClassVar[bool] = False
    """Episodes can end early (a fall); ``_terminations`` says when."""
    render_camera: ClassVar[str] = "track"
    reset_noise_scale: ClassVar[float] = 0.1
    """Scale c of the reset noise (see ``_sample_initial_state``)."""
    reset_velocity_noise: ClassVar[str] = "normal"
    """``normal``: velocities N(0, c^2); ``uniform``: U(-c, c)."""

    def __init__(
        self,
        num_envs: int,
        model_path: Path,
        frame_skip: int,
        observation_dim: int,
        max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
        model_per_copy: bool = False,
        sparse_goal_radius: float | None = None,
    ) -> None:
        super().__init__(num_envs)
        if sparse_goal_radius is not None and sparse_goal_radius == 0:
            raise ValueError("sparse_goal_radius must be non-zero (it divides the reward)")
        self.sparse_goal_radius = sparse_goal_radius
        self._pristine_model = mujoco.MjModel.from_xml_path(str(model_path))
        if model_per_copy:
            models = [mujoco.MjModel.from_xml_path(str(model_path)) for _ in range(num_envs)]
        else:
            models = [self._pristine_model] * num_envs
        self._simulators = [Simulator(model) for model in models]
        self.frame_skip = int(frame_skip)
        self.dt = float(self._pristine_model.opt.timestep * frame_skip)
        self.max_episode_steps = int(max_episode_steps)
        self.observation_space = spaces.Box(
            -np.inf, np.inf, shape=(observation_dim,), dtype=np.float32
        )
        control_range = self._pristine_model.actuator_ctrlrange.astype(np.float32)
        self.action_space = spaces.Box(control_range[:, 0], control_range[:, 1], dtype=np.float32)
        self._initial_qpos = self._pristine_model.qpos0.copy()
        self._initial_qvel = np.zeros(self._pristine_model.nv)
        self._observations = np.zeros((num_envs, observation_dim), dtype=np.float32)
        self._measurements = np.zeros((num_envs, self.measurement_dim))
        self._root_offsets = np.zeros((num_envs, self.planar_root_size))
        self._observation_rows = list(self._observations)
        self._measurement_rows = list(self._measurements)
        self._observed_qpos = self._pristine_model.nq - self.planar_root_size
        self._observed_state = self._observed_qpos + self._pristine_model.nv
        self._qpos = np.zeros((num_envs, self._pristine_model.nq))
        self._qvel = np.zeros((num_envs, self._pristine_model.nv))
        self._replay_simulator: Simulator | None = None
        self._render_simulator: Simulator | None = None
        self._renderer: mujoco.Renderer | None = None
        self.render_width = 320
        self.render_height = 240

    @property
    def model(self) -> mujoco.MjModel:
        """The family's compiled model as loaded (rand-param copies simulate modified copies)."""
        return self._pristine_model

    # ----------------------------------------------------------------------------- hooks
    def _sample_initial_state(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Absolute (qpos, qvel) of a fresh episode drawn with the copy's random stream: with
        c = ``reset_noise_scale``, qpos0 + U(-c, c) and velocities N(0, c^2) (``normal``, gym's
        cheetah and ant) or U(-c, c) (``uniform``, gym's humanoid and the rand-param models)."""
        scale = self.reset_noise_scale
        qpos = self._initial_qpos + rng.uniform(-scale, scale, size=self._initial_qpos.shape)
        if self.reset_velocity_noise == "normal":
            noise = scale * rng.standard_normal(self._initial_qvel.shape)
        else:
            noise = rng.uniform(-scale, scale, size=self._initial_qvel.shape)
        return qpos, self._initial_qvel + noise

    def _before_step(self, simulator: Simulator) -> Any:
        """Whatever ``_after_step`` needs from the state before the step (nothing by default)."""
        return None

    def _after_step(self, simulator: Simulator, before: Any, measurement: np.ndarray) -> None:
        """Write the quantities the reward needs into ``measurement`` (measurement_dim,)."""

    def _write_observation(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        """Write copy ``index``'s observation into the float32 ``row`` (obs_dim,)."""
        raise NotImplementedError

    def _rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        measurements: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray:
        """The reward formula, vectorised; ``action`` is float32 and ``measurements`` come from
        ``_after_step`` (of the step or of its replay). Returns float32."""
        raise NotImplementedError

    def _terminations(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Whether each copy fell, from the states after the step (K, nq), (K, nv); only called
        where ``can_terminate``. The planar root entries of ``qpos`` are 0 where the family keeps
        them out of the simulator."""
        raise NotImplementedError

    def _successes(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """``success`` for the K copies of a step; families with a goal override both."""
        return np.zeros(self.num_envs, dtype=bool)

    def _sparse_rewards(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        next_obs: np.ndarray,
        rewards: np.ndarray,
        task: np.ndarray,
    ) -> np.ndarray | None:
        """The sparse companion reported in ``infos['sparse_reward']``, or None: by default
        FOCAL's rule applied to the dense ``rewards`` when ``sparse_goal_radius`` is set."""
        if self.sparse_goal_radius is None:
            return None
        return focal_sparse_reward(rewards, self.sparse_goal_radius)

    # ----------------------------------------------------------------------------- simulation
    def _simulate(self, simulator: Simulator, action: np.ndarray, measurement: np.ndarray) -> None:
        """One control step of one copy; the shared path of ``step`` and of the replay."""
        simulator.ctrl[:] = action
        if self.replays_transitions:
            simulator.qacc_warmstart[:] = 0.0
        before = self._before_step(simulator)
        mujoco.mj_step(simulator.model, simulator.data, nstep=self.frame_skip)
        if self.computes_contact_forces:
            mujoco.mj_rnePostConstraint(simulator.model, simulator.data)
        self._after_step(simulator, before, measurement)

    def _settle(self, index: int, simulator: Simulator, row: np.ndarray) -> None:
        """After a step: move the planar root back to the origin and, where transitions are
        replayed, round the state to float32 by copying back the observation ``row`` (which
        starts with qpos[planar_root_size:] and qvel as float32)."""
        qpos = simulator.qpos
        planar = self.planar_root_size
        if planar:
            self._root_offsets[index] += qpos[:planar]
            qpos[:planar] = 0.0
        if self.replays_transitions:
            qpos[planar:] = row[: self._observed_qpos]
            simulator.qvel[:] = row[self._observed_qpos : self._observed_state]
        if self.can_terminate:
            self._qpos[index] = qpos
            self._qvel[index] = simulator.qvel

    def set_state(self, index: int, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Put copy ``index`` into the absolute state (qpos, qvel) and return its observation.

        The state is rounded to float32 in families that replay transitions. Used by resets, and
        by tests and figures that need a given configuration.
        """
        qpos, qvel = np.asarray(qpos, dtype=np.float64), np.asarray(qvel, dtype=np.float64)
        simulator = self._simulators[index]
        mujoco.mj_resetData(simulator.model, simulator.data)
        planar = self.planar_root_size
        self._root_offsets[index] = qpos[:planar]
        simulator.qpos[:planar] = 0.0
        simulator.qpos[planar:] = qpos[planar:]
        simulator.qvel[:] = qvel
        if self.replays_transitions:
            simulator.qpos[:] = simulator.qpos.astype(np.float32)
            simulator.qvel[:] = simulator.qvel.astype(np.float32)
        self._qpos[index] = simulator.qpos
        self._qvel[index] = simulator.qvel
        mujoco.mj_forward(simulator.model, simulator.data)
        if self.computes_contact_forces:
            mujoco.mj_rnePostConstraint(simulator.model, simulator.data)
        self._write_observation(index, simulator, self._observations[index])
        return self._observations[index].copy()

    def get_state(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The absolute (qpos, qvel) of copy ``index`` (planar root position included)."""
        simulator = self._simulators[index]
        qpos = simulator.qpos.copy()
        qpos[: self.planar_root_size] += self._root_offsets[index]
        return qpos, simulator.qvel.copy()

    def _reset_copies(self, mask: np.ndarray) -> np.ndarray:
        for index in np.flatnonzero(mask):
            qpos, qvel = self._sample_initial_state(self._random_streams[index])
            self.set_state(int(index), qpos, qvel)
        return self._observations.copy()

    def _step(self, actions: np.ndarray) -> BatchedStep:
        actions = actions.astype(np.float32)
        observations = self._observations.copy()
        for index, simulator in enumerate(self._simulators):
            self._simulate(simulator, actions[index], self._measurement_rows[index])
            row = self._observation_rows[index]
            self._write_observation(index, simulator, row)
            self._settle(index, simulator, row)
        next_observations = self._observations.copy()
        tasks = self._tasks
        rewards = self._rewards(observations, actions, next_observations, self._measurements, tasks)
        infos: dict[str, np.ndarray] = {}
        sparse = self._sparse_rewards(observations, actions, next_observations, rewards, tasks)
        if sparse is not None:
            infos["sparse_reward"] = sparse
        if self.can_terminate:
            terminated = self._terminations(self._qpos, self._qvel)
        else:
            terminated = np.zeros(self.num_envs, dtype=bool)
        return BatchedStep(
            observations=next_observations,
            rewards=rewards,
            terminated=terminated,
            successes=self._successes(observations, actions, next_observations, tasks),
            infos=infos,
        )

    def replay_measurements(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Re-simulate stored transitions and return what the reward needs of each.

        Args:
            obs: stored observations (..., obs_dim[+1]); a trailing BAMDP done flag is ignored.
            action: the native actions given to ``step`` (..., action_dim).

        Returns:
            measurements, shape (broadcast leading shape, measurement_dim).
        """
        if not self.replays_transitions:
            raise RuntimeError(f"{type(self).__name__} does not replay transitions")
        model = self._pristine_model
        observed_qpos, state_dim = self._observed_qpos, self._observed_state
        obs = np.asarray(obs, dtype=np.float32)[..., :state_dim]
        action = np.asarray(action, dtype=np.float32)
        shape = np.broadcast_shapes(obs.shape[:-1], action.shape[:-1])
        obs = np.broadcast_to(obs, (*shape, state_dim)).reshape(-1, state_dim)
        action = np.broadcast_to(action, (*shape, action.shape[-1])).reshape(-1, action.shape[-1])
        measurements = np.zeros((obs.shape[0], self.measurement_dim))
        if self._replay_simulator is None:
            self._replay_simulator = Simulator(model)
        simulator = self._replay_simulator
        for row in range(obs.shape[0]):
            simulator.qpos[: self.planar_root_size] = 0.0
            simulator.qpos[self.planar_root_size :] = obs[row, :observed_qpos]
            simulator.qvel[:] = obs[row, observed_qpos:]
            self._simulate(simulator, action[row], measurements[row])
        return measurements.reshape(*shape, self.measurement_dim)

    # ----------------------------------------------------------------------------- rewards
    def reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray:
        """The reward ``step`` gave for (obs, action, next_obs) under ``task``, float32.

        ``action`` is the native action passed to ``step``. Families that replay transitions
        re-simulate each one (about one step's cost per transition).
        """
        action = np.asarray(action, dtype=np.float32)
        if self.replays_transitions:
            measurements = self.replay_measurements(obs, action)
        else:
            measurements = np.zeros((*np.shape(next_obs)[:-1], self.measurement_dim))
        return self._rewards(
            np.asarray(obs), action, np.asarray(next_obs), measurements, np.asarray(task)
        )

    def sparse_reward(
        self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, task: np.ndarray
    ) -> np.ndarray | None:
        """FOCAL's sparse companion of ``reward`` (None without ``sparse_goal_radius``)."""
        if self.sparse_goal_radius is None:
            return None
        return focal_sparse_reward(
            self.reward(obs, action, next_obs, task), self.sparse_goal_radius
        )

    # ----------------------------------------------------------------------------- figures
    def render_frames(self, index: int = 0) -> np.ndarray:
        """An RGB frame (render_height, render_width, 3) uint8 of copy ``index`` from the model's
        tracking camera, at the copy's absolute position.

        Needs an OpenGL backend: on a machine without a display set ``MUJOCO_GL=egl`` (or
        ``osmesa``) before MuJoCo is imported.
        """
        size = (self.render_width, self.render_height)
        if self._renderer is None or (self._renderer.width, self._renderer.height) != size:
            self._close_renderer()
            self._renderer = make_renderer(
                self._pristine_model, self.render_height, self.render_width
            )
            self._render_simulator = Simulator(self._pristine_model)
        simulator = self._render_simulator
        simulator.qpos[:], simulator.qvel[:] = self.get_state(index)
        mujoco.mj_forward(simulator.model, simulator.data)
        self._renderer.update_scene(simulator.data, camera=self.render_camera)
        return self._renderer.render().copy()

    def _close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def close(self) -> None:
        self._close_renderer()
