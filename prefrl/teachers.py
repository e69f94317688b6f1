"""Teachers: whoever answers "which of these two segments is better?".

The interface is asynchronous, because people in the labeling GUI answer the same questions a
synthetic teacher does, only later: queries are ``post``-ed, answers are ``poll``-ed. Synthetic
teachers answer at once.

The synthetic teachers follow BPref (Lee et al. 2021, "B-Pref: Benchmarking Preference-Based RL"):
one model with parameters β (rationality), γ (myopia), ε (mistakes), δ_skip and δ_equal, and named
presets (oracle, stochastic, myopic, mistake, skip, equal).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from prefrl.segments import Segment


class Preference(enum.IntEnum):
    """An answer, with the labeling GUI's keys (Christiano et al. 2017, App. B)."""

    LEFT = 0  # ← left is better
    RIGHT = 1  # → right is better
    EQUAL = 2  # ↑ equally good
    SKIP = 3  # ↓ can't tell (dropped from training)

    @classmethod
    def parse(cls, value: str | int) -> Preference:
        """From a name ("left", "RIGHT", ...) or a number; raises ValueError with the choices."""
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        elif isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        choices = ", ".join(p.name.lower() for p in cls)
        raise ValueError(f"unknown preference {value!r}; expected one of: {choices}")


@dataclass(frozen=True)
class Query:
    """A pair of segments to compare; ``query_id`` is unique within a run."""

    query_id: int
    left: Segment
    right: Segment


@dataclass(frozen=True)
class Answer:
    query_id: int
    preference: Preference
    labeler: str = "synthetic"
    seconds: float = 0.0


class Teacher(Protocol):
    """Anything that answers queries: a synthetic model, or people (through the label store)."""

    stores_answers: bool
    """True when the answers are in the label store already when polled (people answering in the GUI,
    through :class:`~prefrl.label_store.StoreTeacher`); the trainer then does not store them again."""

    def post(self, queries: Sequence[Query]) -> None:
        """Hand over queries to be answered."""
        ...

    def poll(self) -> list[Answer]:
        """Answers that arrived since the last poll (possibly none)."""
        ...

    def pending(self) -> int:
        """Posted queries not yet answered."""
        ...


class SyntheticTeacher:
    """BPref's simulated teacher; every preset is a setting of its five parameters.

    For a pair with per-step true rewards r¹, r² of length H, the teacher
      1. skips (answers "can't tell") if both returns are below δ_skip · max|return| of the batch;
      2. weighs step t by γ^(H-1-t) (myopia: the end of the segment counts most);
      3. answers "equal" if the weighted returns differ by less than δ_equal · max|return|;
      4. prefers left with probability sigmoid(β (R¹ - R²)) (β = ∞: deterministic, ties are "equal");
      5. flips its answer with probability ε.
    Thresholds are relative to the largest absolute segment return in the posted batch, as in BPref.

    Args:
        beta: rationality β; ``np.inf`` for a perfectly rational teacher.
        gamma: myopic discount γ (1 = not myopic).
        epsilon: probability of a mistake ε.
        skip_threshold: δ_skip (0 = never skip).
        equal_threshold: δ_equal (0 = "equal" only for exact ties).
        rng: random generator for the stochastic parts.
    """

    stores_answers = False

    def __init__(
        self,
        *,
        beta: float = np.inf,
        gamma: float = 1.0,
        epsilon: float = 0.0,
        skip_threshold: float = 0.0,
        equal_threshold: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1]; got {gamma}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1]; got {epsilon}")
        if beta <= 0:
            raise ValueError(f"beta must be > 0 (np.inf for a rational teacher); got {beta}")
        self.beta, self.gamma, self.epsilon = beta, gamma, epsilon
        self.skip_threshold, self.equal_threshold = skip_threshold, equal_threshold
        self.rng = rng if rng is not None else np.random.default_rng()
        self._answers: list[Answer] = []

    def answer(self, left_rewards: np.ndarray, right_rewards: np.ndarray) -> np.ndarray:
        """Answers for a batch of pairs of per-step true rewards ``(batch, H)``, as Preference values."""
        horizon = left_rewards.shape[1]
        scale = max(np.abs(left_rewards.sum(1)).max(), np.abs(right_rewards.sum(1)).max(), 1e-8)
        weights = self.gamma ** np.arange(horizon - 1, -1, -1, dtype=np.float64)
        ret_l, ret_r = left_rewards @ weights, right_rewards @ weights
        diff = ret_l - ret_r
        if np.isinf(self.beta):
            left_better = diff > 0
        else:
            p_left = 1.0 / (1.0 + np.exp(-np.clip(self.beta * diff, -50, 50)))
            left_better = self.rng.random(len(diff)) < p_left
        mistakes = self.rng.random(len(diff)) < self.epsilon
        answers = np.where(left_better ^ mistakes, Preference.LEFT, Preference.RIGHT)
        equal = np.abs(diff) <= self.equal_threshold * scale
        if np.isinf(self.beta) or self.equal_threshold > 0:
            answers = np.where(equal, Preference.EQUAL, answers)
        if self.skip_threshold > 0:
            low = (left_rewards.sum(1) < self.skip_threshold * scale) & (
                right_rewards.sum(1) < self.skip_threshold * scale
            )
            answers = np.where(low, Preference.SKIP, answers)
        return answers

    def post(self, queries: Sequence[Query]) -> None:
        if not queries:
            return
        left = np.stack([q.left.true_rewards for q in queries]).astype(np.float64)
        right = np.stack([q.right.true_rewards for q in queries]).astype(np.float64)
        for query, choice in zip(queries, self.answer(left, right)):
            self._answers.append(Answer(query.query_id, Preference(int(choice))))

    def poll(self) -> list[Answer]:
        answers, self._answers = self._answers, []
        return answers

    def pending(self) -> int:
        return 0


# BPref presets (Lee et al. 2021, Table 1): each changes one parameter of the oracle.
TEACHER_PRESETS: dict[str, dict[str, float]] = {
    "oracle": {},
    "stochastic": {"beta": 1.0},
    "myopic": {"gamma": 0.9},
    "mistake": {"epsilon": 0.1},
    "skip": {"skip_threshold": 0.1},
    "equal": {"equal_threshold": 0.1},
}


def make_synthetic_teacher(name: str, rng: np.random.Generator, **overrides: float) -> SyntheticTeacher:
    """A BPref preset by name, with optional parameter overrides."""
    if name not in TEACHER_PRESETS:
        raise ValueError(f"unknown synthetic teacher {name!r}; choose from {', '.join(TEACHER_PRESETS)}")
    return SyntheticTeacher(rng=rng, **{**TEACHER_PRESETS[name], **overrides})
