"""The :class:`EnvSpec` record of the registry (kept apart so spec lists import nothing heavy)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from environments.base import BatchedTaskEnv


@dataclass(frozen=True)
class EnvSpec:
    """How to build one env-type.

    Attributes:
        name: the ``--env-type`` name.
        entry_point: ``"module:Class"`` of the :class:`BatchedTaskEnv` subclass.
        options: keyword arguments of the class for this name (the paper's values).
        episodes_per_task: inner episodes per BAMDP meta-episode (k); 1 means a plain MDP.
        paper: ``"borel"`` or ``"focal"``, the paper whose conventions this name follows.
        description: one line for ``--help`` and the README's table.
    """

    name: str
    entry_point: str
    options: dict[str, Any] = field(default_factory=dict)
    episodes_per_task: int = 2
    paper: str = "borel"
    description: str = ""

    def family_class(self) -> type[BatchedTaskEnv]:
        module_name, class_name = self.entry_point.split(":")
        return getattr(importlib.import_module(module_name), class_name)
