"""Tests for prefrl.envs.atari: the Atari task variants of Christiano et al. 2017, App. A.2."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import prefrl.envs  # noqa: F401  (registers the ids)
from prefrl.environment import env_family
from prefrl.envs.atari import ATARI_TASKS, GAMES, RAW_SHAPE, observation_mask


def test_every_game_of_the_paper_is_registered():
    names = {"Pong", "Enduro", "BeamRider", "Breakout", "Qbert", "Seaquest", "SpaceInvaders"}
    assert {f"prefrl/{n}NoScore-v0" for n in names} == set(ATARI_TASKS)
    env = gym.make("prefrl/PongNoScore-v0")
    assert env_family(env) == "atari"
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.metadata["render_fps"] == 15  # 60 Hz / frame skip 4: clips play at real speed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "different from the unwrapped version": we check the wrapped env
        check_env(env, skip_render_check=True)


def _accelerating_policy(game: str, n_actions: int, rng: np.random.Generator) -> int:
    if game == "Enduro" and rng.random() < 0.8:
        return 1  # FIRE accelerates, so the odometer digits roll
    return int(rng.integers(n_actions))


@pytest.mark.parametrize("game", sorted(GAMES))
def test_blacked_out_regions_are_blank_in_real_frames(game):
    env = gym.make(GAMES[game].id)
    obs, _ = env.reset(seed=0)
    ale = env.unwrapped.ale
    mask = observation_mask(GAMES[game].blackout)
    raw_regions = np.zeros(RAW_SHAPE, dtype=bool)
    for r0, r1, c0, c1 in GAMES[game].blackout:
        raw_regions[r0:r1, c0:c1] = True
    rng = np.random.default_rng(0)
    hidden_content, seen_elsewhere = set(), 0
    for _ in range(400):
        obs, _, terminated, truncated, _ = env.step(_accelerating_policy(game, env.action_space.n, rng))
        assert not terminated
        assert (obs[:, mask] == 0).all(), "score pixels leak into the observation"
        seen_elsewhere += int(obs[-1][~mask].any())
        screen = ale.getScreenGrayscale()
        hidden_content.add(screen[raw_regions].tobytes())  # what the raw screen shows there
        if truncated:
            env.reset()
    assert seen_elsewhere > 300  # the rest of the screen is not blank
    assert len(hidden_content) > 1, "the blacked-out region never changes on the raw screen: is it the score?"


def test_no_life_loss_or_episode_end_signal_and_the_end_penalty():
    env = gym.make("prefrl/BreakoutNoScore-v0")
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    lives_seen, steps = set(), 0
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        steps += 1
        lives_seen.add(info["lives"])
        assert not terminated  # the agent never gets an episode-end signal
        if truncated:
            break
        assert not info["game_over"] and info["end_penalty"] == 0.0
        assert steps < 20_000
    assert len(lives_seen) > 1  # lives were lost along the way, without any signal
    assert info["game_over"] and info["end_penalty"] == -GAMES["Breakout"].end_penalty < 0
    assert reward <= -GAMES["Breakout"].end_penalty + 7  # the penalty is part of the true reward


def test_pong_has_no_end_penalty():
    assert GAMES["Pong"].end_penalty == 0.0
    assert all(g.end_penalty > 0 for name, g in GAMES.items() if name != "Pong")


def test_noop_starts_differ_between_seeds():
    env = gym.make("prefrl/PongNoScore-v0")
    frames = set()
    for seed in range(8):
        env.reset(seed=seed)
        frames.add(env.unwrapped.ale.getEpisodeFrameNumber())
    assert len(frames) > 3 and max(frames) <= 30


@pytest.mark.parametrize("game", ["Pong", "Seaquest"])
def test_replay_from_the_saved_state_repeats_what_the_agent_saw(game):
    env = gym.make(GAMES[game].id)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(50):
        obs, *_ = env.step(int(rng.integers(env.action_space.n)))
    states, actions, seen = [], [], []
    for _ in range(25):
        action = int(rng.integers(env.action_space.n))
        obs, _, _, truncated, info = env.step(action)
        assert not truncated
        states.append(info["ale_state"])
        actions.append(action)
        seen.append(obs[-1])
    replayer = gym.make(GAMES[game].id)
    replayer.reset(seed=99)  # a different episode: the state alone must determine the replay
    grey = replayer.get_wrapper_attr("replay_observed")(states[0], np.array(actions))
    np.testing.assert_array_equal(grey, np.stack(seen))
    rgb = replayer.get_wrapper_attr("replay_rgb")(states[0], np.array(actions))
    assert rgb.shape == (25, 210, 160, 3) and rgb.dtype == np.uint8
    for r0, r1, c0, c1 in GAMES[game].blackout:
        assert (rgb[:, r0:r1, c0:c1] == 0).all()  # people do not see the score either
