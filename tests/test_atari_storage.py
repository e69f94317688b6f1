"""Tests for prefrl.frame_storage and prefrl.atari: every 84×84 frame stored once (App. A.2)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import prefrl.frame_storage as fs
from prefrl.atari import FrameSharingRewardVecEnv
from prefrl.environment import make_vec_env
from prefrl.frame_storage import (
    FramePreferenceDataset,
    FrameSegmentPool,
    FrameStackCollector,
    FrameStackSegment,
    FrameStore,
)
from prefrl.label_store import LabelStore, segment_from_bytes, segment_to_bytes
from prefrl.preference_dataset import PreferenceDataset
from prefrl.segments import Segment

FRAME = (6, 5)


def stacked_stream(rng, n_envs, steps, k=4, done_every=None):
    """Observations ``(steps, n_envs, k, *FRAME)`` of per-env frame streams, restacked after each done."""
    obs = np.zeros((steps, n_envs, k, *FRAME), np.uint8)
    dones = np.zeros((steps, n_envs), bool)
    for i in range(n_envs):
        stack = np.repeat(rng.integers(0, 255, (1, *FRAME), dtype=np.uint8), k, 0)
        for t in range(steps):
            obs[t, i] = stack
            dones[t, i] = bool(done_every and (t + 1) % done_every[i] == 0)
            new = rng.integers(0, 255, FRAME, dtype=np.uint8)
            stack = np.repeat(new[None], k, 0) if dones[t, i] else np.concatenate([stack[1:], new[None]])
    return obs, dones


def test_store_keeps_each_distinct_frame_once_and_frees_unreferenced_ones(rng, monkeypatch):
    monkeypatch.setattr(fs, "BLOCK", 4)  # several blocks with few frames
    store = FrameStore(FRAME)
    frames = rng.integers(0, 255, (10, *FRAME), dtype=np.uint8)
    ids = np.array([store.intern(f) for f in frames])
    again = np.array([store.intern(f.copy()) for f in frames])
    np.testing.assert_array_equal(ids, again)
    assert len(store) == 10 and store.nbytes == 10 * 30
    np.testing.assert_array_equal(store.gather(ids[::-1]), frames[::-1])
    store.release(ids)
    assert len(store) == 10  # each still has its second reference
    store.release(again[:6])
    assert len(store) == 4
    reused = store.intern(rng.integers(0, 255, FRAME, dtype=np.uint8))
    assert reused == ids[:6].min()  # the lowest free slot is reused first
    np.testing.assert_array_equal(store.gather(ids[6:]), frames[6:])


def test_collector_cuts_the_stream_into_segments_that_rebuild_the_observations(rng):
    n_envs, length = 3, 5
    obs, dones = stacked_stream(rng, n_envs, 40, done_every=[100, 13, 7])
    store = FrameStore(FRAME)
    collector = FrameStackCollector(num_envs=n_envs, segment_length=length, store=store)
    segments: list[tuple[int, int, FrameStackSegment]] = []
    for t in range(len(obs)):
        acts = np.full(n_envs, t)
        for seg in collector.add(obs[t], acts, acts.astype(np.float32), dones[t], [("state", t)] * n_envs):
            end = int(seg.acts[-1])
            env = next(i for i in range(n_envs) if np.array_equal(seg.obs[-1], obs[end, i]))
            segments.append((env, end, seg))
    for env, end, seg in segments:
        np.testing.assert_array_equal(seg.obs, obs[end - length + 1 : end + 1, env])
        assert seg.ale_state == ("state", end - length + 1) and seg.states is None
    ends = {(env, end) for env, end, _ in segments}
    assert {(0, 4), (0, 9), (0, 39)} <= ends  # env 0: disjoint segments, no episode end
    assert (1, 12) in ends  # env 1's episode ends at step 12: its last 5 steps make one more segment
    assert (2, 6) in ends and not any(env == 2 and end == 3 for env, end, _ in segments)  # too short to keep
    # Within an episode each step adds one frame: a 5-step segment holds 5 + 3 distinct frames, the first
    # one of an episode 1 + 4 (its first stack repeats the reset frame).
    by_end = {(env, end): seg for env, end, seg in segments}
    assert len(np.unique(by_end[0, 9].frame_ids)) == length + 3
    assert len(np.unique(by_end[0, 4].frame_ids)) == length
    del segments, seg, by_end
    collector.reset()
    gc.collect()
    assert len(store) == 0  # every reference was given back


def test_frame_dataset_matches_the_core_dataset_and_shares_frames(rng):
    obs, dones = stacked_stream(rng, 1, 200)
    store = FrameStore(FRAME)
    collector = FrameStackCollector(num_envs=1, segment_length=10, store=store)
    segments = [s for t in range(200) for s in collector.add(obs[t], [t], [float(t)], dones[t])]
    frames_in_pool = len(store)
    core, shared = PreferenceDataset(max_size=8), FramePreferenceDataset(max_size=8, store=store)
    pairs = [(segments[i], segments[(3 * i + 1) % len(segments)], i % 2) for i in range(12)]
    for left, right, mu in pairs:
        plain = [Segment(s.obs, np.asarray(s.acts), s.true_rewards) for s in (left, right)]
        core.add(*plain, float(mu))
        shared.add(left, right, float(mu))
    assert len(store) == frames_in_pool  # the dataset adds no frame: it shares the pool's
    idx = np.array([5, 0, 7, 3])
    for a, b in zip(core.batch(idx), shared.batch(idx), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(core.mu, shared.mu)
    np.testing.assert_array_equal(core.true_returns, shared.true_returns)
    steps_obs, steps_acts = shared.all_steps(1000, rng)
    assert steps_obs.shape[1:] == (4, *FRAME) and len(steps_obs) == len(steps_acts)
    del segments, pairs, left, right, plain
    collector.reset()
    gc.collect()
    assert 0 < len(store) <= 8 * 2 * (10 + 3)  # only the 8 kept pairs' frames remain
    shared.clear()
    assert len(store) == 0


def test_a_pair_of_another_layout_is_refused_and_leaves_no_frame_behind(rng):
    obs, dones = stacked_stream(rng, 1, 40)
    store = FrameStore(FRAME)
    short = FrameStackCollector(num_envs=1, segment_length=10, store=store)
    long = FrameStackCollector(num_envs=1, segment_length=20, store=store)
    tens = [s for t in range(40) for s in short.add(obs[t], [t], [0.0], dones[t])]
    twenties = [s for t in range(40) for s in long.add(obs[t], [t], [0.0], dones[t])]
    data = FramePreferenceDataset(store=store)
    data.add(tens[0], tens[1], 1.0)
    references, frames = int(store._refs.sum()), len(store)
    with pytest.raises(ValueError, match="differs"):
        data.add(twenties[0], twenties[1], 0.0)
    assert len(data) == 1 and len(store) == frames
    assert int(store._refs.sum()) == references  # the refused pair's references were given back
    core = PreferenceDataset()
    core.add(*(Segment(s.obs, np.asarray(s.acts), s.true_rewards) for s in tens[:2]), 1.0)
    with pytest.raises(ValueError, match="differs"):
        core.add(*(Segment(s.obs, np.asarray(s.acts), s.true_rewards) for s in twenties[:2]), 0.0)


def test_segments_loaded_back_from_the_label_store_share_frames(rng):
    obs, dones = stacked_stream(rng, 1, 60)
    collector = FrameStackCollector(num_envs=1, segment_length=10, store=FrameStore(FRAME))
    segments = [s for t in range(60) for s in collector.add(obs[t], [t], [0.0], dones[t])]
    blobs = [segment_to_bytes(s) for s in segments[:4]]  # what the label store keeps
    loaded = [segment_from_bytes(b) for b in blobs + blobs]  # each pair read twice, as on resume
    data = FramePreferenceDataset()
    for i in range(0, len(loaded), 2):
        data.add(loaded[i], loaded[i + 1], 1.0)
    # 4 consecutive segments from an episode's start: the reset frame and one new frame per later step.
    assert data.store is not None and len(data.store) == 1 + 4 * 10 - 1
    np.testing.assert_array_equal(data.batch(np.array([1, 3]))[0][:, 1], [segments[3].obs] * 2)


def test_pool_observations_stay_within_the_memory_bound(rng, monkeypatch):
    monkeypatch.setattr(fs, "MAX_SAMPLE_BYTES", 4 * 30 * 20)  # 20 steps of (4, 6, 5) frames
    obs, dones = stacked_stream(rng, 1, 100)
    collector = FrameStackCollector(num_envs=1, segment_length=5, store=FrameStore(FRAME))
    pool = FrameSegmentPool(50)
    for t in range(100):
        pool.extend(collector.add(obs[t], [0], [0.0], dones[t]))
    sample, _ = pool.observations(20_000, rng)
    assert len(sample) == 20


@pytest.fixture(scope="module")
def pong_segments():
    """Segments of random play in Pong, cut by the Atari reward swap (one per env per 25 steps)."""
    venv = FrameSharingRewardVecEnv(make_vec_env("prefrl/PongNoScore-v0", 4, 0), None, segment_length=25)
    venv.reset()
    rng = np.random.default_rng(0)
    while len(venv.pool) < 160:
        venv.step(rng.integers(0, 6, 4))
    yield venv
    venv.close()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_memory_per_pair_shows_frames_are_shared(pong_segments):
    """A pair of 25-step segments holds at most 2·(25+3) frames, not 2·25·4 stacked ones (App. A.2)."""
    segments = [pong_segments.pool[i] for i in range(len(pong_segments.pool))]
    frame = 84 * 84
    naive_per_pair = 2 * 25 * 4 * frame  # PreferenceDataset: every stack stored whole
    store = FrameStore((84, 84))  # the dataset's own store, as after a resume: nothing shared with the pool
    data = FramePreferenceDataset(store=store)
    gc.collect()
    before = rss_bytes()
    pairs = [(segments[i], segments[(i * 7 + 3) % len(segments)]) for i in range(150)]
    for left, right in pairs:  # plain segments, as loaded back from the label store
        data.add(*(Segment(s.obs, s.acts, s.true_rewards) for s in (left, right)), 1.0)
    grown = rss_bytes() - before
    per_pair = store.nbytes / len(data)
    assert per_pair <= 2 * (25 + 3) * frame  # each frame once, whatever the pairs share
    assert per_pair < naive_per_pair / 3.5
    assert grown < 0.4 * naive_per_pair * len(data), (grown, naive_per_pair * len(data))
    # Segments reused across pairs cost nothing more: 150 pairs over 160 segments hold ≈ 160 segments' frames.
    assert len(store) <= len(segments) * (25 + 3)


def test_clips_for_people_carry_colour_frames_and_synthetic_queries_none(pong_segments, tmp_path):
    left, right = pong_segments.pool[10], pong_segments.pool[11]
    with LabelStore(tmp_path / "labels.sqlite") as store:
        plain = store.add_queries([(left, right)])[0]
        shown = store.add_queries(pong_segments.with_clips([(left, right)]))[0]
        for query in (plain, shown):
            assert query.left.uid == left.uid  # the same segments, so pairing rules still hold
        stored_plain = store.query(plain.query_id).left
        stored_shown = store.query(shown.query_id).left
    assert stored_plain.frames is None and stored_plain.states is None
    assert stored_shown.frames.shape == (25, 210, 160, 3) and stored_shown.frames.dtype == np.uint8
    assert stored_shown.states is None  # the labeling GUI encodes the frames as they are
    np.testing.assert_array_equal(stored_shown.obs, left.obs)
    assert left.frames is None  # the pool's segments keep no colour frames
