"""Registry entries of the MuJoCo task families (imported by ``environments.registry``).

Only :class:`EnvSpec` values live here, so importing this module does not import MuJoCo.
"""

from environments.registry_types import EnvSpec

MUJOCO_SPECS: list[EnvSpec] = []
