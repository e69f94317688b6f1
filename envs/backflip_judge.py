"""Judging backflips from the simulator state of ``prefrl/HopperBackflip-v0`` (Christiano et al. 2017, §3.2).

No paper defines a numeric measure of the backflip (the paper shows a video: the hopper "performs a
backflip, lands upright, and repeats"), so ours is stated here, in :class:`BackflipRule`, and computed from
the saved simulator states ``(steps, nq + nv)`` (qpos then qvel) alone, the way a person watching the clip
would judge it:

* :func:`judge_backflips`: the strict count, landed airborne backflips (the benchmark's
  ``backflips_per_episode``).
* :func:`judge_turns`: every full backward turn with the rule's verdicts (airborne, landed, crashed).
* :func:`count_backward_turns`: the lax count, full backward turns however made, rolling on the ground
  included (``backward_turns_per_episode``).
* :func:`backflip_progress`: how close a clip is to a landed airborne backflip, the score a scripted person
  ranks clips by.

Contacts are not in the state, so they are judged from its geometry: :func:`lowest_points` puts each state's
qpos through MuJoCo's forward kinematics on the Hopper model and takes the lowest point of each body's
capsule; :func:`floor_contacts` calls a body touching when that point is within a margin of the floor.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import gymnasium.envs.mujoco
import mujoco
import numpy as np

PITCH_INDEX = 2  # qpos[2] is the torso's pitch ("rooty"); it grows as the hopper leans forwards
HEIGHT_INDEX = 1  # qpos[1] is the height of the torso's centre ("rootz")
BODIES = ("torso", "thigh", "leg", "foot")
"""The Hopper's bodies, in the column order of :func:`lowest_points` and :func:`floor_contacts`."""


def backward_rotation(states: np.ndarray) -> float:
    """Net backward rotation of the torso over a segment, in radians.

    Args:
        states: simulator states ``(steps, nq + nv)``, as saved in a :class:`~prefrl.segments.Segment`.
    """
    pitch = np.asarray(states)[:, PITCH_INDEX]
    return float(pitch[0] - pitch[-1])


def count_backward_turns(states: np.ndarray) -> int:
    """Full backward turns of the torso, however they happened: ``floor(max_t (θ₀ − θₜ) / 2π)``.

    The lax count: a hopper rolling over on the ground scores as well as one flipping in the air. The
    benchmark reports it as ``backward_turns_per_episode`` beside :func:`judge_backflips`' strict count.

    Args:
        states: an episode's simulator states ``(steps, nq + nv)``, the first being the reset state.
    """
    pitch = np.asarray(states)[:, PITCH_INDEX]
    return int(np.floor(max(0.0, float(np.max(pitch[0] - pitch))) / (2 * np.pi)))


@dataclass(frozen=True)
class BackflipRule:
    """What counts as a backflip, judged from the simulator state alone (the values are ours).

    A backflip is a stretch of steps in which the torso turns backwards by a full 2π, then a landing:

    1. **The turn** runs from the last step whose pitch is 2π above the pitch at the step where the turn
       completes, to that step.
    2. **Airborne**: at no step of the turn does any body but the foot touch the floor, and at
       ``min_airborne_share`` (70 %) of its steps nothing touches at all. A body touches when its lowest
       point (capsule end minus radius, by forward kinematics) is within ``contact_margin`` of the floor.
    3. **Landed on the foot, upright**: within ``landing_window`` steps after the turn the hopper stands
       for ``settle_steps`` steps in a row: the foot touches the floor and no other body does, the torso's
       centre is at least ``min_torso_height`` high and its pitch (mod 2π) within ``max_pitch`` of upright.
    4. **No crash**: from the start of the turn until ``stay_steps`` after the landing has settled,
       neither the torso nor the thigh touches the floor (a hopper that lands and then folds over within
       half a second did not land; at the end of the states the steps left are enough).

    After a landing the next flip is searched from the end of the landing; a turn that fails a rule still
    counts as a backward turn, not as a backflip.
    """

    min_airborne_share: float = 0.7
    contact_margin: float = 0.02
    """Metres: a body within this of the floor touches it (the state is sampled every 0.02 s)."""
    landing_window: int = 25
    """Steps (0.5 s at 50 Hz) after the turn within which the hopper must be standing on its foot."""
    min_torso_height: float = 0.7
    """Metres: Hopper-v5's healthy torso height (standing straight, the torso's centre is at 1.2 m)."""
    max_pitch: float = 0.6
    """Radians from upright (Hopper-v5's healthy range is ±0.2 while hopping; landing from a flip leans)."""
    settle_steps: int = 5
    stay_steps: int = 25
    """Steps (0.5 s at 50 Hz) after the landing in which the torso and thigh must stay off the floor."""


