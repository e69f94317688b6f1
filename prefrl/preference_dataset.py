"""Labelled pairs of segments, held in preallocated arrays (Christiano et al. 2017, §2.2).

Each item is a triple (σ¹, σ², μ) where μ is the probability that σ¹ (the left segment) is better:
1 for "left", 0 for "right", 0.5 for "equally good". "Can't tell" answers never reach the dataset.
With ``max_size`` set, only the newest labels are kept (the paper keeps 3,000 for Atari, App. A.2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prefrl.segments import Segment
from prefrl.teachers import Preference

_MU = {Preference.LEFT: 1.0, Preference.RIGHT: 0.0, Preference.EQUAL: 0.5}


def preference_to_mu(preference: Preference) -> float:
    """The target probability that the left segment is better; raises for SKIP."""
    if preference not in _MU:
        raise ValueError(f"a {preference.name} answer carries no preference and cannot be trained on")
    return _MU[preference]


class PreferenceDataset:
    """A ring buffer of labelled segment pairs.

    Arrays are allocated on the first ``add`` from the first segment's shapes and grow by doubling up
    to ``max_size``; once full, the oldest pair is overwritten.

    Args:
        max_size: keep only the newest ``max_size`` pairs (None: keep all).
    """

    def __init__(self, max_size: int | None = None) -> None:
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None; got {max_size}")
        self.max_size = max_size
        self._obs: np.ndarray | None = None  # (capacity, 2, length, *obs_shape)
        self._acts: np.ndarray | None = None  # (capacity, 2, length, *act_shape)
        self._true_returns = np.zeros((0, 2), dtype=np.float64)
        self._mu = np.zeros(0, dtype=np.float32)
        self._size = 0
        self._next = 0  # write position once the buffer is full

    def __len__(self) -> int:
        return self._size

    def _allocate(self, capacity: int, like: Segment) -> None:
        def grow(old: np.ndarray | None, item: np.ndarray, fill: Any = 0) -> np.ndarray:
            new = np.full((capacity, 2, *item.shape), fill, dtype=item.dtype)
            if old is not None:
                new[: len(old)] = old
            return new

        self._obs = grow(self._obs, like.obs)
        self._acts = grow(self._acts, like.acts)
        true_returns = np.zeros((capacity, 2), dtype=np.float64)
        true_returns[: len(self._true_returns)] = self._true_returns
        self._true_returns = true_returns
        mu = np.zeros(capacity, dtype=np.float32)
        mu[: len(self._mu)] = self._mu
        self._mu = mu

    def add(self, left: Segment, right: Segment, mu: float) -> None:
        """Add one labelled pair; ``mu`` is P(left is better)."""
        if len(left) != len(right):
            raise ValueError(f"segments of one pair must have equal length; got {len(left)} and {len(right)}")
        if self._obs is not None and left.obs.shape != self._obs.shape[2:]:
            raise ValueError(
                f"segment shape {left.obs.shape} differs from the dataset's {self._obs.shape[2:]}"
            )
        capacity = len(self._mu)
        if self._size == capacity and (self.max_size is None or capacity < self.max_size):
            new_capacity = max(64, 2 * capacity)
            if self.max_size is not None:
                new_capacity = min(new_capacity, self.max_size)
            self._allocate(new_capacity, left)
        assert self._obs is not None and self._acts is not None
        i = self._size if self._size < len(self._mu) else self._next
        self._obs[i, 0], self._obs[i, 1] = left.obs, right.obs
        self._acts[i, 0], self._acts[i, 1] = left.acts, right.acts
        self._true_returns[i] = (left.true_return, right.true_return)
        self._mu[i] = mu
        if self._size < len(self._mu):
            self._size += 1
        else:
            self._next = (self._next + 1) % len(self._mu)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gather pairs.

        Returns:
            obs ``(B, 2, length, *obs_shape)``, acts ``(B, 2, length, *act_shape)``, mu ``(B,)``.
        """
        if self._obs is None or self._acts is None:
            raise ValueError("the preference dataset is empty")
        return self._obs[indices], self._acts[indices], self._mu[indices]

    @property
    def mu(self) -> np.ndarray:
        return self._mu[: self._size]

    @property
    def true_returns(self) -> np.ndarray:
        """True returns of (left, right), ``(size, 2)``: for diagnostics only, never for training."""
        return self._true_returns[: self._size]

    def all_steps(self, max_steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``max_steps`` (obs, act) rows from random pairs, e.g. for input statistics."""
        if self._obs is None or self._acts is None:
            raise ValueError("the preference dataset is empty")
        steps_per_pair = 2 * self._obs.shape[2]
        count = min(self._size, max(1, max_steps // steps_per_pair))
        picks = rng.choice(self._size, size=count, replace=False)
        obs = self._obs[picks].reshape(-1, *self._obs.shape[3:])
        acts = self._acts[picks].reshape(-1, *self._acts.shape[3:])
        return obs, acts
