"""Registry entries of Meta-World ML1 (imported by ``environments.registry``).

Only :class:`EnvSpec` values live here, so importing this module does not import Meta-World. The
ML1 environment is an option: ``--env-type metaworld`` with ``env_name=handle-pull-v3`` (the
papers' ``-v2`` names are accepted as aliases).
"""

from environments.registry_types import EnvSpec

METAWORLD_SPECS: list[EnvSpec] = [
    EnvSpec(
        "metaworld",
        "environments.metaworld.ml1:MetaWorldML1",
        {
            "env_name": "reach-v3",
            "goal_set": "train",
            "benchmark_seed": 1337,
            "max_episode_steps": 500,
        },
        episodes_per_task=1,
        paper="borel",
        description="Meta-World ML1 (option env_name, e.g. handle-pull-v3): a task is one of "
        "ML1's 50 goal variations, 500-step episodes",
    ),
]
