"""Replay storage for K tasks on the training device, sampled without host round trips.

:class:`EnsembleReplayBuffer` keeps, for each of K members, the valid transitions collected in
its task (padding is dropped on insertion) as tensors (K, capacity, dim) on the device. ``sample``
draws, for every member, ``batch_size`` indices uniformly among that member's own transitions.
"""

from __future__ import annotations

import numpy as np
import torch

from utils.errors import UserError

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminations")


class EnsembleReplayBuffer:
    """FIFO storage of (K, capacity, dim) transitions; member k holds task k's data."""

    def __init__(self, num_members: int, capacity: int, dims: dict[str, int],
                 device: torch.device | str = "cpu") -> None:
        self.num_members, self.capacity = num_members, capacity
        self.device = torch.device(device)
        self.storage = {
            name: torch.zeros(num_members, capacity, dims[name], device=self.device)
            for name in FIELDS
        }
        self.sizes = torch.zeros(num_members, dtype=torch.long, device=self.device)
        self.positions = np.zeros(num_members, dtype=np.int64)

    def add_trajectories(self, arrays: dict[str, np.ndarray], lengths: np.ndarray,
                         member_of_trajectory: np.ndarray) -> None:
        """Insert the valid steps of trajectories (N, T, dim); trajectory i goes to member
        ``member_of_trajectory[i]``. The oldest transitions are overwritten when full."""
        mask = np.arange(arrays["observations"].shape[1])[None, :] < lengths[:, None]
        for member in np.unique(member_of_trajectory):
            rows = member_of_trajectory == member
            flat = {name: arrays[name][rows][mask[rows]] for name in FIELDS}
            self._insert(int(member), flat)

    def _insert(self, member: int, flat: dict[str, np.ndarray]) -> None:
        count = len(flat["observations"])
        if count > self.capacity:
            flat = {name: values[-self.capacity:] for name, values in flat.items()}
            count = self.capacity
        start = int(self.positions[member])
        indices = torch.from_numpy((start + np.arange(count)) % self.capacity).to(self.device)
        for name in FIELDS:
            values = torch.as_tensor(flat[name], dtype=torch.float32, device=self.device)
            self.storage[name][member, indices] = values
        self.positions[member] = (start + count) % self.capacity
        self.sizes[member] = min(self.capacity, int(self.sizes[member]) + count)

    def sample(self, batch_size: int, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """A batch (K, batch_size, dim) per field, uniform over each member's transitions."""
        if int(self.sizes.min()) == 0:
            raise UserError("cannot sample from an empty replay buffer")
        uniform = torch.rand(self.num_members, batch_size, generator=generator,
                             device=self.device)
        indices = (uniform * self.sizes[:, None]).long()
        members = torch.arange(self.num_members, device=self.device)[:, None]
        return {name: values[members, indices] for name, values in self.storage.items()}

    def sample_tasks(self, members: torch.Tensor, batch_size: int,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """One batch (1, M * batch_size, dim) of ``batch_size`` transitions from each of the
        members ``members`` (M,) (repeats allowed): a meta-batch of tasks for one agent."""
        sizes = self.sizes[members]
        if int(sizes.min()) == 0:
            raise UserError("cannot sample from a task without transitions")
        uniform = torch.rand(len(members), batch_size, generator=generator, device=self.device)
        indices = (uniform * sizes[:, None]).long()
        return {name: values[members[:, None], indices].reshape(1, -1, values.shape[-1])
                for name, values in self.storage.items()}
