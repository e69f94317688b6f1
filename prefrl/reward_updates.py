"""Reward-model updates off the agent's critical path (Christiano et al. 2017, §2.2 and App. A.2: the reward
predictor is trained asynchronously while the agent goes on).

An update is the work the loop does every ``reward_update_interval`` steps: fit the ensemble on the labels
so far, renormalise it on recent steps, and score candidate pairs to choose the next queries. It runs on a
private copy of the ensemble (the *shadow*); the *live* ensemble, the one the agent's reward comes from,
only changes in :meth:`RewardUpdater.take`, which the trainer calls between rollouts. The agent therefore
never sees a half-fitted ensemble, and the fit and the renormalisation arrive together.

What the update reads is fixed when it is submitted: the preference dataset is not changed while an update
runs (new answers wait for the next one; they are in the label store at once), and the renormalisation
sample and the candidate pairs are taken from the pool between rollouts. The candidates stay referenced by
the request, which the trainer holds, so a frame-stack segment's frames are released on the trainer's
thread, never on the worker's.

Cores: in ``background`` mode the worker is a thread whose torch ops run on ``fit_threads`` intra-op
threads beside the agent's (torch releases the GIL inside its ops). On a 2-core CPU the agent keeps one core
and the fitter gets the other; on a GPU machine the shadow lives on the run's device like the live one. With
``background=False`` an update runs inline in :meth:`submit`, exactly as before asynchronous updates
existed, so that a fixed seed reproduces a run.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prefrl.preference_dataset import PreferenceDataset
from prefrl.query_selection import make_selector
from prefrl.reward_model import FitStats, RewardEnsemble
from prefrl.segments import Pair


@dataclass
class UpdateRequest:
    """What one update works on, fixed when it is submitted.

    Attributes:
        step: the RL step the update was started at.
        epochs: epochs of the fit (0: no new labels, renormalise and score only).
        sample_size: pairs in each member's bootstrap sample (None: the usual bootstrap).
        norm_obs, norm_acts: steps to renormalise on, ``(N, *obs_shape)`` and ``(N, *act_shape)``.
        candidates: pairs to choose the next queries from.
        num_queries: how many of them to choose.
    """

    step: int
    epochs: int
    sample_size: int | None
    norm_obs: np.ndarray
    norm_acts: np.ndarray
    candidates: list[Pair]
    num_queries: int


@dataclass
class UpdateResult:
    """A finished update: the ensemble's new state, its fit statistics and the chosen queries."""

    request: UpdateRequest
    state: dict[str, Any]
    stats: FitStats | None
    queries: list[Pair]
    seconds: float


class RewardUpdater:
    """Runs updates on a shadow copy of ``ensemble``, in a background thread or inline.

    Args:
        ensemble: the live ensemble; copied once, here, and again in :meth:`reset_from_live`.
        dataset: the preference dataset; the trainer adds to it only while :attr:`busy` is False.
        query_selection, oversample: the query-selection rule (:mod:`prefrl.query_selection`).
        rng: the updater's own generator (bootstrap samples, shuffles).
        fit_threads: torch intra-op threads for the update's work.
        background: run updates in a worker thread (True) or inline (False).
    """

    def __init__(
        self,
        ensemble: RewardEnsemble,
        dataset: PreferenceDataset,
        *,
        query_selection: str,
        oversample: int,
        rng: np.random.Generator,
        fit_threads: int,
        background: bool,
    ) -> None:
        self.live, self.dataset, self.rng = ensemble, dataset, rng
        self.fit_threads, self.background = fit_threads, background
        self.shadow = copy.deepcopy(ensemble)
        self.selector = make_selector(query_selection, self.shadow, oversample=oversample)
        self._request: UpdateRequest | None = None
        self._result: UpdateResult | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        """An update was submitted and its result not yet taken."""
        return self._request is not None

    @property
    def in_flight(self) -> UpdateRequest | None:
        """The submitted update, finished or not, whose result has not been taken."""
        return self._request

    def reset_from_live(self) -> None:
        """Make the shadow a copy of the live ensemble again (after pre-training or a resume)."""
        self._wait()
        self.shadow.restore(copy.deepcopy(self.live.state()))

    def submit(self, request: UpdateRequest) -> None:
        """Start an update; inline updates are finished when this returns."""
        if self.busy:
            raise RuntimeError("an update is already under way; take its result first")
        self._request, self._result, self._error = request, None, None
        if not self.background:
            self._run(request)
            return
        self._thread = threading.Thread(
            target=self._run, args=(request,), name="prefrl-reward-update", daemon=True
        )
        self._thread.start()

    def take(self, *, wait: bool = False) -> UpdateResult | None:
        """The finished update, swapped into the live ensemble; None while it runs (or with none submitted).

        Call between rollouts only: the live ensemble changes here, all at once.
        """
        if self._request is None:
            return None
        if wait:
            self._wait()
        elif self._thread is not None and self._thread.is_alive():
            return None
        self._thread = None
        if self._error is not None:
            error, self._error, self._request = self._error, None, None
            raise RuntimeError("the reward-model update failed") from error
        result = self._result
        assert result is not None
        self._request = self._result = None
        self.live.restore(result.state)
        return result

    def close(self) -> None:
        """Wait for an update under way and drop its result (the run stops)."""
        self._wait()
        self._request = self._result = self._error = None

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _run(self, request: UpdateRequest) -> None:
        start = time.perf_counter()
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.fit_threads)
        try:
            stats = None
            if request.epochs > 0:
                stats = self.shadow.fit(
                    self.dataset, epochs=request.epochs, rng=self.rng, sample_size=request.sample_size
                )
            self.shadow.normalize(request.norm_obs, request.norm_acts)
            queries = (
                self.selector.choose(request.candidates, request.num_queries) if request.num_queries else []
            )
            state = copy.deepcopy(self.shadow.state())
            self._result = UpdateResult(request, state, stats, queries, time.perf_counter() - start)
        except BaseException as err:  # handed to the trainer's thread by take()
            self._error = err
        finally:
            if not self.background:
                torch.set_num_threads(previous_threads)
