"""Swap the env's reward for the learned one (Christiano et al. 2017, §2.1: the agent never sees it).

:class:`LearnedRewardVecEnv` is the SB3 path: a ``VecEnvWrapper`` that scores every env's step in one
batched call, keeps the true reward in ``info["true_reward"]`` (and :meth:`get_original_reward`, as
``VecNormalize`` does), tracks true and learned episode returns separately, and cuts the step stream
into segments for the teacher. :class:`LearnedRewardWrapper` is the plain gymnasium version.

A step is scored as r̂(oₜ, aₜ): the observation the agent acted on and its action. SB3 vec envs reset
inside the step that ends an episode, so the observation they return then belongs to the next
episode; it is only scored as the "oₜ" of the next step, never as part of the finished one.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from prefrl.reward_model import RewardFn
from prefrl.segments import SegmentCollector, SegmentPool


class LearnedRewardVecEnv(VecEnvWrapper):
    """Replace a vec env's rewards with ``reward_fn`` (or pass them through when it is None).

    Args:
        venv: the env to wrap; put observation normalisation (``VecNormalize``) *outside* this wrapper so
            the reward model sees raw observations.
        reward_fn: (obs ``(n_envs, ...)``, acts ``(n_envs, ...)``) -> ``(n_envs,)``, e.g. a
            :class:`~prefrl.reward_model.RewardEnsemble`. None keeps the env's reward (the
            ``true-reward`` baseline) with the same bookkeeping.
        segment_length: cut the stream into segments of this many steps (None: collect none).
        pool: where finished segments go; created if not given.
    """

    def __init__(
        self,
        venv: VecEnv,
        reward_fn: RewardFn | None,
        *,
        segment_length: int | None = None,
        pool: SegmentPool | None = None,
    ) -> None:
        super().__init__(venv)
        self.reward_fn = reward_fn
        self.segment_length = segment_length
        self.pool = pool if pool is not None else SegmentPool()
        self._collector: Any = None  # built on the first step (SegmentCollector or a subclass's)
        self._last_obs: np.ndarray | None = None
        self._actions: np.ndarray | None = None
        self._true_rewards = np.zeros(self.num_envs, dtype=np.float32)
        self._true_return = np.zeros(self.num_envs, dtype=np.float64)
        self._learned_return = np.zeros(self.num_envs, dtype=np.float64)
        self._length = np.zeros(self.num_envs, dtype=np.int64)
        self.finished_episodes: list[dict[str, float]] = []  # drained by the trainer

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self._last_obs = obs  # type: ignore[assignment]
        self._true_return[:] = 0
        self._learned_return[:] = 0
        self._length[:] = 0
        if self._collector is not None:
            self._collector.reset()
        return obs  # type: ignore[return-value]

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        obs, true_rewards, dones, infos = self.venv.step_wait()
        if self._last_obs is None or self._actions is None:
            raise RuntimeError("step_wait() called before reset() and step_async()")
        prev_obs, actions = self._last_obs, self._actions
        rewards = (
            true_rewards if self.reward_fn is None else self.reward_fn(prev_obs, actions).astype(np.float32)
        )
        self._true_rewards = true_rewards
        self._true_return += true_rewards
        self._learned_return += rewards
        self._length += 1
        for i, info in enumerate(infos):
            info["true_reward"] = float(true_rewards[i])
        if dones.any():
            for i in np.flatnonzero(dones).tolist():
                episode: dict[str, float] = {
                    "r": float(self._true_return[i]),
                    "learned_r": float(self._learned_return[i]),
                    "l": int(self._length[i]),
                }
                infos[i]["true_episode"] = episode
                self.finished_episodes.append(episode)
                self._true_return[i] = self._learned_return[i] = self._length[i] = 0
        if self.segment_length is not None:
            self._collect(prev_obs, actions, true_rewards, dones, infos)
        self._last_obs = obs  # type: ignore[assignment]
        return obs, rewards, dones, infos

    def _collect(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        infos: list[dict],
    ) -> None:
        if self._collector is None:
            self._collector = self._new_collector(obs, actions, infos)
        finished = self._collector.add(obs, actions, true_rewards, dones, self._segment_states(infos))
        if finished:
            self.pool.extend(finished)

    def _new_collector(self, obs: np.ndarray, actions: np.ndarray, infos: list[dict]) -> Any:
        """The segment collector, built from the first step's shapes (subclasses cut other segments)."""
        assert self.segment_length is not None
        has_state = "sim_state" in infos[0]
        return SegmentCollector(
            num_envs=self.num_envs,
            segment_length=self.segment_length,
            obs_shape=obs.shape[1:],
            obs_dtype=obs.dtype,
            act_shape=np.asarray(actions).shape[1:],
            act_dtype=np.asarray(actions).dtype,
            state_dim=len(infos[0]["sim_state"]) if has_state else None,
        )

    def _segment_states(self, infos: list[dict]) -> Any:
        """What each env's step keeps so its clip can be rendered later: MuJoCo's qpos/qvel."""
        return np.stack([info["sim_state"] for info in infos]) if "sim_state" in infos[0] else None

    def drain_episodes(self) -> list[dict[str, float]]:
        """Episodes finished since the last call.

        Returns:
            dicts with the true return ``r``, learned return ``learned_r`` and length ``l``.
        """
        episodes, self.finished_episodes = self.finished_episodes, []
        return episodes

    def get_original_reward(self) -> np.ndarray:
        """The env's own rewards of the last step, as ``VecNormalize.get_original_reward`` gives them."""
        return self._true_rewards.copy()


class LearnedRewardWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Gymnasium version for non-SB3 code: ``reward = reward_fn(obs, action)`` of the step taken.

    The env's own reward stays in ``info["true_reward"]``.
    """

    def __init__(self, env: gym.Env, reward_fn: RewardFn) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, reward_fn=reward_fn)
        gym.Wrapper.__init__(self, env)
        self.reward_fn = reward_fn
        self._last_obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._last_obs is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        obs, true_reward, terminated, truncated, info = self.env.step(action)
        reward = float(self.reward_fn(np.asarray(self._last_obs)[None], np.asarray(action)[None])[0])
        info["true_reward"] = float(true_reward)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info
