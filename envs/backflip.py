"""The Hopper backflip (Christiano et al. 2017, §3.2): a novel behaviour taught only through preferences.

``prefrl/HopperBackflip-v0`` is gymnasium's Hopper-v5 changed so that a flip can happen and be seen:

* **No termination, no fall penalty.** A backflip passes through every pose Hopper-v5 calls unhealthy.
* **A long horizon at 50 Hz.** Ten physics substeps per action (``dt`` = 0.02 s instead of 0.008 s) and
  500 steps per episode: 10 s of simulated time, room for several flips. Runs labelled by people get
  segments of 1.5 s (75 steps), a clip long enough to show one flip; synthetic teachers keep App. A.1's
  clamp to 60 steps (1.2 s).
* **An observation that survives flips.** The torso's pitch enters as (cos, sin), not as an angle that grows
  by 2π per turn.
* **A tracking camera** that follows the torso from the side, far enough back to keep a jump in view.
* **Instructions** for people labeling (:data:`INSTRUCTIONS`), exposed as ``env.unwrapped.instructions``.

The env's own reward is the torso's backward rotation in the step, in radians, so an episode's true return
is its net backward rotation and the BPref oracle on it is (almost) the scripted :class:`BackflipTeacher`.
That teacher stands in for a person: it prefers the segment whose torso turned further backwards, computed
from the saved simulator states, as a person watching the clips would judge "closer to a backflip".
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.utils import EzPickle
from numpy.typing import NDArray

from prefrl.segments import Segment
from prefrl.teachers import Answer, Preference, Query

from .mujoco import SimStateInfo
from .namespace import NAMESPACE

BACKFLIP_ID = f"{NAMESPACE}/HopperBackflip-v0"
HORIZON = 500
FRAME_SKIP = 10  # 10 × 0.002 s: actions at 50 Hz
PITCH_INDEX = 2  # qpos[2] is the torso's pitch ("rooty"); it grows as the hopper leans forwards
INSTRUCTIONS = (
    "Prefer the clip that is closer to a backflip. The hopper faces right; a backflip turns it over "
    "backwards: it jumps, its top swings to the left and over (counter-clockwise on screen) and it comes "
    "round again. More backward turning is better, a full turn best. If neither clip turns backwards, "
    "prefer the one that leans further back or jumps higher; press ↓ (can't tell) only when you cannot see."
)
CAMERA = {"trackbodyid": 1, "distance": 3.5, "elevation": -10.0, "azimuth": 90.0}
"""MuJoCo tracking camera on the torso, seen from the side (``azimuth`` 90: the hopper faces right)."""


class HopperBackflipEnv(HopperEnv):
    """Hopper-v5 rewarded for backward rotation, never terminating (see the module docstring).

    Args:
        frame_skip: physics substeps per action.
        reset_noise_scale: as Hopper-v5.
        **kwargs: passed to Hopper-v5 (e.g. ``render_mode``, ``width``, ``height``).
    """

    instructions = INSTRUCTIONS

    def __init__(
        self, *, frame_skip: int = FRAME_SKIP, reset_noise_scale: float = 5e-3, **kwargs: Any
    ) -> None:
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
        EzPickle.__init__(self, frame_skip=frame_skip, reset_noise_scale=reset_noise_scale, **kwargs)
        # qpos without x, with the pitch as (cos, sin): 1 + 2 + 3; qvel: 6.
        obs_size = self.data.qpos.size + self.data.qvel.size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_size,), dtype=np.float64)

    def _get_obs(self) -> NDArray[np.float64]:
        qpos = self.data.qpos
        pitch = qpos[PITCH_INDEX]
        velocity = np.clip(self.data.qvel, -10, 10)
        return np.concatenate([[qpos[1], np.cos(pitch), np.sin(pitch)], qpos[3:], velocity]).astype(
            np.float64
        )

    def step(
        self, action: NDArray[np.float32]
    ) -> tuple[NDArray[np.float64], np.float64, bool, bool, dict[str, np.float64]]:
        """One action; the reward is the torso's backward rotation in this step (radians)."""
        pitch_before = self.data.qpos[PITCH_INDEX]
        self.do_simulation(action, self.frame_skip)
        backward = np.float64(pitch_before - self.data.qpos[PITCH_INDEX])
        info = {
            "backward_rotation": backward,
            "rotations": np.float64(
                (self.init_qpos[PITCH_INDEX] - self.data.qpos[PITCH_INDEX]) / (2 * np.pi)
            ),
            "x_position": np.float64(self.data.qpos[0]),
        }
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), backward, False, False, info


