"""The strict backflip judge, on state sequences built by hand and on flips simulated in MuJoCo."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from prefrl.envs.backflip import BACKFLIP_ID
from prefrl.envs.backflip_judge import (
    BODIES,
    TOUCHDOWN_SHARE,
    backflip_progress,
    clip_jumps,
    count_backward_turns,
    floor_contacts,
    judge_backflips,
    judge_turns,
    lowest_points,
)

STAND = 1.22  # torso height at which the straight hopper's foot rests on the floor


def states_of(z: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Simulator states ``(steps, 12)`` with torso height ``z``, pitch ``pitch`` and straight joints."""
    states = np.zeros((len(z), 12))
    states[:, 1], states[:, 2] = z, pitch
    return states


def flip(after_z: float, after_pitch: float) -> np.ndarray:
    """Stand, jump, turn 2π backwards in the air, then hold ``(after_z, after_pitch)`` for 20 steps."""
    flight = np.linspace(0, 1, 51)
    z = np.concatenate([np.full(10, STAND), STAND + 5.0 * flight * (1 - flight), np.full(20, after_z)])
    pitch = np.concatenate([np.zeros(10), -2 * np.pi * flight, np.full(20, after_pitch)])
    return states_of(z, pitch)


def rolling(steps: int) -> np.ndarray:
    """Turning over backwards 1.1 times with the lowest body always on the floor."""
    states = states_of(np.zeros(steps), -2.2 * np.pi * np.linspace(0, 1, steps))
    states[:, 1] = -lowest_points(states).min(axis=1)  # lift each pose until it rests on the floor
    return states


def launched(pitch_velocity: float, steps: int = 120, reward: str = "rotation") -> np.ndarray:
    """Simulated states of the hopper thrown upwards at 6 m/s, turning at ``pitch_velocity`` (rad/s), its
    joints held straight by a PD controller through the flight and the landing."""
    return launched_with_rewards(pitch_velocity, steps, reward)[0]