@dataclass(frozen=True)
class Backflip:
    """One backflip found by :func:`judge_backflips`: the steps of its turn, where its landing settled, and
    the share of the turn's steps in which nothing touched the floor."""

    start: int
    end: int
    landed: int
    airborne_share: float


def lowest_points(states: np.ndarray) -> np.ndarray:
    """Height above the floor of each body's lowest point at each step: ``(steps, 4)`` in :data:`BODIES`
    order, by forward kinematics of each state's qpos on the Hopper model (capsule end less radius).

    The leg's ankle end lies inside the foot's capsule (the ankle is on the foot's axis and the foot is the
    thicker), so the leg is measured without its last ``foot radius`` of length: otherwise a foot resting
    on the floor, sunk a few millimetres into it as MuJoCo's soft contacts let it, would make the leg touch.
    """
    model, data = _hopper_model()
    states = np.asarray(states, dtype=np.float64)
    out = np.zeros((len(states), len(BODIES)))
    for t, state in enumerate(states):
        data.qpos[:] = state[: model.nq]
        mujoco.mj_kinematics(model, data)
        out[t] = body_clearance(model, data)
    return out


def body_clearance(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    """:func:`lowest_points` of one pose whose kinematics ``data`` already holds: ``(4,)`` in :data:`BODIES`
    order (e.g. a live simulation's ``data`` after a step)."""
    geoms = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"{body}_geom") for body in BODIES]
    leg, foot = BODIES.index("leg"), BODIES.index("foot")
    ankle = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "foot_joint")
    out = np.zeros(len(BODIES))
    for j, geom in enumerate(geoms):
        radius, half_length = model.geom_size[geom][:2]
        axis = data.geom_xmat[geom].reshape(3, 3)[:, 2] * half_length
        ends = np.stack([data.geom_xpos[geom] + axis, data.geom_xpos[geom] - axis])
        if j == leg:
            near = int(np.argmin(np.linalg.norm(ends - data.xanchor[ankle], axis=1)))
            inside_foot = model.geom_size[geoms[foot]][0] / (2 * half_length)
            ends[near] += (ends[1 - near] - ends[near]) * inside_foot
        out[j] = ends[:, 2].min() - radius
    return out


def floor_contacts(states: np.ndarray, margin: float = BackflipRule.contact_margin) -> np.ndarray:
    """Which bodies touch the floor at each step: bool ``(steps, 4)`` in :data:`BODIES` order (lowest point
    within ``margin`` of the floor, see :func:`lowest_points`)."""
    return np.asarray(lowest_points(states) <= margin)


@dataclass(frozen=True)
class BackwardTurn:
    """One full backward turn found by :func:`judge_turns`, with each of :class:`BackflipRule`'s verdicts.

    Attributes:
        start, end: the turn's first and last steps (rule 1).
        airborne_share: the share of the turn's steps in which nothing touched the floor.
        airborne: rule 2 holds (only the foot ever touched, and nothing at ``min_airborne_share`` of steps).
        landed: the step at which the landing settled (rule 3), or None.
        crashed: the torso or thigh touched the floor during the turn or before ``stay_steps`` after the
            landing (rule 4 broken; without a landing, during the turn or its landing window).
    """

    start: int
    end: int
    airborne_share: float
    airborne: bool
    landed: int | None
    crashed: bool

    @property
    def is_backflip(self) -> bool:
        return self.airborne and self.landed is not None and not self.crashed