def make_backflip(**kwargs: Any) -> gym.Env[Any, Any]:
    """The registered entry point: :class:`HopperBackflipEnv` reporting ``info["sim_state"]``."""
    return SimStateInfo(HopperBackflipEnv(**kwargs))


# --- measuring flips from the state ------------------------------------------------------------------------


def backward_rotation(states: np.ndarray) -> float:
    """Net backward rotation of the torso over a segment, in radians.

    Args:
        states: simulator states ``(length, nq + nv)`` (qpos then qvel), as saved in a :class:`Segment`.
    """
    pitch = np.asarray(states)[:, PITCH_INDEX]
    return float(pitch[0] - pitch[-1])


def count_backward_turns(states: np.ndarray) -> int:
    """Full backward turns of the torso in an episode, however they happened: ``floor(max_t (θ₀ - θₜ) / 2π)``.

    A lax count: a hopper rolling over on the ground scores as well as one flipping in the air. The
    benchmark reports it as ``backward_turns_per_episode`` beside :func:`judge_backflips`' strict count.

    Args:
        states: the episode's simulator states ``(steps, nq + nv)``, the first being the reset state.
    """
    pitch = np.asarray(states)[:, PITCH_INDEX]
    return int(np.floor(max(0.0, float(np.max(pitch[0] - pitch))) / (2 * np.pi)))


@dataclass(frozen=True)
class BackflipRule:
    """What counts as a backflip, judged from the simulator state alone (the values are ours: no paper
    defines a numeric measure).

    A backflip is a stretch of steps in which the torso turns backwards by a full 2π, then a landing:

    1. **The turn** runs from the last step whose pitch is 2π above the pitch at the step where the turn
       completes, to that step.
    2. **Airborne**: at no step of the turn does any body but the foot touch the floor, and at
       ``min_airborne_share`` (70 %) of its steps nothing touches at all. A body touches when its lowest
       point (capsule end minus radius, by forward kinematics) is within ``contact_margin`` of the floor.
    3. **Landed on the foot, upright**: within ``landing_window`` steps after the turn the foot touches
       the floor with the torso's centre at least ``min_torso_height`` high and its pitch (mod 2π) within
       ``max_pitch`` of upright, and that holds for ``settle_steps`` steps in a row.
    4. **No crash**: from the start of the turn until ``stay_steps`` after the landing has settled,
       neither the torso nor the thigh touches the floor (a hopper that lands and then folds over within
       half a second did not land; at an episode's end the steps left are enough).

    After a landing the next flip is searched from the end of the landing; a turn that fails a rule still
    counts as a backward turn, not as a backflip.
    """

    min_airborne_share: float = 0.7
    contact_margin: float = 0.02
    """Metres: a body within this of the floor touches it (the state is sampled every 0.02 s)."""
    landing_window: int = 25
    """Steps (0.5 s at 50 Hz) after the turn within which the hopper must be standing on its foot."""
    min_torso_height: float = 0.7
    """Metres: Hopper-v5's healthy torso height."""
    max_pitch: float = 0.6
    """Radians from upright (Hopper-v5's healthy range is ±0.2 while hopping; landing from a flip leans)."""
    settle_steps: int = 5
    stay_steps: int = 25
    """Steps (0.5 s at 50 Hz) after the landing in which the torso and thigh must stay off the floor."""


@dataclass(frozen=True)
class Backflip:
    """One backflip found by :func:`judge_backflips`: steps of its turn and of its settled landing."""

    start: int
    end: int
    landed: int
    airborne_share: float


BODIES = ("torso", "thigh", "leg", "foot")


def lowest_points(states: np.ndarray) -> np.ndarray:
    """Height above the floor of each body's lowest point at each step: ``(steps, 4)`` in :data:`BODIES`
    order, by forward kinematics of each state's qpos on the Hopper model (capsule end less radius)."""
    model, data = _hopper_model()
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"{body}_geom") for body in BODIES]
    states = np.asarray(states, dtype=np.float64)
    out = np.zeros((len(states), len(BODIES)))
    for t, state in enumerate(states):
        data.qpos[:] = state[: model.nq]
        mujoco.mj_kinematics(model, data)
        for j, gid in enumerate(ids):
            radius, half_length = model.geom_size[gid][:2]
            axis_z = data.geom_xmat[gid].reshape(3, 3)[2, 2]  # z of the capsule's axis
            out[t, j] = data.geom_xpos[gid][2] - abs(axis_z) * half_length - radius
    return out


def floor_contacts(states: np.ndarray, margin: float = BackflipRule.contact_margin) -> np.ndarray:
    """Which bodies touch the floor at each step: bool ``(steps, 4)`` in :data:`BODIES` order (lowest point
    within ``margin`` of the floor)."""
    return np.asarray(lowest_points(states) <= margin)


