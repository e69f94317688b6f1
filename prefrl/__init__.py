"""prefrl: deep reinforcement learning from human preferences (Christiano et al. 2017) on SB3.

Importing prefrl registers its task variants (``prefrl/Hopper-v0``, ...) with gymnasium.
"""

from prefrl import envs as _envs  # type: ignore[attr-defined]  # noqa: F401  (registers the task ids)

__version__ = "0.1.0"
