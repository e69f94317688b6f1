import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from prefrl.preference_dataset import PreferenceDataset
from prefrl.reward_model import FitProgress, MLPReward, RewardEnsemble, UncertaintyBonus
from prefrl.segments import Segment

OBS, ACT = gym.spaces.Box(-1, 1, (6,)), gym.spaces.Box(-1, 1, (2,))


def linear_task(rng, n_train=500, n_test=300, length=20, constant_feature=None):
    w = rng.normal(size=6)

    def seg():
        obs = rng.normal(size=(length, 6)).astype(np.float32)
        if constant_feature is not None:
            obs[:, constant_feature] = 0.0
        return Segment(obs, rng.uniform(-1, 1, (length, 2)).astype(np.float32), (obs @ w).astype(np.float32))

    train, test = PreferenceDataset(), PreferenceDataset()
    for data, n in ((train, n_train), (test, n_test)):
        for _ in range(n):
            a, b = seg(), seg()
            data.add(a, b, 1.0 if a.true_return > b.true_return else 0.0)
    return train, test


def fitted_ensemble(rng, *, n_train, epochs, steps, normalize=True):
    """An ensemble fitted on the linear task, and ``steps`` of its steps (normalised on them by default)."""
    train, _ = linear_task(rng, n_train=n_train)
    ens = RewardEnsemble.for_spaces(OBS, ACT)
    ens.fit(train, epochs=epochs, rng=rng)
    obs, acts = train.all_steps(steps, rng)
    if normalize:
        ens.normalize(obs, acts)
    return ens, obs, acts


def test_oracle_labels_drive_held_out_accuracy_above_90_percent(rng):
    train, test = linear_task(rng)
    ens = RewardEnsemble.for_spaces(OBS, ACT)
    stats = ens.fit(train, epochs=15, rng=rng)
    obs, acts, mu = test.batch(np.arange(len(test)))
    accuracy = ((ens.preference_probs(obs, acts).mean(0) > 0.5) == (mu > 0.5)).mean()
    assert accuracy > 0.9
    assert stats.val_accuracy > 0.8 and stats.num_pairs == 500


def test_untrained_model_is_near_chance(rng):
    _, test = linear_task(rng)
    ens = RewardEnsemble.for_spaces(OBS, ACT)
    obs, acts, mu = test.batch(np.arange(len(test)))
    accuracy = ((ens.preference_probs(obs, acts).mean(0) > 0.5) == (mu > 0.5)).mean()
    assert 0.2 < accuracy < 0.8  # the test above is not passed by construction


def test_normalization_gives_zero_mean_unit_std_and_fast_path_matches_torch(rng):
    train, _ = linear_task(rng, n_train=100)
    ens = RewardEnsemble.for_spaces(OBS, ACT, output_std=0.05)
    ens.fit(train, epochs=2, rng=rng)
    obs, acts = train.all_steps(4000, rng)
    ens.normalize(obs, acts)
    members = ens.member_rewards(obs, acts)
    np.testing.assert_allclose(members.mean(1), 0, atol=1e-4)
    np.testing.assert_allclose(members.std(1), 0.05, rtol=1e-3)
    np.testing.assert_allclose(ens.reward(obs, acts), members.mean(0), rtol=1e-4, atol=1e-5)