def judge_turns(states: np.ndarray, rule: BackflipRule = BackflipRule()) -> list[BackwardTurn]:
    """Every full backward turn in a sequence of simulator states ``(steps, nq + nv)``, judged by ``rule``:
    which were airborne, which landed, which crashed (so a benchmark can say how far from a backflip a
    policy is, not only that it made none)."""
    states = np.asarray(states, dtype=np.float64)
    pitch = states[:, PITCH_INDEX]
    touching = floor_contacts(states, rule.contact_margin)
    not_foot = np.asarray(touching[:, :3].any(axis=1))
    torso_or_thigh = np.asarray(touching[:, :2].any(axis=1))
    standing = _standing(states, touching, rule)
    turns: list[BackwardTurn] = []
    t = 0
    while (end := _turn_end(pitch, t)) is not None:
        start = t + int(np.flatnonzero(pitch[t:end] >= pitch[end] + 2 * np.pi)[-1])
        turn = slice(start, end + 1)
        airborne_share = float(np.mean(~touching[turn].any(axis=1)))
        landed = _settled(standing, end, rule)
        watched = (landed + 1 + rule.stay_steps) if landed is not None else (end + 1 + rule.landing_window)
        judged = BackwardTurn(
            start=start,
            end=end,
            airborne_share=airborne_share,
            airborne=not not_foot[turn].any() and airborne_share >= rule.min_airborne_share,
            landed=landed,
            crashed=bool(torso_or_thigh[start:watched].any()),
        )
        turns.append(judged)
        t = landed if judged.is_backflip and landed is not None else end  # a backward turn, not a backflip
    return turns


def judge_backflips(states: np.ndarray, rule: BackflipRule = BackflipRule()) -> list[Backflip]:
    """The landed airborne backflips in a sequence of simulator states ``(steps, nq + nv)``, by ``rule``."""
    return [
        Backflip(turn.start, turn.end, turn.landed, turn.airborne_share)
        for turn in judge_turns(states, rule)
        if turn.is_backflip and turn.landed is not None
    ]


def backflip_progress(states: np.ndarray, rule: BackflipRule = BackflipRule()) -> float:
    """How close a clip is to a landed airborne backflip, ranked as a person judging clips would: airborne
    backward rotation first, then a landing on the foot, then height.

    ``Σ_jumps min(turns, 1) · (1 + LANDING_CREDIT · landing) + 0.05 · (highest torso height − 1.25 m)``. A
    jump is a flight, a stretch of steps in which nothing touches the floor, that takes off from the foot
    alone (the page's instructions: "it jumps"; bouncing off the head does not count); its turns are the
    backward rotation (in turns of 2π) the torso makes in it, of which a full turn counts, not more (the
    page's instructions: "a full turn best"; turning further in one flight is no closer to a backflip and
    harder to land). Its ``landing`` is 1 when the clip shows the touchdown settling on the foot, upright
    (rule 3 of :class:`BackflipRule`: within ``landing_window`` steps, ``settle_steps`` standing steps in a
    row, torso and thigh off the floor meanwhile, before any next takeoff); otherwise, how it came down:
    ``TOUCHDOWN_SHARE`` times its uprightness at touchdown when the foot alone touched first
    (:func:`touchdown_uprightness`), 0 when the torso, thigh or leg did. Turning forwards outside a jump
    takes back credited turning not yet landed, and a landing counts only the turn still made when the hopper
    stands (a half turn in the air swung back to upright over the foot is no flip, and once paid, a PPO agent
    learned to do nothing else). So a full turn in the air scores 1,
    coming down upright on the foot and then toppling 1.5, landed 2; a quarter turn landed 0.5, a roll on
    the ground about 0, and a metre of height counts as much as 18° of airborne turning. It is the sum of
    :class:`FlightScore`'s step rewards over the clip, plus the height.

    The landing credit is graded by the turn before it, as a person's judgement is, so that a landing pays
    before the flips are whole: counting only whole landed backflips (as the strict judge does) gives a
    learner nothing to climb until it lands a full flip, and a PPO agent taught that way learned to turn
    over in the air and crash. Crashes are graded too, by how the hopper came down, as a person comparing
    two clips that both end in a fall would prefer the one that came down on its foot, upright, to the one
    that came down on its back: without it, an agent that turned in the air and crashed every time was
    never shown anything closer to a landing than its own crashes (no clip of 1,792 landed after half a turn).

    Args:
        states: simulator states ``(steps, nq + nv)`` of the clip.
        rule: the contact margin and what standing after a landing is.
    """
    states = np.asarray(states, dtype=np.float64)
    score, _ = _flights_of(states, rule)
    return score + 0.05 * (float(states[:, HEIGHT_INDEX].max()) - 1.25)


def clip_jumps(states: np.ndarray, rule: BackflipRule = BackflipRule()) -> list[Jump]:
    """The jumps a clip shows (:class:`FlightScore`'s, see :class:`Jump`): how far towards a landed backflip
    the behaviour a person was asked about had come.

    Args:
        states: simulator states ``(steps, nq + nv)`` of the clip.
        rule: the contact margin and what standing after a landing is.
    """
    return _flights_of(np.asarray(states, dtype=np.float64), rule)[1].jumps


