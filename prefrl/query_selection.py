"""Choosing which pairs of segments to ask about (Christiano et al. 2017, §2.2.4).

The paper draws many more candidate pairs than it needs (10×) and asks about those on which the
ensemble members disagree most, "a crude approximation" of value of information. BPref (Lee et al.
2021) adds the entropy of the mean prediction, and k-center greedy selection (Sener & Savarese 2018), alone or
after either uncertainty rule: the candidates whose clips lie farthest from every pair already labelled, so
that the teacher is shown behaviour not yet asked about. Uniform sampling is the baseline.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from prefrl.preference_dataset import PreferenceDataset
from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Pair, SegmentPool

SCORE_BYTES = 64 * 2**20
"""Observation bytes of the candidate pairs scored at once (a chunk of them, however many there are)."""


class QuerySelector(Protocol):
    oversample: int
    """Candidate pairs drawn per query."""

    def choose(self, candidates: list[Pair], n: int, labelled: PreferenceDataset | None = None) -> list[Pair]:
        """Up to ``n`` of ``candidates``, the most useful first (the expensive part: it may score them);
        ``labelled``: the pairs asked so far (k-center keeps away from them; the other rules ignore it)."""
        ...

    def select(
        self, pool: SegmentPool, n: int, rng: np.random.Generator, labelled: PreferenceDataset | None = None
    ) -> list[Pair]:
        """Up to ``n`` pairs of segments from ``pool``: ``oversample``·n candidates drawn, ``n`` chosen."""
        ...


class RandomSelector:
    """Uniformly random pairs of distinct segments."""

    oversample = 1

    def choose(self, candidates: list[Pair], n: int, labelled: PreferenceDataset | None = None) -> list[Pair]:
        return candidates[:n]

    def select(
        self, pool: SegmentPool, n: int, rng: np.random.Generator, labelled: PreferenceDataset | None = None
    ) -> list[Pair]:
        return pool.sample_pairs(n, rng)


class _Oversampling:
    """Draws ``oversample``× more candidates than needed; subclasses choose ``n`` of them."""

    def __init__(self, *, oversample: int = 10) -> None:
        if oversample < 1:
            raise ValueError(f"oversample must be >= 1; got {oversample}")
        self.oversample = oversample

    def select(
        self, pool: SegmentPool, n: int, rng: np.random.Generator, labelled: PreferenceDataset | None = None
    ) -> list[Pair]:
        return self.choose(pool.sample_pairs(n * self.oversample, rng), n, labelled)

    def choose(self, candidates: list[Pair], n: int, labelled: PreferenceDataset | None = None) -> list[Pair]:
        raise NotImplementedError


class _EnsembleSelector(_Oversampling):
    """Keeps the ``n`` candidates with the highest score under the reward ensemble."""

    def __init__(self, ensemble: RewardEnsemble, *, oversample: int = 10) -> None:
        super().__init__(oversample=oversample)
        self.ensemble = ensemble

    def score(self, probs: np.ndarray) -> np.ndarray:
        """Score of each candidate from per-member preference probabilities ``(K, C)``."""
        raise NotImplementedError

    def choose(self, candidates: list[Pair], n: int, labelled: PreferenceDataset | None = None) -> list[Pair]:
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


class KCenterSelector(_Oversampling):
    """k-center greedy over the candidates' observations (BPref's KCenter, KCenter + Disagree/Entropy).

    A pair's feature is the observations of its two clips, flattened and put side by side, as BPref compares
    them (raw, actions left out). Each pick is the candidate farthest (Euclidean) from its nearest neighbour
    among the pairs labelled so far and the candidates already picked. With ``prefilter`` (BPref's hybrids),
    that rule first keeps the more uncertain half of the candidates, and k-center chooses among those.

    What it changes, offline on seven Walker2d 200-label runs' pools at 150k steps
    (``benchmarks/query_coverage.py``): k-center + disagreement chose clips 11-21 % upright where disagreement
    alone chose 4-29 % (the same mean, 15 %), lifting the runs whose pools were mostly a fallen walker (4 %
    to 11 %) and lowering those with more upright clips; pairs of two clips on the floor fell from 57 % to
    47 % on average. Online (SAC + PEBBLE, 200 labels, 200k steps, 4 seeds) it scored 0.32 of SAC on the true
    reward against disagreement's 0.62, so it is an option, not the default.
    """

    def __init__(self, *, oversample: int = 10, prefilter: _EnsembleSelector | None = None) -> None:
        super().__init__(oversample=oversample)
        self.prefilter = prefilter

    def choose(self, candidates: list[Pair], n: int, labelled: PreferenceDataset | None = None) -> list[Pair]:
        if len(candidates) <= n:
            return candidates
        if self.prefilter is not None:
            candidates = self.prefilter.choose(candidates, max(n, len(candidates) // 2))
        features = np.stack([pair_features(left.obs, right.obs) for left, right in candidates])
        nearest = np.full(len(candidates), np.inf)
        if labelled is not None and len(labelled):
            seen = labelled.batch(np.arange(len(labelled)))[0]
            nearest = _nearest_distances(features, seen.reshape(len(seen), -1).astype(np.float64))
        chosen: list[int] = []
        for _ in range(n):
            best = int(np.argmax(nearest))  # the first of ties: with nothing labelled, the first candidate
            chosen.append(best)
            nearest = np.minimum(nearest, np.linalg.norm(features - features[best], axis=1))
            nearest[chosen] = -np.inf
        return [candidates[i] for i in chosen]


def pair_features(left_obs: np.ndarray, right_obs: np.ndarray) -> np.ndarray:
    """A pair's k-center feature: both clips' observations, flattened, side by side (float64)."""
    if np.ndim(left_obs) > 2:
        raise ValueError(
            "k-center query selection compares vector observations; frame stacks "
            f"(a clip's observations are {np.shape(left_obs)}) need disagreement, entropy or random"
        )
    return np.concatenate([np.ravel(left_obs), np.ravel(right_obs)]).astype(np.float64)


def _nearest_distances(features: np.ndarray, seen: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each feature row's Euclidean distance to its nearest row of ``seen`` (``chunk`` rows of it at once)."""
    nearest = np.full(len(features), np.inf)
    squared = (features**2).sum(axis=1)
    for start in range(0, len(seen), chunk):
        block = seen[start : start + chunk]
        d2 = squared[:, None] + (block**2).sum(axis=1)[None, :] - 2 * features @ block.T
        nearest = np.minimum(nearest, np.sqrt(np.maximum(d2, 0.0)).min(axis=1))
    return nearest


SELECTORS = ("random", "disagreement", "entropy", "kcenter", "kcenter-disagreement", "kcenter-entropy")


def make_selector(name: str, ensemble: RewardEnsemble | None, *, oversample: int = 10) -> QuerySelector:
    if name == "random":
        return RandomSelector()
    if name == "kcenter":
        return KCenterSelector(oversample=oversample)
    if name not in SELECTORS:
        raise ValueError(f"unknown query selection {name!r}; choose from {', '.join(SELECTORS)}")
    if ensemble is None:
        raise ValueError(f"query selection {name!r} needs a reward ensemble")
    uncertainty = DisagreementSelector if name.endswith("disagreement") else EntropySelector
    rule = uncertainty(ensemble, oversample=oversample)
    return KCenterSelector(oversample=oversample, prefilter=rule) if name.startswith("kcenter") else rule
