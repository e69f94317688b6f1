"""prefrl/HopperBackflip-v0 and its scripted teacher (Christiano et al. 2017, §3.2); the judge is tested in
``test_backflip_judge.py``."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from prefrl.envs.backflip import BACKFLIP_ID, INSTRUCTIONS, BackflipTeacher
from prefrl.envs.backflip_judge import (
    backward_rotation,
    count_backward_turns,
    judge_backflips,
    lowest_points,
)
from prefrl.labeling_gui.clips import SegmentRenderer
from prefrl.segments import Segment
from prefrl.teachers import Preference, Query
from tests.test_backflip_judge import launched


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


def test_teacher_prefers_the_clip_closer_to_a_landed_airborne_backflip() -> None:
    env = gym.make(BACKFLIP_ID)
    back, _ = spin(env, -12.0, 40)
    still, _ = spin(env, 0.0, 40)

    def segment(states: np.ndarray) -> Segment:
        n = len(states)
        return Segment(np.zeros((n, 12)), np.zeros((n, 3)), np.zeros(n, np.float32), states=states)

    teacher = BackflipTeacher()
    assert teacher.prefer(segment(back), segment(still)) is Preference.LEFT
    landed, crashed = launched(-5.0, 100), launched(-6.0, 100)
    assert teacher.prefer(segment(crashed), segment(landed)) is Preference.RIGHT
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


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_floor_clearance_adds_each_bodys_height_above_the_floor_to_the_observation() -> None:
    env = gym.make(BACKFLIP_ID, floor_clearance=True)
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (16,)
    env.reset(seed=3)
    for _ in range(40):
        obs, *_ = env.step(env.action_space.sample())
        clearance = lowest_points(env.unwrapped.state_vector()[None])[0]
        assert obs[-4:] == pytest.approx(clearance)  # the pose just reached, not the one before the step
    plain, _ = gym.make(BACKFLIP_ID).reset(seed=3)
    assert plain.shape == (12,)  # off by default: runs taught before it keep their observation


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_observation_lags_append_the_observation_of_that_many_steps_back() -> None:
    env = gym.make(BACKFLIP_ID, floor_clearance=True, observation_lags=[3, 10])
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (48,)
    for episode in range(2):  # a reset starts the history anew
        first, _ = env.reset(seed=episode)
        assert first[16:32] == pytest.approx(first[:16]) and first[32:] == pytest.approx(first[:16])
        seen, states = [first[:16]], [env.unwrapped.state_vector()]
        for t in range(1, 30):
            obs, *_ = env.step(env.action_space.sample())
            seen.append(obs[:16])
            states.append(env.unwrapped.state_vector())
            assert obs[16:32] == pytest.approx(seen[max(t - 3, 0)])
            assert obs[32:] == pytest.approx(seen[max(t - 10, 0)])
    # The same observations from the states alone, as another agent's episode is scored.
    replayed = env.unwrapped.observe(np.array(states))
    assert replayed[:, :16] == pytest.approx(np.array(seen))
    assert replayed[-1, 32:] == pytest.approx(seen[-11])
    with pytest.raises(ValueError, match="observation_lags must be whole steps"):
        gym.make(BACKFLIP_ID, observation_lags=[0])