def launched_with_rewards(
    pitch_velocity: float, steps: int = 120, reward: str = "rotation"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`launched`'s states and the env's rewards (with ``reward``) for each step."""
    env = gym.make(BACKFLIP_ID, reward=reward)
    sim = env.unwrapped
    env.reset(seed=0)
    sim.data.qvel[1:3] = 6.0, pitch_velocity
    states, rewards = [sim.state_vector().copy()], []
    for _ in range(steps):
        hold = np.clip(-2.0 * sim.data.qpos[3:] - 0.2 * sim.data.qvel[3:], -1, 1)
        rewards.append(env.step(hold)[1])
        states.append(sim.state_vector().copy())
    env.close()
    return np.array(states), np.array(rewards)


def test_a_landed_airborne_turn_is_a_backflip() -> None:
    states = flip(STAND, -2 * np.pi)
    flips = judge_backflips(states)
    assert len(flips) == 1 and flips[0].airborne_share >= 0.7
    assert count_backward_turns(states) == 1
    contacts = floor_contacts(states)
    assert contacts[0, BODIES.index("foot")] and not contacts[0, :3].any()  # standing on the foot
    assert not contacts[35].any()  # mid-flight


def test_a_turn_rolled_on_the_ground_is_not_a_backflip() -> None:
    states = rolling(60)
    assert count_backward_turns(states) == 1  # the lax count takes it
    assert floor_contacts(states)[:, :3].any()
    assert judge_backflips(states) == []


def test_an_airborne_turn_that_ends_in_a_crash_is_not_a_backflip() -> None:
    lying = flip(0.04, -2.5 * np.pi)  # comes down on its back: the torso hits the floor
    assert count_backward_turns(lying) == 1 and judge_backflips(lying) == []
    crouched = flip(0.5, -2 * np.pi)  # upright but too low: the leg and thigh fold onto the floor
    assert judge_backflips(crouched) == []


def test_each_turn_carries_the_rules_verdicts() -> None:
    (landed,) = judge_turns(flip(STAND, -2 * np.pi))
    assert landed.airborne and landed.landed is not None and not landed.crashed and landed.is_backflip
    (crash,) = judge_turns(flip(0.04, -2.5 * np.pi))
    assert crash.airborne and crash.landed is None and crash.crashed and not crash.is_backflip
    (roll,) = judge_turns(rolling(60))
    assert not roll.airborne and not roll.is_backflip


def test_two_landed_flips_count_twice() -> None:
    first = flip(STAND, -2 * np.pi)
    second = flip(STAND, -2 * np.pi)
    second[:, 2] -= 2 * np.pi  # carries on from where the first left off
    assert len(judge_backflips(np.concatenate([first, second]))) == 2


def test_a_hopper_standing_in_the_simulator_touches_the_floor_with_its_foot_only() -> None:
    env = gym.make(BACKFLIP_ID)
    env.reset(seed=0)
    states = [env.step(np.zeros(3))[4]["sim_state"] for _ in range(30)]
    contacts = floor_contacts(np.array(states[10:]))  # settled: the foot sunk a few mm into the floor
    assert contacts[:, BODIES.index("foot")].all() and not contacts[:, :3].any()


@pytest.mark.parametrize(
    "pitch_velocity, turns, backflips",
    [(-5.0, 1, 1), (-6.0, 1, 0), (-4.0, 0, 0)],
    ids=["landed", "over-turned-and-crashed", "under-turned"],
)
def test_simulated_flips_are_judged(pitch_velocity: float, turns: int, backflips: int) -> None:
    states = launched(pitch_velocity)
    assert count_backward_turns(states) == turns
    assert len(judge_backflips(states)) == backflips
    if backflips:  # it stands on its foot after the landing, upright and high
        assert states[-1, 1] > 1.1 and abs(np.angle(np.exp(1j * states[-1, 2]))) < 0.2
    else:  # it lies on the floor
        assert floor_contacts(states[-1:])[0, :2].any()


def test_progress_ranks_clips_as_a_person_would() -> None:
    landed, crashed = flip(STAND, -2 * np.pi), flip(0.04, -2.5 * np.pi)
    rolled = rolling(60)
    standing = states_of(np.full(60, STAND), np.zeros(60))
    scores = [backflip_progress(s) for s in (landed, crashed, rolled, standing)]
    assert scores[0] > scores[1] > scores[2] and scores[0] > 1.4
    assert abs(scores[2]) < 0.2 and abs(scores[3]) < 0.2  # a roll on the ground is no progress
    simulated = [backflip_progress(launched(w)) for w in (-5.0, -6.0, -4.0, 0.0)]
    # landed flip > full airborne turn, crashed > most of a turn, come down on the foot leaning back and
    # fallen > a jump without turning
    assert simulated[0] > 1.9 and 1.4 > simulated[1] > simulated[2] > 0.8 > simulated[3]


def hop(turn: float, *, lands: bool) -> np.ndarray:
    """Stand leaning forwards, jump and turn ``turn`` radians backwards in the air, then hold for 20 steps
    either the pose it came down in, leaning back by the rest of the turn and resting on its foot
    (``lands``), or lying on the floor."""
    flight = np.linspace(0, 1, 31)
    after = STAND if lands else 0.04
    z = np.concatenate([np.full(10, STAND), STAND + 2.0 * flight * (1 - flight), np.full(20, after)])
    lean = turn / 2
    pitch = np.concatenate([np.full(10, lean), lean - turn * flight, np.full(20, -lean)])
    states = states_of(z, pitch)
    resting = np.r_[0:10, 41:61] if lands else np.r_[0:10]
    states[resting, 1] -= lowest_points(states[resting]).min(axis=1)  # the leaning poses rest on the floor
    return states


def test_progress_credits_a_landing_in_proportion_to_the_turn_before_it() -> None:
    """A person prefers a flight that lands on the foot to the same flight crashing, before flips are whole;
    the credit grows with how far the flight turned. Coming down upright on the foot and then collapsing
    earns the touchdown's share of it (``hop(lands=False)`` touches down on its foot, then drops)."""
    small, larger = 0.5, 1.0  # radians turned in the air, landing within 0.6 rad of upright
    landed = [backflip_progress(hop(turn, lands=True)) for turn in (small, larger)]
    crashed = [backflip_progress(hop(turn, lands=False)) for turn in (small, larger)]
    for turn, up, down in zip((small, larger), landed, crashed):
        # the whole landing credit, less the touchdown's share when it came down on the foot first
        assert (1 - TOUCHDOWN_SHARE) * turn / (2 * np.pi) - 0.01 < up - down < turn / (2 * np.pi) + 0.01
    assert landed[1] - crashed[1] > landed[0] - crashed[0]
    assert judge_backflips(hop(larger, lands=True)) == []  # not a backflip: the strict count is unchanged


def test_progress_grades_a_fall_by_how_the_flight_came_down() -> None:
    """Of two full turns in the air that both end on the floor, a person prefers the one that came down on
    its foot, upright, to the one that came down on its back; a landing beats both."""
    clips = {
        "landed": flip(STAND, -2 * np.pi),
        "foot first, then fell": flip(0.04, -2.5 * np.pi),
        "on its back": flight_from(0.0, 2.5 * np.pi),
    }
    jumps = {name: clip_jumps(states) for name, states in clips.items()}
    assert [len(j) for j in jumps.values()] == [1, 1, 1] and jumps["landed"][0].landed
    assert all(j[0].turn > 0.95 and not j[0].landed for name, j in jumps.items() if name != "landed")
    score = {name: backflip_progress(s) - 0.05 * (s[:, 1].max() - 1.25) for name, s in clips.items()}
    assert score["landed"] == pytest.approx(2 * jumps["landed"][0].turn)
    fell = jumps["foot first, then fell"][0].turn
    assert score["foot first, then fell"] == pytest.approx(
        (1 + TOUCHDOWN_SHARE) * fell
    )  # upright at touchdown
    assert score["on its back"] == pytest.approx(1.0)
    assert judge_backflips(clips["foot first, then fell"]) == []  # the strict count is unchanged


def test_progress_counts_at_most_a_full_turn_per_flight() -> None:
    """Turning further than a full turn in one flight is no closer to a backflip (and harder to land)."""
    flight = np.linspace(0, 1, 51)
    z = np.concatenate([np.full(10, STAND), STAND + 5.0 * flight * (1 - flight)])
    once, twice = (
        states_of(z, np.concatenate([np.zeros(10), -turns * 2 * np.pi * flight])) for turns in (1, 2)
    )
    height = 0.05 * (z.max() - 1.25)
    # one turn, not 2, and half the landing credit for coming down upright on the foot (it ends there)
    assert backflip_progress(twice) == pytest.approx(1.0 + TOUCHDOWN_SHARE + height)
    assert 0.9 + height < backflip_progress(once) <= backflip_progress(twice)  # (its first steps touch)


@pytest.mark.parametrize("pitch_velocity", [-5.0, -6.0, -4.0, 0.0])
def test_the_flips_reward_pays_the_persons_score_step_by_step(pitch_velocity: float) -> None:
    """``reward="flips"``: over an episode the env's rewards add up to the scripted person's score of its
    states (less the score's height term), paid as the flight turns and when its landing settles."""
    states, rewards = launched_with_rewards(pitch_velocity, reward="flips")
    height = 0.05 * (states[:, 1].max() - 1.25)
    assert rewards.sum() == pytest.approx(backflip_progress(states) - height)
    if judge_backflips(states):  # the landed flip: about a full turn in the air, then as much on landing
        (jump,) = clip_jumps(states)
        assert jump.landed and jump.turn > 0.95
        # less the little it straightens up on its foot before the landing settles
        assert 2 * jump.turn - 0.02 < rewards.sum() <= 2 * jump.turn + 1e-9


def test_turning_swung_back_on_the_floor_earns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Half a turn backwards in the air, down on the foot upside down, then the torso swung forwards over the
    foot to upright: a PPO agent on the score learned to do this 22 times an episode when it paid (half a
    turn each, and a landing). A person sees no flip, so the score pays none: the turn swung back is
    charged, and the landing counts only the turn still made when it stands."""
    from prefrl.envs import backflip_judge

    pitch = np.concatenate([np.zeros(5), np.linspace(0, -np.pi, 11)[1:], np.linspace(-np.pi, 0, 11)[1:],
                            np.zeros(20)])  # fmt: skip
    airborne = np.zeros(len(pitch), dtype=bool)
    airborne[5:15] = True
    states = states_of(np.where(airborne, 1.3, 1.25), pitch)  # (the contacts below go by the state)
    foot = np.array([False, False, False, True])  # BODIES: torso, thigh, leg, foot
    contacts = {tuple(state): foot & ~air for state, air in zip(states, airborne)}
    monkeypatch.setattr(
        backflip_judge, "floor_contacts", lambda s, margin=0.0: np.array([contacts[tuple(x)] for x in s])
    )
    (jump,) = clip_jumps(states)
    assert 0.4 < jump.turn <= 0.5 and jump.landed  # (its first airborne step leaves the floor)
    height = 0.05 * (1.3 - 1.25)
    assert backflip_progress(states) == pytest.approx(height)
    kept = states.copy()
    kept[15:, 2] = -np.pi  # the same flight, staying upside down on its foot: the turn stays credited
    contacts.update({tuple(state): foot for state in kept[15:]})
    assert backflip_progress(kept) == pytest.approx(jump.turn + height)


def test_the_backflip_env_names_its_rewards() -> None:
    with pytest.raises(ValueError, match="rotation, flips"):
        gym.make(BACKFLIP_ID, reward="landings")


def flight_from(pitch0: float, turn: float) -> np.ndarray:
    """Rest at pitch ``pitch0`` on whatever body is lowest, fly 0.5 m up turning ``turn`` radians backwards,
    then rest again: from upright a jump off the foot, from upside down a bounce off the head."""
    flight = np.linspace(0, 1, 31)
    pitch = np.concatenate([np.full(5, pitch0), pitch0 - turn * flight, np.full(5, pitch0 - turn)])
    states = states_of(np.zeros(len(pitch)), pitch)
    states[:, 1] = -lowest_points(states).min(axis=1)  # every pose resting on the floor ...
    states[5:36, 1] += 2.0 * flight * (1 - flight) + 0.05 * np.sin(np.pi * flight)  # ... but in flight
    return states


def test_progress_counts_only_flights_that_take_off_from_the_foot() -> None:
    """Bouncing off its head from turn to turn is not jumping (an agent paid for every flight learned it)."""
    jump, bounce = flight_from(0.0, 1.6 * np.pi), flight_from(np.pi, 1.6 * np.pi)
    assert floor_contacts(jump[:5])[:, BODIES.index("foot")].all()
    assert floor_contacts(bounce[:5])[:, BODIES.index("torso")].all()
    height = [0.05 * (s[:, 1].max() - 1.25) for s in (jump, bounce)]
    (jumped,) = clip_jumps(jump)
    assert 0.7 < jumped.turn <= 0.8  # 0.8 turns, less the first and last steps
    assert backflip_progress(jump) - height[0] > jumped.turn
    assert backflip_progress(bounce) - height[1] == pytest.approx(0.0)


def test_clip_jumps_say_how_far_each_jump_turned_and_whether_it_landed() -> None:
    """What a clip showed the person: a landed flip, the same turn crashed, a small landed hop, a roll."""
    (landed,) = clip_jumps(flip(STAND, -2 * np.pi))
    assert landed.landed and landed.turn == pytest.approx(1.0, abs=0.05)  # its first steps touch
    (crashed,) = clip_jumps(flip(0.04, -2.5 * np.pi))
    assert not crashed.landed and crashed.turn == pytest.approx(1.0, abs=0.05)
    (hopped,) = clip_jumps(hop(1.0, lands=True))
    assert hopped.landed and hopped.turn == pytest.approx(1.0 / (2 * np.pi), abs=0.02)
    assert clip_jumps(rolling(60)) == []
    assert clip_jumps(flight_from(np.pi, 1.6 * np.pi)) == []  # a bounce off the head is no jump
