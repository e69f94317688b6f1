"""Label efficiency: how well a reward ensemble fitted on a source's first N labels orders held-out pairs.

What would an agent learn from a source's labels? Training an agent per source is slow (see
``benchmarks/teachers_online.py``); a cheaper measure is the reward model itself. The ensemble that training
uses (:class:`~prefrl.reward_model.RewardEnsemble`: 3 MLPs, bootstrap resamples, a 1/e validation hold-out
and adaptive L2; Christiano et al. 2017, App. A) is fitted on the source's first N answers, for
N = 25, 50, 100, 200, ..., all, and scored by how often it orders held-out pairs as the oracle does (the
larger true return; Lee et al. 2021). A pair the oracle calls equal is left out of the score.

The N count answers, not usable labels: a "can't tell" answer costs a person's time, so it counts, though it
carries no preference and is not trained on; "equally good" is trained as ½ : ½ (§2.2.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from prefrl.preference_dataset import PreferenceDataset, preference_to_mu
from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Pair, Segment
from prefrl.teachers import Preference

FIT_EPOCHS = 50
"""Epochs of each fit: as a run's first fit, on its initial labels (App. A.1 leaves it open; prefrl's
default)."""
FIRST_COUNT = 25


def label_counts(available: int, first: int = FIRST_COUNT) -> list[int]:
    """The N of the curve: ``first``, doubling (25, 50, 100, 200, ...) while below ``available``, then
    ``available`` itself ("all")."""
    if available < 1:
        return []
    counts, n = [], first
    while n < available:
        counts.append(n)
        n *= 2
    return [*counts, available]


def spaces_of(segment: Segment) -> tuple[gym.Space, gym.Space]:
    """Observation and action spaces that fit a segment (vector observations, continuous actions).

    Raises:
        ValueError: the observations are not vectors or the actions are not floats (give the env's own
            spaces to :func:`efficiency_curve` instead).
    """
    obs, acts = np.asarray(segment.obs), np.asarray(segment.acts)
    if obs.ndim != 2:
        raise ValueError(
            f"label efficiency fits the MLP ensemble of vector observations; these segments' observations "
            f"have shape {obs.shape[1:]} per step"
        )
    if not np.issubdtype(acts.dtype, np.floating):
        raise ValueError("segments with discrete actions need the env's action space (to one-hot them)")
    obs_space = gym.spaces.Box(-np.inf, np.inf, obs.shape[1:], np.float32)
    act_space = gym.spaces.Box(-np.inf, np.inf, acts.shape[1:], np.float32)
    return obs_space, act_space


@dataclass(frozen=True)
class EfficiencyPoint:
    """One point of a label-efficiency curve.

    Attributes:
        labels: N, the answers the fit was given (the source's first N).
        trained_on: those that carried a preference (left, right or equal).
        accuracy: held-out agreement with the oracle, the mean over fits; None when nothing was trainable.
        accuracies: per fit (each with its own seed).
    """

    labels: int
    trained_on: int
    accuracy: float | None
    accuracies: tuple[float, ...]


def held_out_accuracy(ensemble: RewardEnsemble, pairs: Sequence[Pair], truth: Sequence[Preference]) -> float:
    """Share of ``pairs`` that the ensemble (its members' mean P̂[left ≻ right]) orders as ``truth``.

    Pairs whose truth is neither LEFT nor RIGHT are left out; NaN when none is left.
    """
    decided = [i for i, t in enumerate(truth) if t in (Preference.LEFT, Preference.RIGHT)]
    if not decided:
        return float("nan")
    obs = np.stack([np.stack([pairs[i][0].obs, pairs[i][1].obs]) for i in decided])
    acts = np.stack([np.stack([pairs[i][0].acts, pairs[i][1].acts]) for i in decided])
    p_left = ensemble.preference_probs(obs, acts).mean(0)
    predicted = np.where(p_left > 0.5, Preference.LEFT, Preference.RIGHT)
    return float(np.mean(predicted == np.array([truth[i] for i in decided])))


def efficiency_curve(
    pairs: Sequence[Pair],
    answers: Sequence[Preference],
    held_out: Sequence[Pair],
    truth: Sequence[Preference],
    *,
    observation_space: gym.Space,
    action_space: gym.Space,
    counts: Sequence[int] | None = None,
    epochs: int = FIT_EPOCHS,
    ensemble_size: int = 3,
    fits: int = 1,
    seed: int = 0,
) -> list[EfficiencyPoint]:
    """Held-out accuracy of an ensemble fitted on the first N of ``answers``, for each N of ``counts``.

    Every source compared with the same ``seed`` gets the same initial weights and data splits for a given N
    and fit, so differences between sources come from their answers.

    Args:
        pairs: the labelled pairs, in the order the source answered them.
        answers: the source's answer to each of ``pairs``.
        held_out: pairs never trained on, and ``truth``, the oracle's answers to them.
        observation_space, action_space: the env's (e.g. from :func:`spaces_of`).
        counts: the N (default :func:`label_counts`); each is capped at ``len(answers)``.
        epochs: epochs of each fit.
        ensemble_size: members of the ensemble (App. A: 3).
        fits: fits per N, each with its own seed (their accuracies are averaged).
        seed: base seed of weights, bootstrap samples and validation splits.
    """
    if len(pairs) != len(answers):
        raise ValueError(f"{len(pairs)} pairs but {len(answers)} answers")
    if len(held_out) != len(truth):
        raise ValueError(f"{len(held_out)} held-out pairs but {len(truth)} oracle answers")
    wanted = label_counts(len(answers)) if counts is None else counts
    counts = sorted({min(int(n), len(answers)) for n in wanted if n > 0})
    points = []
    for n in counts:
        dataset = PreferenceDataset()
        for (left, right), answer in zip(pairs[:n], answers[:n]):
            if answer != Preference.SKIP:
                dataset.add(left, right, preference_to_mu(answer))
        accuracies: list[float] = []
        for fit in range(fits if len(dataset) else 0):
            with torch.random.fork_rng(devices=[]):  # the initial weights, without touching global state
                torch.manual_seed(int(np.random.default_rng([seed, fit]).integers(2**31)))
                ensemble = RewardEnsemble.for_spaces(
                    observation_space, action_space, ensemble_size=ensemble_size
                )
            ensemble.fit(dataset, epochs=epochs, rng=np.random.default_rng([seed, fit, n]))
            accuracies.append(held_out_accuracy(ensemble, held_out, truth))
        accuracy = float(np.mean(accuracies)) if accuracies else None
        points.append(EfficiencyPoint(n, len(dataset), accuracy, tuple(accuracies)))
    return points