def _flights_of(states: np.ndarray, rule: BackflipRule) -> tuple[float, FlightScore]:
    """:class:`FlightScore` run over ``states`` from the first: the sum of its rewards, and the scorer."""
    flights = FlightScore(rule)
    flights.reset(states[0])
    return float(sum(flights.step(state) for state in states[1:])), flights


LANDING_CREDIT = 1.0
"""Weight of a flight's landing on the foot against its airborne turning (:func:`backflip_progress`)."""
TOUCHDOWN_SHARE = 0.5
"""Share of the landing credit paid at touchdown for coming down on the foot alone, upright
(:func:`touchdown_uprightness`); the rest is paid when the landing settles."""


def touchdown_uprightness(
    state: np.ndarray, touching: np.ndarray, rule: BackflipRule = BackflipRule()
) -> float:
    """How well a flight came down, at its first step touching the floor: 0 unless the foot alone touches;
    then the torso's uprightness, ``cos(pitch) / cos(max_pitch)`` clipped to [0, 1] (1 within rule 3's
    ``max_pitch`` of upright, 0 lying level or upside down).

    Args:
        state: the simulator state ``(nq + nv,)`` of the touchdown step.
        touching: which bodies touch the floor then, bool ``(4,)`` in :data:`BODIES` order.
    """
    if not touching[BODIES.index("foot")] or touching[:3].any():
        return 0.0
    return float(np.clip(np.cos(state[PITCH_INDEX]) / np.cos(rule.max_pitch), 0.0, 1.0))


@dataclass
class Jump:
    """One jump seen by :class:`FlightScore`: the backward turn it made in the air (in turns of 2π, capped
    at one full turn) and whether its landing settled on the foot, upright (rule 3). A jump still in the air
    when the states end is not landed."""

    turn: float
    landed: bool = False


