"""Tests for prefrl.cnn_reward: the paper's CNN reward predictor in the ensemble (App. A.2)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from prefrl.cnn_reward import CNNReward, FusedCNNEnsemble, cnn_ensemble, is_frame_stack_space
from prefrl.frame_storage import FramePreferenceDataset, FrameStackSegment, FrameStore

SIZE = 84
FRAMES = gym.spaces.Box(0, 255, (4, SIZE, SIZE), np.uint8)
TARGET_COLUMN = 52  # the target zone: every column from here to the right edge


def dot_segment(rng: np.random.Generator, store: FrameStore, length: int) -> FrameStackSegment:
    """A dot moving at constant speed; reward 1 for each step it spends in the (drawn) target zone."""
    pos, vel = rng.uniform(4, SIZE - 8, 2), rng.normal(0, 3.0, 2)
    frames, rewards = [], []
    for _ in range(length + 3):
        pos = np.clip(pos + vel, 2, SIZE - 6)
        img = np.zeros((SIZE, SIZE), np.uint8)
        img[:, TARGET_COLUMN:] = 60
        y, x = pos.astype(int)
        img[y : y + 4, x : x + 4] = 255
        frames.append(img)
        rewards.append(float(pos[1] + 2 >= TARGET_COLUMN))
    stacks = np.stack([np.stack(frames[t : t + 4]) for t in range(length)])
    ids = store.intern_stacks(stacks)
    segment = FrameStackSegment(store, ids, np.zeros(length, np.int64), np.array(rewards[3:], np.float32))
    store.release(ids)  # the segment holds its own references
    return segment


def oracle_pairs(rng: np.random.Generator, store: FrameStore, n: int, length: int) -> FramePreferenceDataset:
    data = FramePreferenceDataset(store=store)
    for _ in range(n):
        a, b = dot_segment(rng, store, length), dot_segment(rng, store, length)
        data.add(a, b, 0.5 if a.true_return == b.true_return else float(a.true_return > b.true_return))
    return data


def test_architecture_is_the_papers():
    net = CNNReward((4, 84, 84))
    convs = [m for m in net.convs if isinstance(m, nn.Conv2d)]
    layers = [(c.kernel_size[0], c.stride[0], c.out_channels) for c in convs]
    assert layers == [(7, 3, 16), (5, 2, 16), (3, 1, 16), (3, 1, 16)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.convs) == 4
    assert [m.p for m in net.convs if isinstance(m, nn.Dropout)] == [0.5] * 4
    assert [m.negative_slope for m in net.modules() if isinstance(m, nn.LeakyReLU)] == [0.01] * 5
    linears = [m for m in net.head if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(16 * 7 * 7, 64), (64, 1)]
    assert is_frame_stack_space(FRAMES) and not is_frame_stack_space(gym.spaces.Box(-1, 1, (17,)))


def test_reward_depends_on_observations_only_and_chunks_without_gradients(rng):
    net = CNNReward(chunk=7).eval()
    obs = torch.as_tensor(rng.integers(0, 255, (20, 4, 84, 84), dtype=np.uint8))
    with torch.no_grad():
        chunked = net(obs, torch.zeros(20, 6))
        whole = net._scores(obs)
        other_actions = net(obs, torch.ones(20, 6))
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(chunked, other_actions)
    assert chunked.shape == (20,)


def trained_looking_ensemble(device: str = "cpu"):
    """A CNN ensemble whose batch norms and output normalisation are away from their initial values."""
    ensemble = cnn_ensemble(FRAMES, gym.spaces.Discrete(6), device=device)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for norm in (m for m in ensemble.modules() if isinstance(m, nn.BatchNorm2d)):
            for tensor, low, high in [
                (norm.running_mean, -0.5, 0.5),
                (norm.running_var, 0.5, 2.0),
                (norm.weight, 0.5, 1.5),
                (norm.bias, -0.2, 0.2),
            ]:
                tensor.copy_(torch.empty(tensor.shape).uniform_(low, high, generator=generator))
        ensemble.out_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        ensemble.out_scale.copy_(torch.tensor([2.0, 0.5, 1.5]))
    return ensemble.eval()


def test_the_fused_network_gives_the_members_rewards_and_spread(rng):
    ensemble = trained_looking_ensemble()
    fused = FusedCNNEnsemble(ensemble)
    for n in (1, 16, 300):  # 300: past the chunk of 256
        obs, acts = rng.integers(0, 256, (n, 4, SIZE, SIZE), dtype=np.uint8), np.zeros(n, np.int64)
        members = ensemble.member_rewards(obs, acts)
        np.testing.assert_allclose(fused.members(obs, acts), members.T, atol=1e-5)
        np.testing.assert_allclose(fused(obs, acts), members.mean(0), atol=1e-5)
    floats = rng.uniform(0, 1, (5, 4, SIZE, SIZE)).astype(np.float32)  # pixels already scaled
    np.testing.assert_allclose(
        fused.members(floats, acts[:5]), ensemble.member_rewards(floats, acts[:5]).T, atol=1e-5
    )


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
    ],
)
def test_the_per_step_reward_is_the_fused_networks_and_a_change_drops_it(rng, device):
    ensemble = trained_looking_ensemble(device)
    obs, acts = rng.integers(0, 256, (16, 4, SIZE, SIZE), dtype=np.uint8), np.zeros(16, np.int64)
    reward, spread = ensemble.reward_and_spread(obs, acts)
    assert isinstance(ensemble._fast, FusedCNNEnsemble)
    members = ensemble.member_rewards(obs, acts)
    np.testing.assert_allclose(reward, members.mean(0), atol=1e-4)
    np.testing.assert_allclose(spread, members.std(0), atol=1e-4)
    ensemble.normalize(obs, acts)  # new normalisation: the fused copy is stale and goes
    assert ensemble._fast is None
    np.testing.assert_allclose(
        ensemble.reward(obs, acts), ensemble.member_rewards(obs, acts).mean(0), atol=1e-4
    )


def test_cnn_ensemble_learns_a_visible_reward_from_oracle_labels(rng):
    """> 90 % held-out accuracy on a pixel task whose reward is visible: a dot that should reach a target."""
    store = FrameStore((SIZE, SIZE))
    train, test = oracle_pairs(rng, store, 400, 4), oracle_pairs(rng, store, 300, 4)
    ensemble = cnn_ensemble(FRAMES, gym.spaces.Discrete(2))  # the paper's settings: 3 members, dropout 0.5
    assert ensemble.ensemble_size == 3 and ensemble.output_std == 0.05
    untrained_obs, untrained_acts, mu = test.batch(np.arange(len(test)))
    decided = mu != 0.5
    assert decided.sum() > 100
    stats = ensemble.fit(train, epochs=6, rng=rng)
    probs = ensemble.preference_probs(untrained_obs, untrained_acts).mean(0)
    accuracy = ((probs > 0.5) == (mu > 0.5))[decided].mean()
    assert accuracy > 0.9, accuracy
    assert stats.val_accuracy > 0.8 and np.isfinite(stats.l2_coef)
    # Normalised to std 0.05 per member (App. A), the mean is the env's per-step reward.
    steps, acts = train.all_steps(2_000, rng)
    ensemble.normalize(steps, acts)
    np.testing.assert_allclose(ensemble.member_rewards(steps, acts).std(1), 0.05, rtol=1e-3)
    assert ensemble.reward(steps[:16], acts[:16]).shape == (16,)
