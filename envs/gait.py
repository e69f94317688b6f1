"""Judging locomotion from the simulator state: does an agent of ``prefrl/Walker2d-v0`` walk (of
``prefrl/Hopper-v0``, hop)?

The off-policy benchmark scores agents by true return (issue 11), but on prefrl's walker variants a return
near SAC's at 200k steps is earned by standing for a second and then heaving along the floor, which nobody
watching would call walking. :func:`judge_gait` says what such a person sees, from an episode's saved
simulator states ``(steps + 1, nq + nv)`` (qpos then qvel) alone, by the rule stated in :class:`GaitRule`.

"Upright" is the gymnasium v5 env's own healthy condition, the one under which Hopper-v5, Walker2d-v5 and
Ant-v5 would end the episode (torso height, and for the walkers its pitch, within the env's healthy ranges;
prefrl's variants do not end the episode, :mod:`prefrl.envs.mujoco`): each state is set into an instance
of the env and the env is asked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from .mujoco import set_sim_state

X_INDEX = 0  # qpos[0]: the torso's position along the direction the walkers are rewarded for moving


@dataclass(frozen=True)
class GaitRule:
    """What counts as walking, judged from the simulator state alone (the values are ours).

    1. **Upright**: the torso is healthy by the v5 env's own rule at ``min_upright_share`` (90 %) of the
       episode's steps, so a stumble or two is allowed and a fall that lasts is not.
    2. **Forward**: the torso moves forward by at least ``min_speed`` (0.5 m/s, a slow stroll: 4 m in a
       Walker2d episode of 1,000 steps, 8 s) on average over the episode; standing still upright is not
       walking.
    """

    min_upright_share: float = 0.9
    min_speed: float = 0.5


@dataclass(frozen=True)
class Gait:
    """One episode under a :class:`GaitRule`."""

    upright_share: float
    """Share of the episode's steps (the states after each step) at which the torso is healthy."""
    forward_speed: float
    """Mean forward speed of the torso over the episode, in m/s (negative: backwards)."""
    walks: bool
    """Both of the rule's conditions hold."""


@functools.cache
def _env(env_id: str) -> Any:
    env = gym.make(env_id).unwrapped
    if not hasattr(env, "is_healthy"):
        raise ValueError(
            f"{env_id} has no healthy condition to judge a gait by: judge_gait needs Hopper, Walker2d or Ant"
        )
    env.reset(seed=0)
    return env


def judge_gait(env_id: str, states: np.ndarray, rule: GaitRule | None = None) -> Gait:
    """Judges one episode of ``env_id`` (a Hopper, Walker2d or Ant task) by ``rule``.

    Args:
        env_id: The task the states were recorded in, e.g. ``"prefrl/Walker2d-v0"``.
        states: The episode's simulator states ``(steps + 1, nq + nv)``, the reset state first, as
            ``info["sim_state"]`` gives them.
        rule: The thresholds (default: :class:`GaitRule`).
    """
    rule = rule or GaitRule()
    states = np.asarray(states, dtype=np.float64)
    if states.ndim != 2 or len(states) < 2:
        raise ValueError(f"states must be (steps + 1, nq + nv) with at least one step; got {states.shape}")
    env = _env(env_id)
    healthy = []
    for state in states[1:]:
        set_sim_state(env, state)
        healthy.append(bool(env.is_healthy))
    upright_share = float(np.mean(healthy))
    speed = float((states[-1, X_INDEX] - states[0, X_INDEX]) / (env.dt * (len(states) - 1)))
    walks = upright_share >= rule.min_upright_share and speed >= rule.min_speed
    return Gait(upright_share=upright_share, forward_speed=speed, walks=walks)
