"""Fixed-length trajectory segments: what a teacher compares (Christiano et al. 2017, §2.1).

A segment is ``segment_length`` consecutive steps of one episode. It keeps what the reward model
needs (observations, actions), what teachers and diagnostics need (the env's true rewards, which the
reward model never sees) and what a clip needs to be rendered later (the simulator state after each
step, e.g. MuJoCo ``qpos``/``qvel``). Whole trajectories are never kept: a :class:`SegmentCollector`
holds at most one partial segment per env and hands finished segments to a bounded
:class:`SegmentPool`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The paper's clips are 1-2 s (App. B); MuJoCo segments are 1.5 s, "15-60 steps by task" (App. A.1).
DEFAULT_SEGMENT_SECONDS = 1.5
MIN_SEGMENT_LENGTH = 15
MAX_SEGMENT_LENGTH = 60

_segment_ids = itertools.count()


@dataclass
class Segment:
    """``length`` consecutive steps of one episode.

    Attributes:
        obs: observations the agent acted on, ``(length, *obs_shape)``.
        acts: actions taken, ``(length, *act_shape)``.
        true_rewards: the env's own rewards, ``(length,)``. Teachers and diagnostics only.
        states: simulator state after each step, ``(length, state_dim)``, or None where the env has none.
        frames: optional RGB frames ``(length, H, W, 3)`` for envs that cannot be restored from a state.
        uid: process-unique id, used to avoid pairing a segment with itself.
    """

    obs: np.ndarray
    acts: np.ndarray
    true_rewards: np.ndarray
    states: np.ndarray | None = None
    frames: np.ndarray | None = None
    uid: int = field(default_factory=lambda: next(_segment_ids))

    def __len__(self) -> int:
        return len(self.true_rewards)

    @property
    def true_return(self) -> float:
        return float(self.true_rewards.sum())


Pair = tuple[Segment, Segment]
"""Two segments shown side by side (left, right)."""


def default_segment_length(dt: float | None) -> int:
    """1.5 s of env time, clamped to the paper's 15-60 steps (Christiano et al. 2017, App. A.1)."""
    if not dt or dt <= 0:
        return 25
    return int(np.clip(round(DEFAULT_SEGMENT_SECONDS / dt), MIN_SEGMENT_LENGTH, MAX_SEGMENT_LENGTH))


class SegmentCollector:
    """Cuts the per-step stream of a vectorised env into segments, one partial segment per env.

    Steps are written into preallocated per-env buffers; when a buffer is full it becomes a
    :class:`Segment` and the buffer starts over. An episode end discards the partial segment, so a
    segment never spans two episodes (and never contains an autoreset step).

    Args:
        num_envs: number of envs in the vectorised env.
        segment_length: steps per segment.
        obs_shape, obs_dtype, act_shape, act_dtype: layout of one observation / action.
        state_dim: length of the simulator state vector, or None to keep no states.
        stride: steps between the starts of consecutive segments of one env. ``segment_length``
            (the default) gives disjoint segments; a larger stride keeps fewer, decorrelated ones.
    """

    def __init__(
        self,
        *,
        num_envs: int,
        segment_length: int,
        obs_shape: tuple[int, ...],
        obs_dtype: Any,
        act_shape: tuple[int, ...],
        act_dtype: Any,
        state_dim: int | None = None,
        stride: int | None = None,
    ) -> None:
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1; got {segment_length}")
        self.segment_length = segment_length
        self.stride = stride or segment_length
        if self.stride < segment_length:
            raise ValueError(f"stride must be >= segment_length ({segment_length}); got {self.stride}")
        n, length = num_envs, segment_length
        self._obs = np.zeros((n, length, *obs_shape), dtype=obs_dtype)
        self._acts = np.zeros((n, length, *act_shape), dtype=act_dtype)
        self._rews = np.zeros((n, length), dtype=np.float32)
        self._states = None if state_dim is None else np.zeros((n, length, state_dim), dtype=np.float64)
        # Position in the current window: negative while skipping the gap between strided segments.
        self._pos = np.zeros(n, dtype=np.int64)
        self._rows = np.arange(n)
        # While every env is at the same position (no strides: after a reset, and for as long as episodes
        # end together, as fixed-horizon ones do), that position as an int; None otherwise.
        self._common_pos: int | None = 0 if self.stride == segment_length else None

    def add(
        self,
        obs: np.ndarray,
        acts: np.ndarray,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        states: np.ndarray | None = None,
    ) -> list[Segment]:
        """Record one vectorised step (``obs`` is what the agent acted on) and return finished segments."""
        if self._common_pos is not None:  # every env at the same position: plain slices, the usual case
            return self._add_in_step(obs, acts, true_rewards, dones, states)
        if self.stride == self.segment_length:  # no gaps: every env is inside a segment
            writing: np.ndarray | slice = slice(None)
            rows, at = self._rows, self._pos
        else:
            writing = np.flatnonzero(self._pos >= 0)  # envs inside a segment (not in a stride gap)
            rows, at = writing, self._pos[writing]
        self._obs[rows, at] = obs[writing]
        self._acts[rows, at] = acts[writing]
        self._rews[rows, at] = true_rewards[writing]
        if self._states is not None and states is not None:
            self._states[rows, at] = states[writing]
        self._pos += 1
        finished = [self._segment(i) for i in np.flatnonzero(self._pos == self.segment_length).tolist()]
        self._pos[self._pos == self.segment_length] = self.segment_length - self.stride
        dones = np.asarray(dones, dtype=bool)
        if dones.all() and self.stride == self.segment_length:
            self._common_pos = 0  # all envs start afresh together: back to the fast path
        self._pos[dones] = 0
        return finished

    def _add_in_step(
        self,
        obs: np.ndarray,
        acts: np.ndarray,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        states: np.ndarray | None,
    ) -> list[Segment]:
        """:meth:`add` while all envs share one position (no stride gaps), e.g. fixed-horizon episodes."""
        at = self._common_pos
        assert at is not None
        self._obs[:, at] = obs
        self._acts[:, at] = acts
        self._rews[:, at] = true_rewards
        if self._states is not None and states is not None:
            self._states[:, at] = states
        at += 1
        finished: list[Segment] = []
        if at == self.segment_length:
            finished = [self._segment(i) for i in range(len(self._pos))]
            at = 0
        dones = np.asarray(dones, dtype=bool)
        if dones.any() and not dones.all():  # envs out of step from now on
            self._pos[:] = at
            self._pos[dones] = 0
            self._common_pos = None
            return finished
        self._common_pos = 0 if dones.any() else at
        return finished

    def _segment(self, i: int) -> Segment:
        return Segment(
            obs=self._obs[i].copy(),
            acts=self._acts[i].copy(),
            true_rewards=self._rews[i].copy(),
            states=None if self._states is None else self._states[i].copy(),
        )

    def reset(self) -> None:
        """Drop all partial segments (after the env itself was reset)."""
        self._pos[:] = 0
        self._common_pos = 0 if self.stride == self.segment_length else None


