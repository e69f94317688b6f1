from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from prefrl.segments import SegmentPool
from prefrl.wrappers import LearnedRewardVecEnv, LearnedRewardWrapper


class CountingEnv(gym.Env):
    """obs = (episode index, step in episode); episodes of 3 + env index steps; true reward = step."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 3) -> None:
        self.observation_space = gym.spaces.Box(0, 1e6, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (1,), np.float32)
        self.length, self.episode, self.t = length, -1, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {"sim_state": np.array([self.episode, self.t], float)}

    def _obs(self):
        return np.array([self.episode, self.t], np.float32)

    def step(self, action):
        self.t += 1
        info = {"sim_state": np.array([self.episode, self.t], float)}
        return self._obs(), float(self.t), False, self.t >= self.length, info


class Recorder:
    """A reward function that remembers what it scored; reward = 10·episode + step of the scored obs."""

    def __init__(self) -> None:
        self.scored: list[np.ndarray] = []

    def __call__(self, obs: np.ndarray, acts: np.ndarray) -> np.ndarray:
        self.scored.append(obs.copy())
        return (10 * obs[:, 0] + obs[:, 1]).astype(np.float32)


def test_vec_wrapper_scores_the_obs_acted_on_never_an_autoreset_obs():
    venv = DummyVecEnv([lambda: CountingEnv(3), lambda: CountingEnv(4)])
    rec = Recorder()
    env = LearnedRewardVecEnv(venv, rec, segment_length=2, pool=SegmentPool())
    obs = env.reset()
    seen = [obs.copy()]
    for _ in range(12):
        obs, rewards, dones, infos = env.step(np.zeros((2, 1), np.float32))
        assert rewards.dtype == np.float32 and rewards.shape == (2,)
        for i in np.flatnonzero(dones):
            # The finished episode's last step was scored on its own obs (t = length - 1) ...
            assert rec.scored[-1][i, 1] == (3, 4)[i] - 1
            assert "terminal_observation" in infos[i] and infos[i]["true_episode"]["l"] == (3, 4)[i]
            # ... and the returned obs is the next episode's reset obs, not yet scored.
            assert obs[i, 1] == 0
        assert [info["true_reward"] for info in infos] == list(env.get_original_reward())
        seen.append(obs.copy())
    # Every scored obs is exactly the obs returned by the previous step.
    for scored, previous in zip(rec.scored, seen):
        np.testing.assert_array_equal(scored, previous)
    # Segments come from one episode each, in order.
    assert len(env.pool) > 0
    for i in range(len(env.pool)):
        seg = env.pool[i]
        assert len(set(seg.obs[:, 0])) == 1 and np.all(np.diff(seg.obs[:, 1]) == 1)
        np.testing.assert_array_equal(seg.states[:, 1], seg.obs[:, 1] + 1)  # state after each step
    episodes = env.drain_episodes()
    assert {e["l"] for e in episodes} == {3, 4} and env.drain_episodes() == []


def test_vec_wrapper_without_reward_fn_passes_true_reward_through():
    venv = DummyVecEnv([lambda: CountingEnv(3)])
    env = LearnedRewardVecEnv(venv, None)
    env.reset()
    _, rewards, _, _ = env.step(np.zeros((1, 1), np.float32))
    assert rewards[0] == 1.0


def test_vec_wrapper_trains_an_sb3_agent():
    venv = LearnedRewardVecEnv(
        DummyVecEnv([lambda: gym.make("Pendulum-v1")] * 2), lambda o, a: -np.abs(o[:, 2])
    )
    PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1).learn(256)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "prefrl/Hopper-v0"])
def test_gym_wrapper_passes_both_env_checkers(env_id):
    env = LearnedRewardWrapper(gym.make(env_id), lambda o, a: o.sum(1) - a.sum(1))
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=False)


def test_gym_wrapper_rewards_obs_and_action_of_the_step():
    env = LearnedRewardWrapper(CountingEnv(2), lambda o, a: 10 * o[:, 1] + a[:, 0])
    env.reset(seed=0)
    _, r1, _, _, info = env.step(np.array([0.5], np.float32))
    _, r2, *_ = env.step(np.array([0.25], np.float32))
    assert (r1, r2) == (0.5, 10.25) and info["true_reward"] == 1.0


def test_gym_wrapper_requires_reset():
    env = LearnedRewardWrapper(CountingEnv(), lambda o, a: o[:, 0])
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(1, np.float32))