def judge_backflips(states: np.ndarray, rule: BackflipRule = BackflipRule()) -> list[Backflip]:
    """The landed airborne backflips in a sequence of simulator states ``(steps, nq + nv)``, by ``rule``."""
    states = np.asarray(states, dtype=np.float64)
    pitch, height = states[:, PITCH_INDEX], states[:, 1]
    touching = floor_contacts(states, rule.contact_margin)
    foot: np.ndarray = touching[:, 3]
    not_foot = np.asarray(touching[:, :3].any(axis=1), dtype=bool)
    torso_or_thigh = np.asarray(touching[:, :2].any(axis=1), dtype=bool)
    upright = (np.abs(np.angle(np.exp(1j * pitch))) <= rule.max_pitch) & (height >= rule.min_torso_height)
    standing = foot & upright & ~not_foot
    flips: list[Backflip] = []
    t = 0
    while t < len(states):
        end = _turn_end(pitch, t)
        if end is None:
            break
        start = int(np.flatnonzero(pitch[t:end] >= pitch[end] + 2 * np.pi)[-1]) + t
        turn = slice(start, end + 1)
        airborne_share = float(np.mean(~touching[turn].any(axis=1)))
        landed = _settled(standing, end, rule)
        crashed = landed is None or bool(torso_or_thigh[start : landed + 1 + rule.stay_steps].any())
        if not_foot[turn].any() or airborne_share < rule.min_airborne_share or crashed:
            t = end  # a backward turn, not a backflip
            continue
        assert landed is not None
        flips.append(Backflip(start, end, landed, airborne_share))
        t = landed
    return flips


def backflip_progress(states: np.ndarray, rule: BackflipRule = BackflipRule()) -> float:
    """How close a clip is to a landed airborne backflip, as a person judging it would rank clips: airborne
    backward rotation first, then a landing, then height.

    ``airborne turns + 0.5 · landed backflips + 0.05 · (highest torso height − 1.25 m)``, where airborne
    turns are the backward rotation (in turns of 2π) made in steps when nothing touches the floor: a full
    flip in the air scores 1, landing it 1.5, a roll on the ground about 0.

    Args:
        states: simulator states ``(steps, nq + nv)`` of the clip.
    """
    states = np.asarray(states, dtype=np.float64)
    pitch = states[:, PITCH_INDEX]
    airborne = np.asarray(~floor_contacts(states, rule.contact_margin).any(axis=1), dtype=bool)
    backward = pitch[:-1] - pitch[1:]
    in_air = airborne[:-1] & airborne[1:]
    airborne_turns = max(0.0, float(backward[in_air].sum())) / (2 * np.pi)
    landed = len(judge_backflips(states, rule))
    return airborne_turns + 0.5 * landed + 0.05 * (float(states[:, 1].max()) - 1.25)


def _turn_end(pitch: np.ndarray, t: int) -> int | None:
    """The first step after ``t`` by which the torso has turned 2π backwards from some step since ``t``."""
    turned = np.maximum.accumulate(pitch[t:]) - pitch[t:]
    done = np.flatnonzero(turned >= 2 * np.pi)
    return int(done[0]) + t if len(done) else None


def _settled(standing: np.ndarray, end: int, rule: BackflipRule) -> int | None:
    """The end of the first ``settle_steps`` standing steps in a row that begin in the landing window."""
    run = 0
    for t in range(end + 1, min(len(standing), end + 1 + rule.landing_window + rule.settle_steps)):
        run = run + 1 if standing[t] else 0
        if run == rule.settle_steps:
            return t if t - rule.settle_steps + 1 <= end + rule.landing_window else None
    return None


@functools.cache
def _hopper_model() -> tuple[Any, Any]:
    env = HopperBackflipEnv()
    model = env.model
    return model, mujoco.MjData(model)


class BackflipTeacher:
    """A scripted stand-in for a person teaching the backflip (Christiano et al. 2017, §3.2).

    Prefers the segment whose torso turned further backwards (from the saved states, not the reward); answers
    "equal" when the two differ by less than ``tolerance`` radians. Implements the :class:`Teacher` protocol,
    and :meth:`prefer` serves a scripted labeler that answers through the labeling GUI's HTTP API.

    Args:
        tolerance: rotation difference (radians) below which the two segments count as equally good.
    """

    stores_answers = False

    def __init__(self, *, tolerance: float = 0.02) -> None:
        self.tolerance = tolerance
        self._answers: list[Answer] = []

    def prefer(self, left: Segment, right: Segment) -> Preference:
        if left.states is None or right.states is None:
            raise ValueError("the backflip teacher needs segments with simulator states (qpos, qvel)")
        diff = backward_rotation(left.states) - backward_rotation(right.states)
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
