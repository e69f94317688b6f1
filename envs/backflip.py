"""The Hopper backflip (Christiano et al. 2017, §3.2): a novel behaviour taught only through preferences.

``prefrl/HopperBackflip-v0`` is gymnasium's Hopper-v5 changed so that a flip can happen and be seen:

* **No termination, no fall penalty.** A backflip passes through every pose Hopper-v5 calls unhealthy.
* **A long horizon at 50 Hz.** Ten physics substeps per action (``dt`` = 0.02 s instead of 0.008 s) and
  500 steps per episode: 10 s of simulated time, room for several flips. Runs labelled by people get
  segments of 1.5 s (75 steps), a clip long enough to show one flip; synthetic teachers keep App. A.1's
  clamp to 60 steps (1.2 s).
* **An observation that survives flips.** The torso's pitch enters as (cos, sin), not as an angle that grows
  by 2π per turn. With ``floor_clearance=True`` it also holds each body's height above the floor (its
  lowest point: what a person watching sees at once, whether the hopper is in the air or which part of it
  is on the floor, and what the policy and the learned reward would otherwise infer from the joint angles).
  With ``observation_lags=[10, 25]`` it also holds copies of itself from that many steps back: a person
  judges a clip, not a frame, and what makes a landing a backflip's (that the hopper was upside down in the
  air a moment before) is not in the present state, so a reward r̂(o, a) of one step cannot pay for it.
* **A tracking camera** that follows the torso from the side, far enough back to keep a jump in view.
* **Instructions** for people labeling (:data:`INSTRUCTIONS`), exposed as ``env.unwrapped.instructions``.

The env's own reward (which an agent taught by preferences never sees) is by default the torso's backward
rotation in the step, in radians, so an episode's true return is its net backward rotation: a progress
curve, but a lax one, since rolling over on the ground earns it as well as flipping. With ``reward="flips"``
it is instead the scripted person's score paid step by step (:class:`~prefrl.envs.backflip_judge.FlightScore`:
airborne backward turning, up to a full turn per flight, and a landing credit, half of it paid for coming
down on the foot, upright), a hand-written backflip reward: ``--teacher true-reward`` on it is the ceiling
for the agents taught by preferences. What a person
wants, a landed airborne backflip, is judged from the simulator state in
:mod:`prefrl.envs.backflip_judge`; the scripted :class:`BackflipTeacher` prefers the clip closer to one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.utils import EzPickle
from numpy.typing import NDArray

from prefrl.segments import Segment
from prefrl.teachers import Answer, Preference, Query

from .backflip_judge import BODIES, PITCH_INDEX, FlightScore, backflip_progress, body_clearance
from .mujoco import SimStateInfo
from .namespace import NAMESPACE

BACKFLIP_ID = f"{NAMESPACE}/HopperBackflip-v0"
HORIZON = 500
FRAME_SKIP = 10  # 10 × 0.002 s: actions at 50 Hz
INSTRUCTIONS = (
    "Prefer the clip that is closer to a backflip. The hopper faces right; a backflip turns it over "
    "backwards in the air: it jumps, its top swings to the left and over (counter-clockwise on screen) and "
    "it lands on its foot, upright. More backward turning in the air is better, a full turn best, a full "
    "turn landed on the foot better still; rolling over on the ground does not count. If neither clip turns "
    "in the air, prefer the one that jumps higher; press ↓ (can't tell) only when you cannot see."
)
REWARDS = ("rotation", "flips")
"""The env's own reward: backward rotation (lax), or the scripted person's score step by step."""
CAMERA = {"trackbodyid": 1, "distance": 3.5, "elevation": -10.0, "azimuth": 90.0}
"""MuJoCo tracking camera on the torso, seen from the side (``azimuth`` 90: the hopper faces right)."""


class HopperBackflipEnv(HopperEnv):
    """Hopper-v5 rewarded for backward rotation, never terminating (see the module docstring).

    Args:
        frame_skip: physics substeps per action.
        reset_noise_scale: as Hopper-v5.
        reward: ``"rotation"``, the backward rotation in radians (a lax progress measure), or ``"flips"``,
            the scripted person's score paid step by step (:class:`~.backflip_judge.FlightScore`).
        floor_clearance: add to the observation the height above the floor of each body's lowest point
            (torso, thigh, leg, foot; :func:`~.backflip_judge.lowest_points`).
        observation_lags: steps back (each ≥ 1) at which a copy of the observation is appended to it, the
            oldest steps of an episode repeating its first observation; empty: none.
        **kwargs: passed to Hopper-v5 (e.g. ``render_mode``, ``width``, ``height``).
    """

    instructions = INSTRUCTIONS

    def __init__(
        self,
        *,
        frame_skip: int = FRAME_SKIP,
        reset_noise_scale: float = 5e-3,
        reward: str = "rotation",
        floor_clearance: bool = False,
        observation_lags: Sequence[int] = (),
        **kwargs: Any,
    ) -> None:
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}; got {reward!r}")
        lags = tuple(observation_lags)
        if not all(isinstance(lag, int) and lag >= 1 for lag in lags):
            raise ValueError(f"observation_lags must be whole steps ≥ 1, e.g. [10, 25]; got {lags!r}")
        super().__init__(
            frame_skip=frame_skip,
            default_camera_config=dict(CAMERA),
            forward_reward_weight=0.0,
            ctrl_cost_weight=0.0,
            healthy_reward=0.0,
            terminate_when_unhealthy=False,
            reset_noise_scale=reset_noise_scale,
            **kwargs,
        )
        EzPickle.__init__(
            self,
            frame_skip=frame_skip,
            reset_noise_scale=reset_noise_scale,
            reward=reward,
            floor_clearance=floor_clearance,
            observation_lags=lags,
            **kwargs,
        )
        self.floor_clearance = floor_clearance
        self.observation_lags = lags
        self._flights = FlightScore() if reward == "flips" else None
        # qpos without x, with the pitch as (cos, sin): 1 + 2 + 3; qvel: 6; the bodies' clearance: 4.
        now_size = self.data.qpos.size + self.data.qvel.size + (len(BODIES) if floor_clearance else 0)
        obs_size = now_size * (1 + len(lags))
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_size,), dtype=np.float64)
        self._depth = max(lags, default=0) + 1
        self._past: deque[NDArray[np.float64]] = deque(maxlen=self._depth)

    def _get_obs(self) -> NDArray[np.float64]:
        """The observation of the state just reached, which it adds to the history the lags read: called
        once per step and once at reset (a reset empties the history)."""
        now = self._observe_now()
        if not self._past:
            self._past.extend([now] * self._depth)
        self._past.append(now)
        return np.concatenate([now, *(self._past[-1 - lag] for lag in self.observation_lags)])

    def observe(self, states: np.ndarray) -> NDArray[np.float64]:
        """The observations ``(steps, obs_dim)`` the env gives along a sequence of simulator states
        ``(steps, nq + nv)``, the first taken as an episode's start (e.g. to score another agent's
        episode with a learned reward). Leaves the simulator at the last state."""
        nq = self.model.nq
        self._past.clear()
        out = []
        for state in np.asarray(states, dtype=np.float64):
            self.set_state(state[:nq], state[nq:])
            out.append(self._get_obs())
        return np.array(out)

    def _observe_now(self) -> NDArray[np.float64]:
        qpos = self.data.qpos
        pitch = qpos[PITCH_INDEX]
        velocity = np.clip(self.data.qvel, -10, 10)
        parts = [[qpos[1], np.cos(pitch), np.sin(pitch)], qpos[3:], velocity]
        if self.floor_clearance:
            mujoco.mj_kinematics(self.model, self.data)  # the poses of the qpos just reached
            parts.append(body_clearance(self.model, self.data))
        return np.concatenate(parts).astype(np.float64)

    def step(
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float64], np.float64, bool, bool, dict[str, np.float64]]:
        """One action; the reward is the torso's backward rotation in this step (radians), or with
        ``reward="flips"`` what the step adds to the scripted person's score."""
        pitch_before = self.data.qpos[PITCH_INDEX]
        self.do_simulation(action, self.frame_skip)
        backward = np.float64(pitch_before - self.data.qpos[PITCH_INDEX])
        reward = backward if self._flights is None else np.float64(self._flights.step(self.state_vector()))
        info = {
            "backward_rotation": backward,
            "rotations": np.float64(
                (self.init_qpos[PITCH_INDEX] - self.data.qpos[PITCH_INDEX]) / (2 * np.pi)
            ),
            "x_position": np.float64(self.data.qpos[0]),
        }
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), reward, False, False, info

    def reset_model(self) -> NDArray[np.float64]:
        self._past.clear()
        obs = super().reset_model()
        if self._flights is not None:
            self._flights.reset(self.state_vector())
        return obs


