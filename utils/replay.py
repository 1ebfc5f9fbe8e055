"""Replay storage for K tasks: transitions on the training device, whole meta-episodes on the host.

:class:`EnsembleReplayBuffer` keeps, for each of K members, the valid transitions collected in
its task (padding is dropped on insertion) as tensors (K, capacity, dim) on the device. ``sample``
draws, for every member, ``batch_size`` indices uniformly among that member's own transitions,
entirely on the device: the members' sizes are mirrored on the host for the emptiness checks, so
sampling never waits for the device.

:class:`TrajectoryBuffer` keeps whole meta-episodes (K, capacity, T, dim) per task in host memory,
first in first out, for the belief model (whose loss needs complete trajectories).

Both can start small and grow (doubling) up to their capacity, so that a capacity sized for the
worst case costs memory only when it is used; growing never changes what is stored or sampled.
Their ``state_dict`` holds only the filled part, as tensors, for an exact resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from utils.errors import UserError

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminations")


def inner_episode_successors(observations: np.ndarray, next_observations: np.ndarray,
                             truncations: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """TD successors (N, T, dim) of trajectories (N, T, .) of ``lengths`` (N,): each step's
    ``next_observations``, except at the last step of an inner episode that does not end the
    meta-episode (``truncations`` 1 before the trajectory's last valid step), whose successor is
    the next episode's start ``observations[:, t + 1]``: the state the agent acts on next.

    The stored final state of an inner episode (done flag 1) is never an observation the agent
    acts on, so no update would ever fit its value; bootstrapping from it would read an untrained
    value at every inner reset (spec borel.md 1.1 and 9.6, docs/deviations.md #66). The datasets
    keep the real final state, from which rewards are recomputed."""
    steps = np.arange(observations.shape[1])
    inner_end = (truncations[..., 0] > 0) & (steps[None, :] + 1 < lengths[:, None])
    successors = next_observations.copy()
    successors[:, :-1][inner_end[:, :-1]] = observations[:, 1:][inner_end[:, :-1]]
    return successors


def sample_task_indices(num_tasks: int, count: int, generator: torch.Generator
                        ) -> torch.Tensor:
    """``count`` task indices (count,) for a meta-batch, on the generator's device: without
    replacement when ``count`` <= ``num_tasks`` (else with; spec borel.md 9.9); a caller that
    needs them on the host copies them."""
    if count <= num_tasks:
        return torch.randperm(num_tasks, generator=generator, device=generator.device)[:count]
    return torch.randint(num_tasks, (count,), generator=generator, device=generator.device)


def grown_size(allocated: int, needed: int, capacity: int) -> int:
    """The next allocation: at least ``needed``, at least twice ``allocated``, at most capacity."""
    return min(capacity, max(needed, 2 * allocated, 1))


class EnsembleReplayBuffer:
    """FIFO storage of (K, capacity, dim) transitions; member k holds task k's data.

    ``initial_capacity`` (default: all of ``capacity``) is the first allocation; the storage
    doubles when a member needs more, up to ``capacity``. ``sizes`` (K,) on the device scales the
    sampled indices; ``host_sizes``, a numpy copy kept equal to it by every method that changes
    it, answers questions about the sizes without a device-to-host copy.
    """

    def __init__(self, num_members: int, capacity: int, dims: dict[str, int],
                 device: torch.device | str = "cpu", initial_capacity: int | None = None
                 ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.num_members, self.capacity = num_members, capacity
        self.dims = {name: dims[name] for name in FIELDS}
        self.device = torch.device(device)
        allocated = capacity if initial_capacity is None else min(capacity, initial_capacity)
        self.storage = {
            name: torch.zeros(num_members, allocated, dim, device=self.device)
            for name, dim in self.dims.items()
        }
        self.sizes = torch.zeros(num_members, dtype=torch.long, device=self.device)
        self.host_sizes = np.zeros(num_members, dtype=np.int64)
        self.positions = np.zeros(num_members, dtype=np.int64)

    @property
    def allocated(self) -> int:
        return int(self.storage["rewards"].shape[1])

    def add_trajectories(self, arrays: dict[str, np.ndarray], lengths: np.ndarray,
                         member_of_trajectory: np.ndarray) -> None:
        """Insert the valid steps of trajectories (N, T, dim); trajectory i goes to member
        ``member_of_trajectory[i]``. The oldest transitions are overwritten when full."""
        mask = np.arange(arrays["observations"].shape[1])[None, :] < lengths[:, None]
        for member in np.unique(member_of_trajectory):
            rows = member_of_trajectory == member
            flat = {name: arrays[name][rows][mask[rows]] for name in FIELDS}
            self._insert(int(member), flat)

    def _grow(self, needed: int) -> None:
        size = grown_size(self.allocated, needed, self.capacity)
        for name, values in self.storage.items():
            grown = torch.zeros(self.num_members, size, values.shape[2], device=self.device)
            grown[:, : values.shape[1]] = values
            self.storage[name] = grown

    def _insert(self, member: int, flat: dict[str, np.ndarray]) -> None:
        count = len(flat["observations"])
        if count > self.capacity:
            flat = {name: values[-self.capacity:] for name, values in flat.items()}
            count = self.capacity
        start = int(self.positions[member])
        if start + count > self.allocated and self.allocated < self.capacity:
            self._grow(start + count)
        indices = torch.from_numpy((start + np.arange(count)) % self.capacity).to(self.device)
        for name in FIELDS:
            values = torch.as_tensor(flat[name], dtype=torch.float32, device=self.device)
            self.storage[name][member, indices] = values
        self.positions[member] = (start + count) % self.capacity
        self.host_sizes[member] = min(self.capacity, int(self.host_sizes[member]) + count)
        self.sizes[member] = int(self.host_sizes[member])

    def clear(self) -> None:
        """Forget every transition (the allocation is kept)."""
        self.sizes.zero_()
        self.host_sizes[:] = 0
        self.positions[:] = 0

    def sample(self, batch_size: int, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """A batch (K, batch_size, dim) per field, uniform over each member's transitions."""
        if not self.host_sizes.all():
            raise UserError("cannot sample from an empty replay buffer")
        uniform = torch.rand(self.num_members, batch_size, generator=generator,
                             device=self.device)
        indices = (uniform * self.sizes[:, None]).long()
        members = torch.arange(self.num_members, device=self.device)
        return {name: rows.view(self.num_members, batch_size, -1)
                for name, rows in self._gather(members, indices).items()}

    def sample_tasks(self, members: torch.Tensor, batch_size: int,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One batch (1, M * batch_size, dim) of ``batch_size`` transitions from each of the
        members ``members`` (M,) (repeats allowed): a meta-batch of tasks for one agent.

        ``members`` stays on the device (callers draw it there), so the emptiness check is made
        on the host copy of the sizes for every member of the buffer, not only the listed ones:
        every member must hold transitions (the callers draw among all of them)."""
        if not self.host_sizes.all():
            raise UserError("cannot sample from a task without transitions")
        sizes = self.sizes[members]
        uniform = torch.rand(len(members), batch_size, generator=generator, device=self.device)
        indices = (uniform * sizes[:, None]).long()
        return {name: rows.unsqueeze(0) for name, rows in self._gather(members, indices).items()}

    def _gather(self, members: torch.Tensor, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rows ``indices[i, j]`` of member ``members[i]``, flattened (M * N, dim) per field: one
        ``index_select`` on the (K * allocated, dim) view of each field, about 3x faster on a CPU
        than indexing with the two index tensors."""
        rows = (members[:, None] * self.allocated + indices).reshape(-1)
        return {name: values.view(-1, values.shape[-1]).index_select(0, rows)
                for name, values in self.storage.items()}

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions (the filled part only), sizes and write positions."""
        filled = int(self.host_sizes.max(initial=0))
        return {"storage": {name: values[:, :filled].cpu().clone()
                            for name, values in self.storage.items()},
                "sizes": torch.from_numpy(self.host_sizes.copy()),
                "positions": torch.as_tensor(self.positions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        filled = int(state["storage"]["rewards"].shape[1])
        if filled > self.capacity:
            raise UserError(f"the saved replay buffer holds {filled} transitions per task, more "
                            f"than the capacity {self.capacity}")
        if filled > self.allocated:
            self._grow(filled)
        for name, values in state["storage"].items():
            self.storage[name][:, :filled] = values.to(self.device)
        self.sizes.copy_(state["sizes"].to(self.device))
        self.host_sizes = state["sizes"].cpu().numpy().astype(np.int64).copy()
        self.positions = state["positions"].cpu().numpy().astype(np.int64).copy()


class TrajectoryBuffer:
    """Whole trajectories of K tasks in host memory: step arrays (K, capacity, T, dim) and
    lengths (K, capacity); each task keeps its last ``capacity`` trajectories (FIFO)."""

    def __init__(self, num_tasks: int, capacity: int, trajectory_len: int, dims: dict[str, int],
                 initial_capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.num_tasks, self.capacity, self.trajectory_len = num_tasks, capacity, trajectory_len
        self.dims = dict(dims)
        allocated = min(capacity, max(initial_capacity, 1))
        self.storage = {name: np.zeros((num_tasks, allocated, trajectory_len, dim), np.float32)
                        for name, dim in self.dims.items()}
        self.lengths = np.zeros((num_tasks, allocated), dtype=np.int64)
        self.sizes = np.zeros(num_tasks, dtype=np.int64)
        self.positions = np.zeros(num_tasks, dtype=np.int64)

    @property
    def allocated(self) -> int:
        return int(self.lengths.shape[1])

    def _grow(self, needed: int) -> None:
        size = grown_size(self.allocated, needed, self.capacity)
        for name, values in self.storage.items():
            grown = np.zeros((self.num_tasks, size, *values.shape[2:]), np.float32)
            grown[:, : values.shape[1]] = values
            self.storage[name] = grown
        lengths = np.zeros((self.num_tasks, size), dtype=np.int64)
        lengths[:, : self.lengths.shape[1]] = self.lengths
        self.lengths = lengths

    def add(self, arrays: dict[str, np.ndarray], lengths: np.ndarray,
            task_of_trajectory: np.ndarray) -> None:
        """Store trajectories (N, T, dim) with their lengths (N,); trajectory i belongs to task
        ``task_of_trajectory[i]``. A full task overwrites its oldest trajectory."""
        for row, task in enumerate(np.asarray(task_of_trajectory, dtype=np.int64)):
            position = int(self.positions[task])
            if position >= self.allocated:
                self._grow(position + 1)
            for name in self.dims:
                self.storage[name][task, position] = arrays[name][row]
            self.lengths[task, position] = lengths[row]
            self.positions[task] = (position + 1) % self.capacity
            self.sizes[task] = min(self.capacity, self.sizes[task] + 1)

    def sample_indices(self, tasks: np.ndarray, count: int, generator: torch.Generator
                       ) -> np.ndarray:
        """``count`` uniform slot indices in each of ``tasks`` (M,): (M * count,), task-major.
        The storage is on the host; give a CPU ``generator``, as online VariBAD does, so that
        drawing never waits for a GPU."""
        sizes = torch.as_tensor(self.sizes[tasks])
        if int(sizes.min()) == 0:
            raise UserError("cannot sample trajectories from a task without any")
        uniform = torch.rand(len(tasks), count, generator=generator,
                             device=generator.device).cpu()
        return (uniform * sizes[:, None]).long().reshape(-1).numpy()

    def gather(self, tasks: np.ndarray, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The trajectories in slots ``indices[i]`` of tasks ``tasks[i]``: every step array
        (N, T, dim) and ``lengths`` (N,)."""
        batch = {name: values[tasks, indices] for name, values in self.storage.items()}
        batch["lengths"] = self.lengths[tasks, indices]
        return batch

    def ordered_slots(self, task: int) -> np.ndarray:
        """Slot indices of a task's trajectories, oldest first."""
        size = int(self.sizes[task])
        if size < self.capacity:
            return np.arange(size)
        return (int(self.positions[task]) + np.arange(size)) % self.capacity

    def state_dict(self) -> dict[str, Any]:
        filled = int(self.sizes.max()) if self.num_tasks else 0
        return {"storage": {name: torch.from_numpy(values[:, :filled].copy())
                            for name, values in self.storage.items()},
                "lengths": torch.from_numpy(self.lengths[:, :filled].copy()),
                "sizes": torch.from_numpy(self.sizes.copy()),
                "positions": torch.from_numpy(self.positions.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        filled = int(state["lengths"].shape[1])
        if filled > self.capacity:
            raise UserError(f"the saved trajectory buffer holds {filled} trajectories per task, "
                            f"more than the capacity {self.capacity}")
        if filled > self.allocated:
            self._grow(filled)
        for name, values in state["storage"].items():
            self.storage[name][:, :filled] = values.cpu().numpy()
        self.lengths[:, :filled] = state["lengths"].cpu().numpy()
        self.sizes = state["sizes"].cpu().numpy().astype(np.int64).copy()
        self.positions = state["positions"].cpu().numpy().astype(np.int64).copy()
