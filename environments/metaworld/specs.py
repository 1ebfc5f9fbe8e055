"""Registry entries of Meta-World ML1 (imported by ``environments.registry``)."""

from environments.registry_types import EnvSpec

METAWORLD_SPECS: list[EnvSpec] = []