def make_backflip(**kwargs: Any) -> gym.Env[Any, Any]:
    """The registered entry point: :class:`HopperBackflipEnv` reporting ``info["sim_state"]``."""
    return SimStateInfo(HopperBackflipEnv(**kwargs))


class BackflipTeacher:
    """A scripted stand-in for a person teaching the backflip (Christiano et al. 2017, §3.2).

    Prefers the segment closer to a landed airborne backflip (by
    :func:`~prefrl.envs.backflip_judge.backflip_progress` of the saved states: airborne backward rotation,
    then a landing, then height), without noise; answers "equal" when the two scores differ by less than
    ``tolerance``. Implements the :class:`Teacher` protocol in-process; the benchmark's scripted person adds
    a person's noise and pace and answers through the labeling GUI
    (:class:`prefrl.labeling_gui.scripted.NoisyChoice`).

    Args:
        tolerance: progress difference (in turns of 2π) below which the two segments are equally good.
    """

    stores_answers = False

    def __init__(self, *, tolerance: float = 0.005) -> None:
        self.tolerance = tolerance
        self._answers: list[Answer] = []

    def prefer(self, left: Segment, right: Segment) -> Preference:
        if left.states is None or right.states is None:
            raise ValueError("the backflip teacher needs segments with simulator states (qpos, qvel)")
        diff = backflip_progress(left.states) - backflip_progress(right.states)
        if abs(diff) < self.tolerance:
            return Preference.EQUAL
        return Preference.LEFT if diff > 0 else Preference.RIGHT

    def post(self, queries: Sequence[Query]) -> None:
        for q in queries:
            self._answers.append(Answer(q.query_id, self.prefer(q.left, q.right), labeler="backflip-script"))

    def poll(self) -> list[Answer]:
        answers, self._answers = self._answers, []
        return answers

    def pending(self) -> int:
        return 0


def register_backflip() -> None:
    """Registers ``prefrl/HopperBackflip-v0``; calling it again does nothing."""
    if BACKFLIP_ID not in gym.registry:
        gym.register(id=BACKFLIP_ID, entry_point=f"{__name__}:make_backflip", max_episode_steps=HORIZON)


register_backflip()
