"""The reward swap for Atari: segments that share frames, and colour clips for people (App. A.2, App. B).

:class:`FrameSharingRewardVecEnv` is :class:`~prefrl.wrappers.LearnedRewardVecEnv` with one change: it cuts
the step stream into :class:`~prefrl.frame_storage.FrameStackSegment`\\ s, whose 84×84 frames live once in a
:class:`~prefrl.frame_storage.FrameStore` shared with the preference dataset. Each segment keeps the emulator
state it started from (the ``info["ale_state"]`` of :mod:`prefrl.envs.atari`), so the few segments that are
shown to people can be replayed in full colour (:meth:`FrameSharingRewardVecEnv.with_clips`) while the
thousands that are not cost nothing but their grey frames.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from prefrl.frame_storage import FrameStackCollector, FrameStackSegment, FrameStore
from prefrl.reward_model import RewardFn
from prefrl.segments import Pair, Segment, SegmentPool
from prefrl.wrappers import LearnedRewardVecEnv


class ClipSegment(FrameStackSegment):
    """A frame-stack segment whose RGB ``frames`` ``(length, 210, 160, 3)`` are replayed on each access.

    Nothing is kept in memory: the label store reads ``frames`` once, when it saves the query for the
    labeling GUI.
    """

    def __init__(self, segment: FrameStackSegment, replay: Any) -> None:
        super().__init__(segment.store, segment.frame_ids, segment.acts, segment.true_rewards)
        self.ale_state, self.uid, self._replay = segment.ale_state, segment.uid, replay

    @property  # type: ignore[override]
    def frames(self) -> np.ndarray:
        return self._replay(self.ale_state, self.acts)

    @frames.setter
    def frames(self, value: np.ndarray | None) -> None:
        pass  # always replayed; set by the base constructor only


class FrameSharingRewardVecEnv(LearnedRewardVecEnv):
    """:class:`LearnedRewardVecEnv` for stacked-frame observations: segments share their frames.

    Args:
        venv, reward_fn, segment_length, pool: as for :class:`LearnedRewardVecEnv`.
        store: the frame store (created for the env's frame shape if not given); pass the same store to
            :class:`~prefrl.frame_storage.FramePreferenceDataset` so the pool and the dataset share frames.
        env_id: the env to replay clips in (by default the id in the vec env's spec).
    """

    def __init__(
        self,
        venv: VecEnv,
        reward_fn: RewardFn | None,
        *,
        segment_length: int | None = None,
        pool: SegmentPool | None = None,
        store: FrameStore | None = None,
        env_id: str | None = None,
    ) -> None:
        super().__init__(venv, reward_fn, segment_length=segment_length, pool=pool)
        shape = venv.observation_space.shape
        if shape is None or len(shape) != 3:
            raise ValueError(f"expected (k, H, W) stacked-frame observations; got {venv.observation_space}")
        self.frame_store = store if store is not None else FrameStore(shape[1:])
        self._env_id = env_id
        self._clip_env: gym.Env | None = None

    def _new_collector(self, obs: np.ndarray, actions: np.ndarray, infos: list[dict]) -> Any:
        assert self.segment_length is not None
        return FrameStackCollector(
            num_envs=self.num_envs, segment_length=self.segment_length, store=self.frame_store
        )

    def _segment_states(self, infos: list[dict]) -> Any:
        """The emulator states, from which the colour clip of a segment is replayed for people."""
        return [info.get("ale_state") for info in infos]

    def with_clips(self, pairs: list[Pair]) -> list[Pair]:
        """The pairs with colour ``frames`` (replayed when read) on every segment that can be replayed.

        Only for pairs shown to people (App. B): a synthetic teacher needs no clips, and the label store
        then saves none.
        """
        return [(self._clip(left), self._clip(right)) for left, right in pairs]

    def _clip(self, segment: Segment) -> Segment:
        if not isinstance(segment, FrameStackSegment) or segment.ale_state is None:
            return segment
        return ClipSegment(segment, self._replay)

    def _replay(self, ale_state: Any, actions: np.ndarray) -> np.ndarray:
        if self._clip_env is None:
            spec = gym.spec(self._env_id) if self._env_id else self.venv.get_attr("spec", [0])[0]
            self._clip_env = gym.make(spec.id, **spec.kwargs)
        return self._clip_env.get_wrapper_attr("replay_rgb")(ale_state, actions)

    def close(self) -> None:
        if self._clip_env is not None:
            self._clip_env.close()
        super().close()
