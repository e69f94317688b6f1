"""Choosing which pairs of segments to ask about (Christiano et al. 2017, §2.2.4).

The paper draws many more candidate pairs than it needs (10×) and asks about those on which the
ensemble members disagree most, "a crude approximation" of value of information. BPref (Lee et al.
2021) adds the entropy of the mean prediction. Uniform sampling is the baseline.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Pair, SegmentPool

SCORE_BYTES = 64 * 2**20
"""Observation bytes of the candidate pairs scored at once (a chunk of them, however many there are)."""


class QuerySelector(Protocol):
    oversample: int
    """Candidate pairs drawn per query."""

    def choose(self, candidates: list[Pair], n: int) -> list[Pair]:
        """Up to ``n`` of ``candidates``, the most useful first (the expensive part: it may score them)."""
        ...

    def select(self, pool: SegmentPool, n: int, rng: np.random.Generator) -> list[Pair]:
        """Up to ``n`` pairs of segments from ``pool``: ``oversample``·n candidates drawn, ``n`` chosen."""
        ...


class RandomSelector:
    """Uniformly random pairs of distinct segments."""

    oversample = 1

    def choose(self, candidates: list[Pair], n: int) -> list[Pair]:
        return candidates[:n]

    def select(self, pool: SegmentPool, n: int, rng: np.random.Generator) -> list[Pair]:
        return pool.sample_pairs(n, rng)


class _EnsembleSelector:
    """Draw ``oversample``× more candidates than needed and keep the ``n`` with the highest score."""

    def __init__(self, ensemble: RewardEnsemble, *, oversample: int = 10) -> None:
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1; got {oversample}")
        self.ensemble = ensemble
        self.oversample = oversample

    def score(self, probs: np.ndarray) -> np.ndarray:
        """Score of each candidate from per-member preference probabilities ``(K, C)``."""
        raise NotImplementedError

    def select(self, pool: SegmentPool, n: int, rng: np.random.Generator) -> list[Pair]:
        return self.choose(pool.sample_pairs(n * self.oversample, rng), n)

    def choose(self, candidates: list[Pair], n: int) -> list[Pair]:
        if len(candidates) <= n:
            return candidates
        # Scored a chunk at a time: a frame-stack pair's observations are 1.4 MB (App. A.2's 25 steps of
        # 4×84×84), and a run's hundreds of candidates at once would be gigabytes for every update.
        chunk = max(1, SCORE_BYTES // (2 * candidates[0][0].obs.nbytes))
        probs = np.concatenate(
            [self._probs(candidates[i : i + chunk]) for i in range(0, len(candidates), chunk)], axis=1
        )
        best = np.argsort(-self.score(probs), kind="stable")[:n]
        return [candidates[i] for i in best]

    def _probs(self, pairs: list[Pair]) -> np.ndarray:
        """Per-member preference probabilities ``(K, len(pairs))``."""
        obs = np.stack([np.stack([left.obs, right.obs]) for left, right in pairs])
        acts = np.stack([np.stack([left.acts, right.acts]) for left, right in pairs])
        return self.ensemble.preference_probs(obs, acts)


class DisagreementSelector(_EnsembleSelector):
    """Highest variance of the predicted preference across ensemble members (the paper's rule)."""

    def score(self, probs: np.ndarray) -> np.ndarray:
        return probs.var(axis=0)


class EntropySelector(_EnsembleSelector):
    """Highest entropy of the ensemble's mean predicted preference (BPref)."""

    def score(self, probs: np.ndarray) -> np.ndarray:
        p = np.clip(probs.mean(axis=0), 1e-6, 1 - 1e-6)
        return -(p * np.log(p) + (1 - p) * np.log(1 - p))


SELECTORS = ("random", "disagreement", "entropy")


def make_selector(name: str, ensemble: RewardEnsemble | None, *, oversample: int = 10) -> QuerySelector:
    if name == "random":
        return RandomSelector()
    if ensemble is None:
        raise ValueError(f"query selection {name!r} needs a reward ensemble")
    if name == "disagreement":
        return DisagreementSelector(ensemble, oversample=oversample)
    if name == "entropy":
        return EntropySelector(ensemble, oversample=oversample)
    raise ValueError(f"unknown query selection {name!r}; choose from {', '.join(SELECTORS)}")
