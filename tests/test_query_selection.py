import tracemalloc

import gymnasium as gym
import numpy as np
import pytest

from prefrl import query_selection
from prefrl.frame_storage import FrameStackSegment, FrameStore
from prefrl.preference_dataset import PreferenceDataset
from prefrl.query_selection import (
    DisagreementSelector,
    EntropySelector,
    KCenterSelector,
    RandomSelector,
    make_selector,
)
from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Segment, SegmentPool


def pool_of(n, rng):
    pool = SegmentPool()
    pool.extend(
        Segment(np.full((3, 2), i, np.float32), np.zeros((3, 1), np.float32), np.zeros(3)) for i in range(n)
    )
    return pool


def ensemble():
    return RewardEnsemble.for_spaces(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (1,)))


def test_disagreement_keeps_the_pairs_members_disagree_on_most(rng, monkeypatch):
    ens = ensemble()
    selector = DisagreementSelector(ens, oversample=10)
    candidates = pool_of(50, rng).sample_pairs(100, rng)

    # Member k's P(left) = 0.5 ± spread, spread = (id of the left segment) / 100:
    # the higher the id, the more the members disagree.
    def fake_probs(obs, acts):
        spread = obs[:, 0, 0, 0] / 100
        return np.stack([0.5 + spread, 0.5 - spread, 0.5 + spread])

    monkeypatch.setattr(ens, "preference_probs", fake_probs)
    monkeypatch.setattr(SegmentPool, "sample_pairs", lambda self, n, rng: candidates[:n])
    chosen = selector.select(pool_of(50, rng), 10, rng)
    chosen_left = sorted(int(a.obs[0, 0]) for a, _ in chosen)
    best_left = sorted(int(a.obs[0, 0]) for a, _ in candidates)[-10:]
    assert chosen_left == best_left


def test_entropy_prefers_uncertain_mean_prediction(rng, monkeypatch):
    ens = ensemble()
    candidates = pool_of(20, rng).sample_pairs(30, rng)

    def fake_probs(obs, acts):
        p = np.where(obs[:, 0, 0, 0] < 5, 0.5, 0.99)  # left id < 5: maximally uncertain
        return np.stack([p, p, p])

    monkeypatch.setattr(ens, "preference_probs", fake_probs)
    monkeypatch.setattr(SegmentPool, "sample_pairs", lambda self, n, rng: candidates[:n])
    chosen = EntropySelector(ens, oversample=10).select(pool_of(20, rng), 3, rng)
    uncertain = sum(a.obs[0, 0] < 5 for a, _ in candidates)
    assert uncertain >= 3 and all(a.obs[0, 0] < 5 for a, _ in chosen)


def test_selectors_on_a_real_ensemble_return_distinct_pairs(rng):
    pool = pool_of(40, rng)
    for name in ("random", "disagreement", "entropy", "kcenter", "kcenter-disagreement", "kcenter-entropy"):
        pairs = make_selector(name, ensemble()).select(pool, 7, rng)
        assert len(pairs) == 7 and all(a is not b for a, b in pairs)
    assert RandomSelector().select(pool_of(1, rng), 5, rng) == []


def test_unknown_selector():
    with pytest.raises(ValueError, match="unknown query selection"):
        make_selector("clever", ensemble())


def test_candidates_are_scored_a_chunk_at_a_time_and_chosen_as_if_at_once(rng, monkeypatch):
    ens = ensemble()
    candidates = pool_of(50, rng).sample_pairs(100, rng)
    batches = []

    def fake_probs(obs, acts):
        batches.append(len(obs))
        spread = obs[:, 0, 0, 0] / 100
        return np.stack([0.5 + spread, 0.5 - spread, 0.5 + spread])

    monkeypatch.setattr(ens, "preference_probs", fake_probs)
    at_once = DisagreementSelector(ens).choose(candidates, 10)
    assert batches == [100]
    pair_bytes = 2 * candidates[0][0].obs.nbytes
    monkeypatch.setattr(query_selection, "SCORE_BYTES", 7 * pair_bytes)
    batches.clear()
    assert DisagreementSelector(ens).choose(candidates, 10) == at_once
    assert batches == [7] * 14 + [2]


def test_scoring_frame_stack_candidates_holds_one_chunk_of_their_observations_at_a_time(rng, monkeypatch):
    # App. A.2's segments: 25 steps of 4 stacked 84×84 frames, 1.4 MB of observations per pair.
    store = FrameStore((84, 84))
    frames = store.intern_stacks(rng.integers(0, 255, (1, 8, 84, 84), dtype=np.uint8))[0]
    segments = [
        FrameStackSegment(store, rng.choice(frames, (25, 4)), np.zeros((25, 1)), np.zeros(25))
        for _ in range(400)
    ]
    candidates = list(zip(segments[::2], segments[1::2]))  # 200 pairs: 282 MB of observations at once
    ens = ensemble()
    monkeypatch.setattr(ens, "preference_probs", lambda obs, acts: rng.random((3, len(obs))))
    tracemalloc.start()
    try:
        chosen = DisagreementSelector(ens).choose(candidates, 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(chosen) == 20
    # A chunk of 64 MB, and its pairs' arrays before stacking; at once, it would be 282 MB twice over.
    assert peak < 200 * 2**20


def segment_at(value):
    return Segment(np.full((3, 2), value, np.float32), np.zeros((3, 1), np.float32), np.zeros(3))


def test_kcenter_picks_the_candidates_farthest_from_what_was_labelled_and_from_each_other():
    # Pairs (v, v) for v in 0..9 and one outlier (50, 50); the labelled pairs sit at 0-4.
    candidates = [(segment_at(v), segment_at(v)) for v in range(10)] + [(segment_at(50), segment_at(50))]
    labelled = PreferenceDataset()
    for v in range(5):
        labelled.add(segment_at(v), segment_at(v), 1.0)
    chosen = KCenterSelector().choose(candidates, 3, labelled)
    values = [int(left.obs[0, 0]) for left, _ in chosen]
    # The outlier first; then 9 (farthest from 4 and from 50's neighbours); then 6 or 7, midway.
    assert values[:2] == [50, 9]
    assert values[2] in (6, 7)
    # Without the labelled set, the spread of the candidates alone decides after the first pick.
    unlabelled = [int(left.obs[0, 0]) for left, _ in KCenterSelector().choose(candidates, 3)]
    assert unlabelled == [0, 50, 9]


def test_kcenter_with_an_uncertainty_rule_chooses_among_its_more_uncertain_half(rng, monkeypatch):
    ens = ensemble()
    candidates = [(segment_at(v), segment_at(v + 1)) for v in range(20)]

    def fake_probs(obs, acts):  # members disagree on the left ids >= 10 only
        spread = np.where(obs[:, 0, 0, 0] >= 10, 0.4, 0.0)
        return np.stack([0.5 + spread, 0.5 - spread, np.full_like(spread, 0.5)])

    monkeypatch.setattr(ens, "preference_probs", fake_probs)
    chosen = make_selector("kcenter-disagreement", ens).choose(candidates, 4)
    assert len(chosen) == 4 and all(left.obs[0, 0] >= 10 for left, _ in chosen)
    assert len({int(left.obs[0, 0]) for left, _ in chosen}) == 4


def test_kcenter_refuses_frame_stacks_with_a_clear_error(rng):
    frames = Segment(np.zeros((3, 4, 8, 8), np.uint8), np.zeros((3, 1), np.float32), np.zeros(3))
    with pytest.raises(ValueError, match="vector observations"):
        KCenterSelector().choose([(frames, frames)] * 3, 1)