def test_the_members_spread_on_the_fast_path_is_torchs(rng):
    ens, obs, acts = fitted_ensemble(rng, n_train=100, epochs=2, steps=2000)
    reward, spread = ens.reward_and_spread(obs, acts)
    assert ens._fast is not None  # the numpy path answered
    members = ens.member_rewards(obs, acts)
    np.testing.assert_allclose(reward, members.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(spread, members.std(0), rtol=1e-4, atol=1e-5)
    assert spread.min() >= 0 and spread.mean() > 0.01  # bootstrapped members do disagree


def test_the_uncertainty_bonus_pays_the_spread_with_a_fading_weight(rng):
    ens, obs, acts = fitted_ensemble(rng, n_train=100, epochs=2, steps=500, normalize=False)
    reward, spread = ens.reward_and_spread(obs, acts)
    bonus = UncertaintyBonus(ens, beta=0.5, decay=1e-4)
    np.testing.assert_allclose(bonus(obs, acts), reward + 0.5 * spread, rtol=1e-6)
    bonus.step = 10_000
    assert bonus.beta_now == pytest.approx(0.5 * (1 - 1e-4) ** 10_000)  # about 0.18
    np.testing.assert_allclose(bonus(obs, acts), reward + bonus.beta_now * spread, rtol=1e-6)
    bonus.step = 10**8
    np.testing.assert_allclose(bonus(obs, acts), ens.reward(obs, acts), rtol=1e-4, atol=1e-5)


def test_an_observation_only_reward_ignores_actions_and_still_learns(rng):
    train, test = linear_task(rng)  # the true reward is a function of the observation alone
    ens = RewardEnsemble.for_spaces(OBS, ACT, use_actions=False)
    assert all(member.in_mean.numel() == 6 for member in ens.members)  # no action inputs at all
    ens.fit(train, epochs=15, rng=rng)
    obs, acts, mu = test.batch(np.arange(len(test)))
    accuracy = ((ens.preference_probs(obs, acts).mean(0) > 0.5) == (mu > 0.5)).mean()
    assert accuracy > 0.9
    steps, actions = train.all_steps(500, rng)
    other = rng.uniform(-1, 1, actions.shape).astype(np.float32)
    fast = ens.reward(steps, actions)  # the numpy path the wrapper uses every step
    np.testing.assert_array_equal(fast, ens.reward(steps, other))
    np.testing.assert_allclose(ens.member_rewards(steps, other).mean(0), fast, rtol=1e-4, atol=1e-5)
    with_actions = RewardEnsemble.for_spaces(OBS, ACT)
    assert not np.allclose(with_actions.reward(steps, actions), with_actions.reward(steps, other))


def test_a_feature_the_labels_never_varied_cannot_move_the_reward(rng):
    # The double pendulum's rail force: 0 in every labelled step, up to 10 once the cart hits the rail.
    train, _ = linear_task(rng, n_train=200, constant_feature=5)
    ens = RewardEnsemble.for_spaces(OBS, ACT)
    ens.fit(train, epochs=3, rng=rng)
    steps, actions = train.all_steps(500, rng)
    ens.normalize(steps, actions)
    pushed = steps.copy()
    pushed[:, 5] = 10.0
    np.testing.assert_allclose(ens.reward(pushed, actions), ens.reward(steps, actions), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        ens.member_rewards(pushed, actions), ens.member_rewards(steps, actions), atol=1e-5
    )


def test_a_feature_far_outside_the_labelled_range_counts_as_ten_standard_deviations(rng):
    ens, steps, actions = fitted_ensemble(rng, n_train=200, epochs=3, steps=500)
    member = ens.members[0]
    far, at_clip = steps[:50].copy(), steps[:50].copy()
    far[:, 2] = 1e6
    at_clip[:, 2] = float(member.in_mean[2] + 10 * member.in_std[2])
    fast = ens.reward(far, actions[:50])  # the numpy path the wrapper uses every step
    np.testing.assert_allclose(fast, ens.reward(at_clip, actions[:50]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ens.member_rewards(far, actions[:50]).mean(0), fast, rtol=1e-4, atol=1e-4)
    assert np.abs(fast).max() < 100  # unclipped, 1e6 standard deviations would give ~1e5


def test_adaptive_l2_rises_when_validation_loss_runs_away(rng):
    # Random labels: the model can only overfit, so validation loss exceeds 1.5x training loss.
    train, _ = linear_task(rng, n_train=200)
    noisy = PreferenceDataset()
    obs, acts, _ = train.batch(np.arange(len(train)))
    for i in range(len(train)):
        noisy.add(
            Segment(obs[i, 0], acts[i, 0], np.zeros(20)),
            Segment(obs[i, 1], acts[i, 1], np.zeros(20)),
            float(rng.integers(0, 2)),
        )
    ens = RewardEnsemble.for_spaces(OBS, ACT, lr=3e-3)
    start = ens.l2_coefs[0]
    ens.fit(noisy, epochs=30, rng=rng)
    assert max(ens.l2_coefs) > start


def test_with_no_l2_the_penalty_stays_off_however_the_validation_goes(rng):
    """--reward-l2 0, B-Pref's reward training: the adaptation multiplies, so 0 stays 0."""
    train, _ = linear_task(rng, n_train=60)  # few pairs: validation loss runs above 1.5x training loss
    ens = RewardEnsemble.for_spaces(OBS, ACT, lr=3e-3, l2_coef=0.0)
    stats = ens.fit(train, epochs=30, rng=rng)
    assert ens.l2_coefs == [0.0, 0.0, 0.0] and stats.l2_coef == 0.0


def test_with_no_validation_share_every_member_learns_from_every_pair_and_l2_stays_as_set(rng):
    """--reward-validation-share 0, as B-Pref trains: nothing held out, so nothing to adapt L2 to."""
    train, _ = linear_task(rng, n_train=60)
    ens = RewardEnsemble.for_spaces(OBS, ACT, lr=3e-3, l2_coef=1e-3, validation_share=0.0)
    progress = FitProgress.start(train.held_out(3, share=0.0), 30, rng)
    stats = ens.fit(train, epochs=30, rng=rng)
    assert ens.l2_coefs == [1e-3] * 3 and math.isnan(stats.val_loss) and math.isnan(stats.val_accuracy)
    # a bootstrap sample of all 60 pairs: pairs a 1/e hold-out would keep from every member get drawn
    held = train.held_out(3)
    assert not any(len(v) for v in progress.val_idx)
    assert all(set(t) & set(np.flatnonzero(held[:, k])) for k, t in enumerate(progress.train_idx))
    with pytest.raises(ValueError, match="validation share"):
        RewardEnsemble.for_spaces(OBS, ACT, validation_share=1.0)


def test_tanh_members_learn_and_the_fast_path_computes_them_as_torch_does(rng):
    train, test = linear_task(rng)
    ens = RewardEnsemble.for_spaces(OBS, ACT, activation="tanh")
    assert all(isinstance(m.net[1], torch.nn.Tanh) for m in ens.members)
    ens.fit(train, epochs=15, rng=rng)
    obs, acts, mu = test.batch(np.arange(len(test)))
    assert ((ens.preference_probs(obs, acts).mean(0) > 0.5) == (mu > 0.5)).mean() > 0.9
    steps, actions = train.all_steps(2000, rng)
    ens.normalize(steps, actions)
    reward, spread = ens.reward_and_spread(steps, actions)
    assert ens._fast is not None  # the numpy path answered, with tanh units
    members = ens.member_rewards(steps, actions)
    np.testing.assert_allclose(reward, members.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(spread, members.std(0), rtol=1e-4, atol=1e-5)
    leaky = RewardEnsemble.for_spaces(OBS, ACT)
    leaky.load_state_dict(ens.state_dict())  # the same weights with App. A's units give other rewards
    assert not np.allclose(leaky.reward(steps, actions), reward, atol=1e-3)
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        RewardEnsemble.for_spaces(OBS, ACT, activation="relu")


def test_the_run_spec_gives_the_reward_ensemble_its_units(tmp_path):
    from prefrl.config import TrainConfig
    from prefrl.observations import VectorObservations
    from prefrl.spec import ConfigError, resolve

    venv = type("Spaces", (), {"observation_space": OBS, "action_space": ACT})()
    for given, unit in ((None, torch.nn.LeakyReLU), ("tanh", torch.nn.Tanh)):
        settings = {} if given is None else {"reward_activation": given}
        spec = resolve(TrainConfig(env="Pendulum-v1", run_dir=tmp_path / "run", **settings))
        ensemble = VectorObservations(spec).ensemble(venv)  # type: ignore[arg-type]
        assert all(isinstance(m.net[1], unit) for m in ensemble.members)
    message = "unknown reward activation 'relu'; choose one of: leaky-relu, tanh"
    with pytest.raises(ConfigError, match=message):
        resolve(TrainConfig(env="Pendulum-v1", run_dir=tmp_path / "run", reward_activation="relu"))  # type: ignore[arg-type]


def test_the_run_spec_gives_the_reward_ensemble_its_l2_and_validation_share(tmp_path):
    from prefrl.config import TrainConfig
    from prefrl.observations import VectorObservations
    from prefrl.spec import resolve

    venv = type("Spaces", (), {"observation_space": OBS, "action_space": ACT})()
    for given, expected in ((None, 1e-4), (0.0, 0.0)):
        settings = {} if given is None else {"reward_l2": given}
        spec = resolve(TrainConfig(env="Pendulum-v1", run_dir=tmp_path / "run", **settings))
        assert VectorObservations(spec).ensemble(venv).l2_coefs == [expected] * 3  # type: ignore[arg-type]
    for share, expected_share in ((None, 1 / math.e), (0.0, 0.0), (0.2, 0.2)):
        config = TrainConfig(env="Pendulum-v1", run_dir=tmp_path / "run", reward_validation_share=share)
        ensemble = VectorObservations(resolve(config)).ensemble(venv)  # type: ignore[arg-type]
        assert ensemble.validation_share == pytest.approx(expected_share)


def test_new_answers_are_scored_before_the_fit_that_learns_them_even_with_nothing_held_out(rng):
    """FitStats.fresh_accuracy: a prequential accuracy on the pairs new since the last fit, as the model
    stood before it trained on them; the one figure of prediction a run that holds nothing out has."""
    train, test = linear_task(rng, n_train=200, n_test=60)
    ens = RewardEnsemble.for_spaces(OBS, ACT, lr=3e-3, validation_share=0.0)
    first = ens.fit(train, epochs=15, rng=rng)
    assert math.isnan(first.fresh_accuracy) and first.fresh_pairs == 0  # nothing fitted before
    obs, acts, mu = test.batch(np.arange(len(test)))
    expected = np.mean([((m > 0.5) == (mu > 0.5)).mean() for m in ens.preference_probs(obs, acts)])
    for i in range(len(test)):  # the 60 pairs arrive; the first fit never saw them
        train.add(*segments_of(test, i), float(mu[i]))
    second = ens.fit(train, epochs=2, rng=rng)
    assert second.fresh_pairs == 60 and second.fresh_accuracy == pytest.approx(expected)
    assert second.fresh_accuracy > 0.85 and math.isnan(second.val_accuracy)
    assert math.isnan(ens.fit(train, epochs=1, rng=rng).fresh_accuracy)  # nothing new since
    # a restored state remembers what was fitted; a state saved before that was kept scores nothing
    clone = RewardEnsemble.for_spaces(OBS, ACT, validation_share=0.0)
    clone.restore(copy.deepcopy(ens.state()))
    assert np.array_equal(clone.fitted_keys, train.keys)
    old_state = {k: v for k, v in ens.state().items() if k != "fitted_keys"}
    clone.restore(old_state)
    assert clone.fitted_keys is None
    assert math.isnan(clone.fit(train, epochs=1, rng=rng).fresh_accuracy)
    assert np.array_equal(clone.fitted_keys, train.keys)


def segments_of(data: PreferenceDataset, i: int) -> tuple[Segment, Segment]:
    obs, acts, _ = data.batch(np.array([i]))
    zeros = np.zeros(obs.shape[2], dtype=np.float32)
    return Segment(obs[0, 0], acts[0, 0], zeros), Segment(obs[0, 1], acts[0, 1], zeros)


def test_equal_labels_train_toward_one_half(rng):
    train, _ = linear_task(rng, n_train=200)
    obs, acts, mu = train.batch(np.arange(len(train)))
    equal = PreferenceDataset()
    for i in range(len(train)):
        equal.add(
            Segment(obs[i, 0], acts[i, 0], np.zeros(20)), Segment(obs[i, 1], acts[i, 1], np.zeros(20)), 0.5
        )
    confident = RewardEnsemble.for_spaces(OBS, ACT)
    confident.fit(train, epochs=15, rng=rng)
    indifferent = RewardEnsemble.for_spaces(OBS, ACT)
    indifferent.fit(equal, epochs=15, rng=rng)
    spread = lambda ens: np.abs(ens.preference_probs(obs, acts).mean(0) - 0.5).mean()  # noqa: E731
    assert spread(indifferent) < 0.1 < spread(confident)


def test_save_load_round_trip(rng, tmp_path):
    train, _ = linear_task(rng, n_train=100)
    ens = RewardEnsemble.for_spaces(OBS, ACT)
    ens.fit(train, epochs=2, rng=rng)
    obs, acts = train.all_steps(500, rng)
    ens.normalize(obs, acts)
    ens.save(tmp_path / "rm.pt")
    other = RewardEnsemble.for_spaces(OBS, ACT)
    other.load(tmp_path / "rm.pt")
    np.testing.assert_allclose(other.reward(obs, acts), ens.reward(obs, acts), rtol=1e-6)
    assert other.l2_coefs == ens.l2_coefs and other.num_fits == 1
    assert np.array_equal(other.fitted_keys, train.keys)
    assert torch.load(tmp_path / "rm.pt", weights_only=True)["num_fits"] == 1  # safe to load one shared


def test_discrete_actions_are_one_hot(rng):
    ens = RewardEnsemble.for_spaces(OBS, gym.spaces.Discrete(3))
    assert isinstance(ens.members[0], MLPReward)
    out = ens.reward(rng.normal(size=(4, 6)).astype(np.float32), np.array([0, 1, 2, 1]))
    assert out.shape == (4,)


def test_fit_rejects_empty_dataset(rng):
    with pytest.raises(ValueError, match="empty"):
        RewardEnsemble.for_spaces(OBS, ACT).fit(PreferenceDataset(), epochs=1, rng=rng)


def test_dataset_keeps_newest_pairs(rng):
    data = PreferenceDataset(max_size=3)
    for i in range(5):
        seg = Segment(np.full((2, 6), i, np.float32), np.zeros((2, 2), np.float32), np.zeros(2))
        data.add(seg, seg, i % 2)
    obs, _, mu = data.batch(np.arange(3))
    assert len(data) == 3 and sorted(obs[:, 0, 0, 0]) == [2, 3, 4]


def test_an_interrupted_fit_goes_on_exactly_where_it_stopped(rng):
    """Interrupting a fit after 8 member-epochs and going on from its saved progress, model state and RNG
    gives the same model as the uninterrupted fit (Atari's pre-training takes hours: it must survive a
    kill)."""

    train, test = linear_task(rng, n_train=120, n_test=50)

    def fresh(seed_rng: int) -> tuple[RewardEnsemble, np.random.Generator]:
        torch.manual_seed(0)
        return RewardEnsemble.for_spaces(OBS, ACT), np.random.default_rng(seed_rng)

    whole, whole_rng = fresh(5)
    epochs_seen = []
    whole.fit(train, epochs=6, rng=whole_rng, on_epoch=lambda p: epochs_seen.append(list(p.epochs_done)))
    assert epochs_seen[-1] == [6, 6, 6] and len(epochs_seen) == 18

    class Killed(Exception):
        pass

    saved = {}

    def kill_after_eight(progress):
        if sum(progress.epochs_done) == 8:  # member 0 done, member 1 two epochs in
            saved.update(
                state=copy.deepcopy(part.state()),
                progress=copy.deepcopy(progress),
                rng=copy.deepcopy(part_rng.bit_generator.state),
            )
            raise Killed

    part, part_rng = fresh(5)
    with pytest.raises(Killed):
        part.fit(train, epochs=6, rng=part_rng, on_epoch=kill_after_eight)
    resumed, resumed_rng = fresh(99)
    resumed.restore(saved["state"])
    resumed_rng.bit_generator.state = saved["rng"]
    assert saved["progress"].epochs_done == [6, 2, 0]
    calls = []
    stats = resumed.fit(train, epochs=6, rng=resumed_rng, progress=saved["progress"], on_epoch=calls.append)
    assert len(calls) == 4 + 6  # only the epochs that were missing
    obs, acts, _ = test.batch(np.arange(len(test)))
    flat_obs, flat_acts = obs.reshape(-1, 6), acts.reshape(-1, 2)
    np.testing.assert_allclose(
        resumed.member_rewards(flat_obs, flat_acts, normalized=False),
        whole.member_rewards(flat_obs, flat_acts, normalized=False),
        rtol=1e-5,
        atol=1e-6,
    )
    assert stats.epochs == 6 and np.isfinite(stats.val_accuracy)
    with pytest.raises(ValueError, match="fit progress"):
        resumed.fit(test, epochs=6, rng=resumed_rng, progress=saved["progress"])  # 50 pairs, not 120


def test_a_fixed_sample_size_bounds_the_pairs_each_member_trains_on(rng):
    """Atari refits train on a set number of pairs (App. A.2), however many labels the dataset holds."""
    train, _ = linear_task(rng, n_train=300, n_test=1)
    ens = RewardEnsemble.for_spaces(OBS, ACT)
    seen = []
    ens.fit(train, epochs=1, rng=rng, sample_size=40, on_epoch=lambda p: seen.append(p))
    progress = seen[-1]
    assert [len(t) for t in progress.train_idx] == [40, 40, 40]
    for val, sample in zip(progress.val_idx, progress.train_idx, strict=True):
        assert len(val) == 40 and not set(val) & set(sample)  # scores as many held-out pairs as it trains on
    held = train.held_out(3).sum(axis=0)
    many = []
    ens.fit(train, epochs=1, rng=rng, sample_size=2_000, on_epoch=many.append)
    for val, sample, n_held in zip(many[-1].val_idx, many[-1].train_idx, held, strict=True):
        # The whole held-out share stays out of training: 2,000 draws cover the other pairs and nothing else.
        assert len(val) == n_held and not set(val) & set(sample)
        assert len(set(sample)) == 300 - n_held
    default = []
    ens.fit(train, epochs=1, rng=rng, on_epoch=default.append)
    assert [len(t) for t in default[-1].train_idx] == list(300 - held)


def test_each_member_keeps_the_same_pairs_for_validation_at_every_fit(rng):
    """A warm-started member validated on pairs it trained on at an earlier fit would see its validation loss
    stay near its training loss, and the adaptive L2 would fall towards zero (App. A's 1.1-1.5x rule)."""
    train, _ = linear_task(rng, n_train=400, n_test=1)
    held = train.held_out(3)
    assert held.shape == (400, 3)
    assert abs(held.mean() - 1 / np.e) < 0.05  # about 1/e of the pairs, for each member its own
    assert not (held[:, 0] == held[:, 1]).all() and not (held[:, 1] == held[:, 2]).all()

    def copy_of(pairs: range, into: PreferenceDataset | None = None) -> PreferenceDataset:
        data = into if into is not None else PreferenceDataset()
        obs, acts, mu = train.batch(np.array(pairs))
        for i in range(len(pairs)):
            no_reward = np.zeros(20, np.float32)
            data.add(
                Segment(obs[i, 0], acts[i, 0], no_reward),
                Segment(obs[i, 1], acts[i, 1], no_reward),
                float(mu[i]),
            )
        return data

    first = copy_of(range(250))  # the first 250 pairs, as an earlier fit of the same run saw them
    rebuilt = copy_of(range(250))  # the same pairs again, as a resumed run reloads them from its store
    np.testing.assert_array_equal(first.held_out(3), rebuilt.held_out(3))
    ens = RewardEnsemble.for_spaces(OBS, ACT)
    early, late = [], []
    ens.fit(first, epochs=1, rng=rng, on_epoch=early.append)
    copy_of(range(250, 400), into=first)  # more labels arrive; the members go on training
    ens.fit(first, epochs=1, rng=rng, on_epoch=late.append)
    for k in range(3):
        before, after = set(early[-1].val_idx[k]), set(late[-1].val_idx[k])
        assert before <= after  # still held out
        assert not before & set(late[-1].train_idx[k]) and not after & set(early[-1].train_idx[k])
