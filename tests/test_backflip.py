"""prefrl/HopperBackflip-v0 and its scripted teacher (Christiano et al. 2017, §3.2)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from prefrl.envs.backflip import (
    BACKFLIP_ID,
    BODIES,
    INSTRUCTIONS,
    BackflipTeacher,
    backflip_progress,
    backward_rotation,
    count_backward_turns,
    floor_contacts,
    judge_backflips,
    lowest_points,
)
from prefrl.labeling_gui.clips import SegmentRenderer
from prefrl.segments import Segment
from prefrl.teachers import Preference, Query


def spin(env: gym.Env, pitch_velocity: float, steps: int) -> tuple[np.ndarray, float]:
    """Launch the hopper upwards, turning at ``pitch_velocity``; returns its states and summed reward."""
    _, info = env.reset(seed=0)
    env.unwrapped.data.qvel[1] = 5.0
    env.unwrapped.data.qvel[2] = pitch_velocity
    states, total = [info["sim_state"]], 0.0
    for _ in range(steps):
        _, reward, terminated, truncated, info = env.step(np.zeros(3))
        assert not terminated
        states.append(info["sim_state"])
        total += float(reward)
    return np.array(states), total


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_env_is_registered_long_and_never_terminates() -> None:
    env = gym.make(BACKFLIP_ID)
    check_env(env, skip_render_check=True)
    assert env.spec is not None and env.spec.max_episode_steps == 500
    assert env.unwrapped.dt == pytest.approx(0.02)  # 10 s episodes
    assert env.unwrapped.instructions == INSTRUCTIONS and "backflip" in INSTRUCTIONS
    env.reset(seed=1)
    steps = 0
    while True:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        assert not terminated and np.isfinite(obs).all()
        if truncated:
            break
    assert steps == 500


def test_reward_is_backward_rotation_and_flips_are_counted() -> None:
    env = gym.make(BACKFLIP_ID)
    states, total = spin(env, -12.0, 100)  # negative pitch velocity: turning over backwards
    assert total == pytest.approx(backward_rotation(states))
    assert count_backward_turns(states) >= 1
    assert judge_backflips(states) == []  # two turns in the air, a touchdown on the foot, then it folds over
    forward, _ = spin(env, 12.0, 100)
    assert count_backward_turns(forward) == 0 and backward_rotation(forward) < 0
    # The observation holds the pitch as (cos, sin), so it stays bounded however many turns are made.
    assert np.abs(env.unwrapped._get_obs()[1:3]).max() <= 1


def test_teacher_prefers_more_backward_rotation() -> None:
    env = gym.make(BACKFLIP_ID)
    back, _ = spin(env, -12.0, 40)
    still, _ = spin(env, 0.0, 40)

    def segment(states: np.ndarray) -> Segment:
        return Segment(np.zeros((40, 12)), np.zeros((40, 3)), np.zeros(40, np.float32), states=states[1:])

    teacher = BackflipTeacher()
    assert teacher.prefer(segment(back), segment(still)) is Preference.LEFT
    assert teacher.prefer(segment(still), segment(back)) is Preference.RIGHT
    assert teacher.prefer(segment(back), segment(back)) is Preference.EQUAL
    teacher.post([Query(7, segment(still), segment(back))])
    (answer,) = teacher.poll()
    assert (answer.query_id, answer.preference, teacher.pending()) == (7, Preference.RIGHT, 0)
    with pytest.raises(ValueError, match="simulator states"):
        teacher.prefer(Segment(np.zeros((2, 1)), np.zeros(2), np.zeros(2)), segment(back))


def test_camera_keeps_the_hopper_in_view() -> None:
    env = gym.make(BACKFLIP_ID)
    states, _ = spin(env, -12.0, 60)
    far = states[-1].copy()
    far[0] += 20.0  # 20 m to the right: a fixed camera would have lost it
    renderer = SegmentRenderer(BACKFLIP_ID, size=(96, 72))
    try:
        frames = renderer.frames(np.stack([states[0], states[30], far]))
    finally:
        renderer.close()
    for frame in frames:
        # The hopper is orange-brown: red well above blue, in the middle third of the frame.
        rgb = frame.astype(int)
        hopper = (rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > 100)
        assert hopper[:, 32:64].sum() > 10


# --- the strict judge, on constructed state sequences ------------------------------------------------


def states_of(z: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Simulator states ``(steps, 12)`` with torso height ``z``, pitch ``pitch`` and straight joints."""
    states = np.zeros((len(z), 12))
    states[:, 1], states[:, 2] = z, pitch
    return states


STAND = 1.22  # torso height at which the straight hopper's foot rests on the floor


def flip(after_z: float, after_pitch: float) -> np.ndarray:
    """Stand, jump, turn 2π backwards in the air, then hold ``(after_z, after_pitch)`` for 20 steps."""
    flight = np.linspace(0, 1, 51)
    z = np.concatenate([np.full(10, STAND), STAND + 5.0 * flight * (1 - flight), np.full(20, after_z)])
    pitch = np.concatenate([np.zeros(10), -2 * np.pi * flight, np.full(20, after_pitch)])
    return states_of(z, pitch)


def test_a_landed_airborne_turn_is_a_backflip() -> None:
    states = flip(STAND, -2 * np.pi)
    flips = judge_backflips(states)
    assert len(flips) == 1 and flips[0].airborne_share >= 0.7
    assert count_backward_turns(states) == 1
    contacts = floor_contacts(states)
    assert contacts[0, BODIES.index("foot")] and not contacts[0, :3].any()  # standing on the foot
    assert not contacts[35].any()  # mid-flight


def rolling(steps: int) -> np.ndarray:
    """Turning over backwards 1.1 times with the lowest body always on the floor."""
    states = states_of(np.zeros(steps), -2.2 * np.pi * np.linspace(0, 1, steps))
    states[:, 1] = -lowest_points(states).min(axis=1)  # lift each pose until it rests on the floor
    return states


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


def test_two_landed_flips_count_twice() -> None:
    first = flip(STAND, -2 * np.pi)
    second = flip(STAND, -2 * np.pi)
    second[:, 2] -= 2 * np.pi  # carries on from where the first left off
    assert len(judge_backflips(np.concatenate([first, second]))) == 2


def test_progress_ranks_clips_as_a_person_would() -> None:
    landed, crashed = flip(STAND, -2 * np.pi), flip(0.04, -2.5 * np.pi)
    rolled = rolling(60)
    standing = states_of(np.full(60, STAND), np.zeros(60))
    scores = [backflip_progress(s) for s in (landed, crashed, rolled, standing)]
    assert scores[0] > scores[1] > scores[2] and scores[0] > 1.4
    assert abs(scores[2]) < 0.2 and abs(scores[3]) < 0.2  # a roll on the ground is no progress


def test_the_scripted_person_is_wrong_about_one_answer_in_ten() -> None:
    from prefrl.labeling_gui.scripted import NoisyChoice

    rng = np.random.default_rng(0)
    person = NoisyChoice(lambda segment: float(segment.true_rewards[0]), rng=rng)
    scores = rng.uniform(0, 1, (4_000, 2))
    wrong = 0
    for a, b in scores:
        left, right = (Segment(np.zeros((1, 1)), np.zeros((1, 1)), np.array([v])) for v in (a, b))
        wrong += person(left, right) != (Preference.LEFT if a > b else Preference.RIGHT)
    assert 0.08 < wrong / len(scores) < 0.14
