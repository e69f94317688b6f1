"""Small envs whose true reward is known, so learning tests are fast and decisive."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class LinearRewardEnv(gym.Env):
    """A point moved by its action; true reward = w · obs. Fixed horizon, never terminates."""

    metadata = {"render_modes": [], "render_fps": 20}

    def __init__(self, obs_dim: int = 4, horizon: int = 50, seed: int = 0) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.weights = np.random.default_rng(seed).normal(size=obs_dim).astype(np.float32)
        self.horizon = horizon
        self._pos = np.zeros(obs_dim, np.float32)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._pos = self.np_random.normal(size=self._pos.shape).astype(np.float32)
        self._t = 0
        return self._pos.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._pos = np.clip(self._pos + 0.1 * np.asarray(action, np.float32), -5, 5).astype(np.float32)
        self._t += 1
        return self._pos.copy(), float(self.weights @ self._pos), False, self._t >= self.horizon, {}


gym.register("prefrl-test/LinearReward-v0", entry_point=LinearRewardEnv, max_episode_steps=50)
