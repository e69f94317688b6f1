"""Labelled pairs of segments, held in preallocated arrays (Christiano et al. 2017, §2.2).

Each item is a triple (σ¹, σ², μ) where μ is the probability that σ¹ (the left segment) is better:
1 for "left", 0 for "right", 0.5 for "equally good". "Can't tell" answers never reach the dataset.
With ``max_size`` set, only the newest labels are kept (the paper keeps 3,000 for Atari, App. A.2).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from prefrl.segments import Segment
from prefrl.teachers import Preference

VALIDATION_SHARE = 1 / math.e  # App. A: each predictor holds out 1/e of the data for validation

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

    The observations of a pair are held as a *payload* array, here the observations themselves
    ``(2, length, *obs_shape)``. Subclasses that hold observations elsewhere (e.g. frame ids into a shared
    store, :class:`~prefrl.frame_storage.FramePreferenceDataset`) override :meth:`_encode`, :meth:`_decode`
    and :meth:`_release`; the ring-buffer bookkeeping stays here.

    Args:
        max_size: keep only the newest ``max_size`` pairs (None: keep all).
    """

    def __init__(self, max_size: int | None = None) -> None:
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None; got {max_size}")
        self.max_size = max_size
        self._payload: np.ndarray | None = None  # (capacity, *payload_shape)
        self._acts: np.ndarray | None = None  # (capacity, 2, length, *act_shape)
        self._true_returns = np.zeros((0, 2), dtype=np.float64)
        self._mu = np.zeros(0, dtype=np.float32)
        self._keys = np.zeros(0, dtype=np.uint64)  # per pair, from its content: see held_out()
        self._size = 0
        self._next = 0  # write position once the buffer is full

    def __len__(self) -> int:
        return self._size

    # ------------------------------------------------------------------- observation payload hooks
    def _encode(self, left: Segment, right: Segment) -> np.ndarray:
        """The payload that stands for the pair's observations."""
        return np.stack([np.asarray(left.obs), np.asarray(right.obs)])

    def _decode(self, payload: np.ndarray) -> np.ndarray:
        """Observations ``(..., *obs_shape)`` from payload rows ``(..., *payload_row_shape)``."""
        return payload

    def _release(self, payload: np.ndarray) -> None:
        """Called for a payload that leaves the buffer (overwritten, refused or cleared)."""

    def _row_shape(self) -> tuple[int, ...]:
        """Shape of the payload of one step of one segment (what :meth:`all_steps` flattens to)."""
        assert self._payload is not None
        return self._payload.shape[3:]

    # ---------------------------------------------------------------------------------------- API
    def add(self, left: Segment, right: Segment, mu: float) -> None:
        """Add one labelled pair; ``mu`` is P(left is better). Overwrites the oldest pair when full."""
        if len(left) != len(right):
            raise ValueError(f"segments of one pair must have equal length; got {len(left)} and {len(right)}")
        payload = self._encode(left, right)
        if self._payload is not None and payload.shape != self._payload.shape[1:]:
            self._release(payload)
            raise ValueError(
                f"segment layout {payload.shape[1:]} differs from the dataset's {self._payload.shape[2:]}"
            )
        capacity = len(self._mu)
        if self._size == capacity and (self.max_size is None or capacity < self.max_size):
            new_capacity = max(64, 2 * capacity)
            if self.max_size is not None:
                new_capacity = min(new_capacity, self.max_size)
            self._grow(new_capacity, payload, np.asarray(left.acts))
        assert self._payload is not None and self._acts is not None
        i = self._size if self._size < len(self._mu) else self._next
        if self._size == len(self._mu):
            self._release(self._payload[i])  # the oldest pair leaves
        self._payload[i] = payload
        self._acts[i, 0], self._acts[i, 1] = left.acts, right.acts
        self._true_returns[i] = (left.true_return, right.true_return)
        self._mu[i] = mu
        self._keys[i] = pair_key(left, right)
        if self._size < len(self._mu):
            self._size += 1
        else:
            self._next = (self._next + 1) % len(self._mu)

    def batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gather pairs.

        Returns:
            obs ``(B, 2, length, *obs_shape)``, acts ``(B, 2, length, *act_shape)``, mu ``(B,)``.
        """
        if self._payload is None or self._acts is None:
            raise ValueError("the preference dataset is empty")
        return self._decode(self._payload[indices]), self._acts[indices], self._mu[indices]

    @property
    def mu(self) -> np.ndarray:
        return self._mu[: self._size]

    @property
    def keys(self) -> np.ndarray:
        """Each pair's content key (:func:`pair_key`), ``(size,)`` uint64: the same pair has the same key
        in a run resumed from its label store, wherever the ring buffer put it."""
        return self._keys[: self._size]

    @property
    def true_returns(self) -> np.ndarray:
        """True returns of (left, right), ``(size, 2)``: for diagnostics only, never for training."""
        return self._true_returns[: self._size]

    def held_out(self, members: int, share: float = VALIDATION_SHARE) -> np.ndarray:
        """Which pairs each ensemble member keeps for validation: bool ``(len(self), members)``.

        A pair's place is fixed by its content (:func:`pair_key`), not drawn afresh at every fit, so a
        member that goes on training fit after fit never trains on the pairs it is validated on, and a
        run resumed from its label store holds out the same pairs. Drawing a new split at each fit of a
        warm-started member leaks: its validation pairs were its training pairs at earlier fits, so the
        validation loss stays near the training loss and the adaptive L2 (1.1–1.5×, App. A) shrinks
        towards zero. Measured on a backflip run's 900 labels replayed fit by fit: L2 fell to 2e-9 and
        the reward ranked the ceiling's landed flips below its own agent's hops in 79 % of mixed pairs;
        with fixed places L2 stayed between 0.03 and 0.16 and it ranked them above in 97 %.
        """
        salts = np.arange(1, members + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        mixed = _splitmix64(self._keys[: self._size, None] ^ salts[None, :])
        return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53) < share

    def all_steps(self, max_steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``max_steps`` (obs, act) rows from random pairs, e.g. for input statistics."""
        if self._payload is None or self._acts is None or not self._size:
            raise ValueError("the preference dataset is empty")
        steps_per_pair = 2 * self._payload.shape[2]
        count = min(self._size, max(1, max_steps // steps_per_pair))
        picks = rng.choice(self._size, size=count, replace=False)
        obs = self._decode(self._payload[picks].reshape(-1, *self._row_shape()))
        return obs, self._acts[picks].reshape(-1, *self._acts.shape[3:])

    def clear(self) -> None:
        """Drop every pair (their payloads are released)."""
        if self._payload is not None:
            self._release(self._payload[: self._size])
        self._size, self._next = 0, 0

    def _grow(self, capacity: int, payload: np.ndarray, acts: np.ndarray) -> None:
        def grow(old: np.ndarray | None, item_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
            new = np.zeros((capacity, *item_shape), dtype=dtype)
            if old is not None and len(old):
                new[: len(old)] = old
            return new

        self._payload = grow(self._payload, payload.shape, payload.dtype)
        self._acts = grow(self._acts, (2, *acts.shape), acts.dtype)
        self._true_returns = grow(self._true_returns, (2,), np.float64)
        self._mu = grow(self._mu, (), np.float32)
        self._keys = grow(self._keys, (), np.uint64)


def pair_key(left: Segment, right: Segment) -> int:
    """A 64-bit key of a labelled pair from what it shows: each segment's observations, actions, the env's
    rewards and, where kept, simulator states. The same pair reloaded from a label store gets the same key;
    pairs that show different steps almost never share one (two segments of a policy that repeats its
    actions and earns nothing still differ in what they observe)."""

    def crc(segment: Segment) -> int:
        value = 0
        parts = (segment.obs, segment.acts, segment.true_rewards, segment.states)
        for part in parts:
            if part is not None:
                value = zlib.crc32(np.ascontiguousarray(part).tobytes(), value)
        return value

    return (crc(left) << 32) | crc(right)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): well-spread bits from any keys."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