class SegmentPool:
    """The most recent ``capacity`` segments: the candidates from which query pairs are drawn.

    The paper samples pairs from the agent's recent behaviour; a bounded FIFO keeps memory fixed.
    """

    def __init__(self, capacity: int = 2_000) -> None:
        self._segments: deque[Segment] = deque(maxlen=capacity)

    def extend(self, segments: Iterable[Segment]) -> None:
        self._segments.extend(segments)

    def __len__(self) -> int:
        return len(self._segments)

    def __getitem__(self, i: int) -> Segment:
        return self._segments[i]

    def clear(self) -> None:
        self._segments.clear()

    def sample_pairs(
        self, n: int, rng: np.random.Generator, *, newest: int | None = None
    ) -> list[tuple[Segment, Segment]]:
        """``n`` pairs of distinct segments drawn uniformly (fewer if the pool is too small); with ``newest``,
        only from the ``newest`` most recent segments (QPA's policy-aligned queries)."""
        size = len(self._segments)
        window = size if newest is None else min(newest, size)
        if window < 2 or n <= 0:
            return []
        left = rng.integers(0, window, n)
        # Offset in [1, window) guarantees right != left.
        right = (left + rng.integers(1, window, n)) % window
        first = size - window
        return [(self._segments[first + a], self._segments[first + b]) for a, b in zip(left, right)]

    def disjoint_pairs(self, n: int, rng: np.random.Generator) -> list[tuple[Segment, Segment]]:
        """``n`` pairs in which no segment appears twice while the pool holds enough (a random matching of
        ``2 n`` segments), then uniform pairs as :meth:`sample_pairs` draws them for the rest.

        For the random-policy labels before RL: every segment simulated for them is labelled once, where
        uniform pairs from a pool of ``2 n`` would leave a third of it unused and label others twice.
        """
        size = len(self._segments)
        matched = min(n, size // 2)
        order = rng.permutation(size)[: 2 * matched]
        pairs = [(self._segments[a], self._segments[b]) for a, b in zip(order[0::2], order[1::2])]
        return pairs + self.sample_pairs(n - matched, rng)

    def observations(self, max_steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``max_steps`` (obs, act) rows from random pool segments, for reward normalisation."""
        if not self._segments:
            raise ValueError("the segment pool is empty")
        length = len(self._segments[0])
        count = min(len(self._segments), max(1, max_steps // length))
        picks = rng.choice(len(self._segments), size=count, replace=False)
        obs = np.concatenate([self._segments[i].obs for i in picks])
        acts = np.concatenate([self._segments[i].acts for i in picks])
        return obs, acts
