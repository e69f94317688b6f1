import threading

import gymnasium as gym
import numpy as np
import pytest
import torch

from prefrl.preference_dataset import PreferenceDataset
from prefrl.reward_model import RewardEnsemble
from prefrl.reward_updates import RewardUpdater, UpdateRequest, on_cpu
from prefrl.segments import Segment
from tests.helpers import CUDA

OBS, ACT = gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (1,))


def segment(rng, length=5):
    obs = rng.normal(size=(length, 3)).astype(np.float32)
    return Segment(obs, rng.uniform(-1, 1, (length, 1)).astype(np.float32), obs[:, 0].astype(np.float64))


def labelled(rng, n=40):
    data = PreferenceDataset()
    for _ in range(n):
        left, right = segment(rng), segment(rng)
        data.add(left, right, float(left.true_return > right.true_return))
    return data


def request(rng, epochs=3, queries=4):
    obs = rng.normal(size=(500, 3)).astype(np.float32)
    candidates = [(segment(rng), segment(rng)) for _ in range(20)]
    return UpdateRequest(
        100, epochs, None, obs, rng.uniform(-1, 1, (500, 1)).astype(np.float32), candidates, queries
    )


def updater(live, data, background, seed=0, process=False):
    return RewardUpdater(
        live,
        data,
        query_selection="disagreement",
        oversample=5,
        rng=np.random.default_rng(seed),
        fit_threads=1,
        background=background,
        process=process,
    )


def test_the_live_ensemble_changes_only_when_the_result_is_taken():
    rng = np.random.default_rng(0)
    live = RewardEnsemble.for_spaces(OBS, ACT)
    release = threading.Event()
    work = updater(live, labelled(rng), background=True)
    fit = work.shadow.fit
    work.shadow.fit = lambda *a, **k: release.wait(30) and fit(*a, **k)  # type: ignore[method-assign]
    before = {k: v.clone() for k, v in live.state_dict().items()}
    job = request(rng)
    work.submit(job)
    assert work.busy and work.take() is None  # still fitting: nothing changes
    assert all((live.state_dict()[k] == v).all() for k, v in before.items())
    release.set()
    result = work.take(wait=True)
    assert result is not None and result.stats is not None and len(result.queries) == 4
    assert not work.busy and live.num_fits == 1
    assert any((live.state_dict()[k] != v).any() for k, v in before.items())
    probe = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    acts = np.zeros((50, 1), np.float32)
    np.testing.assert_allclose(live.reward(probe, acts), work.shadow.reward(probe, acts), rtol=1e-5)
    members = live.member_rewards(job.norm_obs, job.norm_acts)  # renormalised together with the fit
    np.testing.assert_allclose(members.std(axis=1), 1.0, rtol=1e-3)


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_inline_thread_and_process_updates_give_the_same_model_and_queries(device):
    torch.manual_seed(0)
    start = RewardEnsemble.for_spaces(OBS, ACT, device=device).state()
    outputs, chosen = [], []
    for background, process in ((False, False), (True, False), (True, True)):
        rng = np.random.default_rng(0)
        live = RewardEnsemble.for_spaces(OBS, ACT, device=device)
        live.restore(start)
        work = updater(live, labelled(rng), background=background, process=process)
        work.reset_from_live()
        job = request(rng)
        work.submit(job)
        result = work.take(wait=True)
        work.close()
        assert result is not None and result.stats is not None
        # The live ensemble stays whole on the run's device, a worker process's answer included.
        assert {t.device.type for t in [*live.parameters(), *live.buffers()]} == {device}
        outputs.append(live.reward(np.ones((4, 3), np.float32), np.zeros((4, 1), np.float32)))
        chosen.append([next(i for i, c in enumerate(job.candidates) if c is pair) for pair in result.queries])
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)
    np.testing.assert_allclose(outputs[0], outputs[2], rtol=1e-5)
    assert chosen[0] == chosen[1] == chosen[2] and len(chosen[0]) == 4


@pytest.mark.parametrize("process", [False, True])
def test_a_failed_update_is_raised_on_the_trainers_thread(process):
    rng = np.random.default_rng(0)
    work = updater(RewardEnsemble.for_spaces(OBS, ACT), PreferenceDataset(), background=True, process=process)
    work.submit(request(rng))  # an empty dataset cannot be fitted
    with pytest.raises(RuntimeError, match="update failed"):
        work.take(wait=True)
    assert not work.busy
    work.close()


def test_one_update_at_a_time():
    rng = np.random.default_rng(0)
    work = updater(RewardEnsemble.for_spaces(OBS, ACT), labelled(rng), background=False)
    work.submit(request(rng, epochs=0))  # renormalise and score only
    with pytest.raises(RuntimeError, match="already under way"):
        work.submit(request(rng))
    result = work.take()
    assert result is not None and result.stats is None and len(result.queries) == 4


def test_what_crosses_to_the_worker_is_on_the_cpu_and_restores_as_it_was():
    rng = np.random.default_rng(0)
    ensemble = RewardEnsemble.for_spaces(OBS, ACT)
    ensemble.fit(labelled(rng), epochs=2, rng=rng)  # the optimisers have moments to send along
    state = ensemble.state()
    moved = on_cpu(state)
    assert type(moved["model"]) is type(state["model"])
    assert moved["model"]._metadata == state["model"]._metadata
    again = RewardEnsemble.for_spaces(OBS, ACT)
    again.restore(moved)
    steps = rng.normal(size=(6, 3)).astype(np.float32), rng.uniform(-1, 1, (6, 1)).astype(np.float32)
    np.testing.assert_array_equal(again.member_rewards(*steps), ensemble.member_rewards(*steps))
    moments = [opt.state_dict()["state"].keys() for opt in (again.optimizers[0], ensemble.optimizers[0])]
    assert moments[0] == moments[1] and len(moments[0]) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_ensemble_moved_to_cuda_takes_its_normalisation_and_moments_along():
    rng = np.random.default_rng(0)
    ensemble = RewardEnsemble.for_spaces(OBS, ACT)
    ensemble.fit(labelled(rng), epochs=2, rng=rng)
    ensemble.to_device("cuda")
    moments = [
        v for opt in ensemble.optimizers for m in opt.state.values() for k, v in m.items() if k != "step"
    ]
    assert {t.device.type for t in [*ensemble.parameters(), *ensemble.buffers(), *moments]} == {"cuda"}
    ensemble.fit(labelled(rng), epochs=1, rng=rng)  # Adam steps with its moments where the weights are
    obs, acts = rng.normal(size=(500, 3)).astype(np.float32), rng.uniform(-1, 1, (500, 1)).astype(np.float32)
    ensemble.normalize(obs, acts)
    members = ensemble.member_rewards(obs, acts)
    np.testing.assert_allclose(members.mean(axis=1), 0.0, atol=1e-4)