class FlightScore:
    """:func:`backflip_progress` paid step by step, as an env reward: what the scripted person prefers, for
    an agent to learn from directly (the ceiling beside the agents taught by preferences).

    Each step pays the airborne backward turning it adds to the current flight, up to a full turn per
    flight, and charges forward turning outside a jump against the turning paid since the last landing;
    the touchdown pays ``TOUCHDOWN_SHARE · LANDING_CREDIT`` times that turn and its
    :func:`touchdown_uprightness`, and a step at which the landing settles the rest of ``LANDING_CREDIT``
    times the turn still made then (from the takeoff's pitch to the settled one). Only jumps count: flights
    that take off from the foot alone (a hopper bouncing off its head from turn to turn is not jumping, and
    an agent paid for every flight learned to do just that). Over an episode the rewards add up to
    :func:`backflip_progress` of its states without the height term (tested).

    Args:
        rule: the contact margin and what standing after a landing is.
    """

    def __init__(self, rule: BackflipRule = BackflipRule()) -> None:
        self.rule = rule
        self._pitch, self._airborne, self._on_foot, self._jumped = 0.0, False, False, False
        self._turned, self._takeoff_pitch, self._credit = 0.0, 0.0, 0.0
        self._landing: tuple[int, float, int, float] | None = None
        """Steps since the touchdown, the flight's turn, the standing run, the credit paid at touchdown."""
        self.jumps: list[Jump] = []
        """The jumps so far (since :meth:`reset`), the one in the air last; what a clip showed a person."""

    def reset(self, state: np.ndarray) -> None:
        """Starts an episode (or a clip) at simulator state ``state`` ``(nq + nv,)``. A clip that opens in
        the air is given the benefit of the doubt: its flight counts as a jump."""
        touching = floor_contacts(state[None], self.rule.contact_margin)[0]
        self._pitch = float(state[PITCH_INDEX])
        self._airborne = not bool(touching.any())
        self._on_foot = bool(touching[BODIES.index("foot")] and not touching[:3].any())
        self._jumped, self._turned, self._landing = self._airborne, 0.0, None
        self._takeoff_pitch, self._credit = self._pitch, 0.0
        self.jumps = [Jump(0.0)] if self._jumped else []

    def step(self, state: np.ndarray) -> float:
        """The reward for reaching simulator state ``state`` ``(nq + nv,)``."""
        touching = floor_contacts(state[None], self.rule.contact_margin)
        airborne = not bool(touching.any())
        pitch, reward = float(state[PITCH_INDEX]), 0.0
        if airborne and not self._airborne:  # takeoff: a jump only from the foot alone
            self._turned, self._jumped, self._takeoff_pitch = 0.0, self._on_foot, self._pitch
            if self._jumped:
                self.jumps.append(Jump(0.0))
        if airborne and self._airborne and self._jumped:
            turned = self._turned + (self._pitch - pitch) / (2 * np.pi)
            paid = min(max(turned, 0.0), 1.0) - min(max(self._turned, 0.0), 1.0)
            reward += paid
            self._credit += paid
            self._turned = turned
            self.jumps[-1].turn = min(max(turned, 0.0), 1.0)
        elif pitch > self._pitch:  # turning forwards outside a jump's flight undoes credited turning
            undone = min(self._credit, (pitch - self._pitch) / (2 * np.pi))
            reward -= undone
            self._credit -= undone
        if not airborne and self._airborne and self._jumped:  # touchdown: the landing is judged next (rule 3)
            turn = min(max(self._turned, 0.0), 1.0)
            paid = (
                TOUCHDOWN_SHARE * LANDING_CREDIT * turn * touchdown_uprightness(state, touching[0], self.rule)
            )
            reward += paid
            self._landing = (0, turn, 0, paid)
        if self._landing is not None:
            reward += self._judge_landing(state, touching)
        self._pitch, self._airborne = pitch, airborne
        self._on_foot = bool(touching[0, BODIES.index("foot")] and not touching[0, :3].any())
        return reward

    def _judge_landing(self, state: np.ndarray, touching: np.ndarray) -> float:
        steps, turn, run, paid = self._landing  # type: ignore[misc]
        rule = self.rule
        if touching[0, :2].any():  # torso or thigh on the floor: crashed
            self._landing = None
            return 0.0
        run = run + 1 if _standing(state[None], touching, rule)[0] else 0
        if run == rule.settle_steps:
            self._landing = None
            if steps - rule.settle_steps + 1 >= rule.landing_window:
                return 0.0
            self.jumps[-1].landed = True
            # Only the turn still made when it stands counts: one swung back on the floor is no flip.
            kept = min(turn, max((self._takeoff_pitch - float(state[PITCH_INDEX])) / (2 * np.pi), 0.0))
            self._credit = 0.0  # the landed turn is banked: standing up straighter later undoes nothing
            return LANDING_CREDIT * kept - paid
        steps += 1
        self._landing = (steps, turn, run, paid) if steps < rule.landing_window + rule.settle_steps else None
        return 0.0


def _standing(states: np.ndarray, touching: np.ndarray, rule: BackflipRule) -> np.ndarray:
    """Bool ``(steps,)``: the hopper stands on its foot alone, upright and high (rule 3's pose)."""
    pitch, height = states[:, PITCH_INDEX], states[:, HEIGHT_INDEX]
    upright = (np.abs(np.angle(np.exp(1j * pitch))) <= rule.max_pitch) & (height >= rule.min_torso_height)
    foot = touching[:, BODIES.index("foot")]
    return np.asarray(foot & ~touching[:, :3].any(axis=1) & upright)


def _turn_end(pitch: np.ndarray, t: int) -> int | None:
    """The first step after ``t`` by which the torso has turned 2π backwards from some step since ``t``."""
    turned = np.maximum.accumulate(pitch[t:]) - pitch[t:]
    done = np.flatnonzero(turned >= 2 * np.pi)
    return t + int(done[0]) if len(done) else None


def _settled(standing: np.ndarray, end: int, rule: BackflipRule) -> int | None:
    """The last of the first ``settle_steps`` standing steps in a row that begin in the landing window."""
    run = 0
    for t in range(end + 1, min(len(standing), end + 1 + rule.landing_window + rule.settle_steps)):
        run = run + 1 if standing[t] else 0
        if run == rule.settle_steps:
            return t if t - rule.settle_steps + 1 <= end + rule.landing_window else None
    return None


@functools.cache
def _hopper_model() -> tuple[mujoco.MjModel, mujoco.MjData]:
    """Gymnasium's Hopper model (the backflip env's, whose changes do not touch its geometry)."""
    xml = Path(gymnasium.envs.mujoco.__file__).parent / "assets" / "hopper.xml"
    model = mujoco.MjModel.from_xml_path(str(xml))
    return model, mujoco.MjData(model)
