import numpy as np
import pytest

from prefrl.segments import SegmentCollector, SegmentPool, default_segment_length


def make_collector(num_envs=2, length=3, stride=None):
    return SegmentCollector(
        num_envs=num_envs,
        segment_length=length,
        obs_shape=(2,),
        obs_dtype=np.float32,
        act_shape=(1,),
        act_dtype=np.float32,
        state_dim=4,
        stride=stride,
    )


def step(c, t, dones=(False, False)):
    obs = np.array([[t, 0], [t, 1]], np.float32)
    return c.add(
        obs,
        np.full((2, 1), t, np.float32),
        np.array([t, -t], np.float32),
        np.array(dones),
        np.full((2, 4), t, np.float64),
    )


def test_segments_are_consecutive_steps_of_one_env():
    c = make_collector()
    out = [s for t in range(7) for s in step(c, t)]
    assert len(out) == 4  # two full segments per env
    first = out[0]
    np.testing.assert_array_equal(first.obs[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(first.true_rewards, [0, 1, 2])
    np.testing.assert_array_equal(first.states[:, 0], [0, 1, 2])
    assert first.true_return == 3


def test_episode_end_discards_partial_segment():
    c = make_collector()
    step(c, 0)
    step(c, 1, dones=(True, False))  # env 0's 2-step partial is dropped; env 1 goes on
    out = step(c, 2)
    assert len(out) == 1 and out[0].obs[0, 1] == 1  # only env 1 finished
    assert [len(s) for t in (3, 4) for s in step(c, t)] == [3]  # env 0 finishes steps 2..4
    # A segment never contains the step after a done.


def test_stride_skips_steps_between_segments():
    c = make_collector(stride=5)
    out = [s for t in range(13) for s in step(c, t) if s.obs[0, 1] == 0]
    assert [list(s.obs[:, 0]) for s in out] == [[0, 1, 2], [5, 6, 7], [10, 11, 12]]


@pytest.mark.parametrize("stride", [None, 4])
def test_collector_matches_a_per_env_reference_through_episode_ends(rng, stride):
    """Envs in step (the fast path), thrown out of step by one env's episode end, back in step when all end
    together: the segments are exactly those a plain per-env reading of the stream gives."""
    num_envs, length = 3, 3
    c = make_collector(num_envs=num_envs, length=length, stride=stride)
    stride = stride or length
    windows: list[list[int]] = [[] for _ in range(num_envs)]  # steps of the current window, per env
    since_start = [0] * num_envs  # steps since the env's episode (or last window) began
    expected, got = [], []
    for t in range(300):
        kind = rng.integers(0, 10)
        dones = np.zeros(num_envs, bool) if kind < 7 else (np.ones(num_envs, bool) if kind == 7 else None)
        if dones is None:
            dones = rng.random(num_envs) < 0.5
        obs = np.array([[t, i] for i in range(num_envs)], np.float32)
        got += [(int(seg.obs[0, 1]), seg.obs[:, 0].tolist()) for seg in c.add(
            obs, np.full((num_envs, 1), t, np.float32), np.full(num_envs, t, np.float32), dones,
            np.full((num_envs, 4), t, np.float64),
        )]  # fmt: skip
        for i in range(num_envs):
            if since_start[i] < length:
                windows[i].append(t)
            since_start[i] += 1
            if since_start[i] == length:
                expected.append((i, [float(x) for x in windows[i]]))
            if since_start[i] == stride:
                windows[i], since_start[i] = [], 0
            if dones[i]:
                windows[i], since_start[i] = [], 0
    assert got == expected and len(got) > 50


def test_segments_do_not_alias_buffers():
    c = make_collector(length=1)
    a = step(c, 1)[0]
    step(c, 2)
    assert a.obs[0, 0] == 1


def test_pool_is_bounded_and_pairs_are_distinct(rng):
    c = make_collector(length=1)
    pool = SegmentPool(capacity=10)
    for t in range(50):
        pool.extend(step(c, t))
    assert len(pool) == 10
    pairs = pool.sample_pairs(200, rng)
    assert len(pairs) == 200 and all(a is not b for a, b in pairs)
    obs, acts = pool.observations(5, rng)
    assert obs.shape == (5, 2) and acts.shape == (5, 1)


def test_policy_aligned_pairs_come_from_the_newest_segments_only(rng):
    c = make_collector(length=1)
    pool = SegmentPool(capacity=100)
    for t in range(100):
        pool.extend(step(c, t))
    newest = {id(pool[i]) for i in range(90, 100)}
    pairs = pool.sample_pairs(500, rng, newest=10)
    assert len(pairs) == 500 and all(a is not b for a, b in pairs)
    assert {id(s) for pair in pairs for s in pair} == newest  # all ten drawn, none older
    assert pool.sample_pairs(5, rng, newest=1) == []  # a window of one segment makes no pair


def test_disjoint_pairs_label_every_segment_once_then_top_up(rng):
    c = make_collector(length=1)
    pool = SegmentPool(capacity=100)
    for t in range(10):
        pool.extend(step(c, t))  # 20 segments
    pairs = pool.disjoint_pairs(10, rng)
    used = [id(s) for pair in pairs for s in pair]
    assert len(pairs) == 10 and len(set(used)) == 20  # a perfect matching: every segment once
    pairs = pool.disjoint_pairs(14, rng)  # more than the pool can match: 10 disjoint, 4 uniform
    assert len(pairs) == 14 and all(a is not b for a, b in pairs)
    assert len({id(s) for pair in pairs[:10] for s in pair}) == 20
    assert SegmentPool().disjoint_pairs(3, rng) == []


def test_default_segment_length_follows_paper_range():
    assert default_segment_length(0.05) == 30  # 1.5 s
    assert default_segment_length(0.008) == 60  # Hopper: clamped to 60
    assert default_segment_length(0.5) == 15
    with pytest.raises(ValueError):
        make_collector(length=0)
