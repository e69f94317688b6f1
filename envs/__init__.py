"""Task variants of Christiano et al. 2017, App. A, registered as gymnasium ids in the ``prefrl`` namespace.

Importing this package registers them (idempotently):

* MuJoCo (App. A.1), in :mod:`prefrl.envs.mujoco`: fixed-horizon episodes, termination replaced by a
  reward term (walkers: torso height; pendulums: a fall penalty and a fresh pose), no control costs; ids in
  :data:`MUJOCO_TASKS`.
* Atari (App. A.2), in :mod:`prefrl.envs.atari`: standard preprocessing, score blacked out, no life-loss or
  episode-end signal; ids in :data:`ATARI_TASKS`.
"""

from .atari import ATARI_TASKS, register_atari_tasks
from .mujoco import MUJOCO_TASKS, SimStateInfo, get_sim_state, register_mujoco_tasks, set_sim_state

register_mujoco_tasks()
register_atari_tasks()
from . import backflip  # noqa: E402, F401  (registers prefrl/HopperBackflip-v0)

__all__ = ["ATARI_TASKS", "MUJOCO_TASKS", "SimStateInfo", "get_sim_state", "set_sim_state"]
