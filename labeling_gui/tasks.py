"""What people labeling a run are told: the task's instructions (Christiano et al. 2017, App. B).

The text comes from, in order: the run's ``--instructions`` (store meta ``instructions``), the env's own
``instructions`` attribute (e.g. ``prefrl/HopperBackflip-v0``), a text for the paper's MuJoCo tasks, or a
generic one.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefrl.label_store import LabelStore

# App. B gives the Hopper's ("move to the right; tiebreak on height"); the others follow the same pattern.
TASK_INSTRUCTIONS: dict[str, str] = {
    "Hopper": "Prefer the clip in which the hopper moves further to the right. If both move about as "
    "far, prefer the one that stays taller (upright, not fallen).",
    "Walker2d": "Prefer the clip in which the walker moves further to the right without falling. If both "
    "move about as far, prefer the one that stays upright.",
    "HalfCheetah": "Prefer the clip in which the cheetah runs further to the right.",
    "Swimmer": "Prefer the clip in which the swimmer moves further to the right.",
    "Ant": "Prefer the clip in which the ant moves further to the right without flipping over.",
    "Reacher": "Prefer the clip in which the arm's tip gets closer to the target (the red dot) "
    "and stays there.",
    "InvertedPendulum": "Prefer the clip in which the pole falls less often (it jumps back upright after "
    "each fall) and stays closer to vertical.",
    "InvertedDoublePendulum": "Prefer the clip in which the two-part pole falls less often (it jumps back "
    "upright after each fall), its tip higher.",
}
GENERIC = "Prefer the clip in which the agent does the task better. Press ↓ when you cannot tell."


def env_id_of(store: LabelStore, run_dir: Path | None = None) -> str | None:
    """The env the run's segments come from: store meta ``env_id``, else the run's ``config.json``."""
    env_id = store.get_meta("env_id")
    if env_id is None and run_dir is not None and (run_dir / "config.json").exists():
        env_id = json.loads((run_dir / "config.json").read_text()).get("env")
    return env_id


def instructions_for(store: LabelStore, run_dir: Path | None = None) -> str:
    """The instructions shown above the clips (see the module docstring for where they come from)."""
    text = store.get_meta("instructions")
    if text:
        return text
    env_id = env_id_of(store, run_dir)
    if not env_id:
        return GENERIC
    try:
        import gymnasium as gym

        import prefrl.envs  # noqa: F401  (registers the prefrl/... ids)

        env = gym.make(env_id)
        own = getattr(env.unwrapped, "instructions", None)
        env.close()
        if own:
            return str(own)
    except Exception:  # noqa: BLE001  (an env that cannot be built here still gets a text)
        pass
    name = env_id.split("/")[-1].split("-")[0]
    return TASK_INSTRUCTIONS.get(name, GENERIC)
