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
and the fitter gets the other; on a GPU machine the shadow lives on the run's device like the live one (a
worker process moves its own copy there; what crosses between the processes travels on the CPU). With
``background=False`` an update runs inline in :meth:`submit`, exactly as before asynchronous updates
existed, so that a fixed seed reproduces a run.
"""

from __future__ import annotations

import copy
import multiprocessing
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from prefrl.preference_dataset import PreferenceDataset
from prefrl.query_selection import make_selector
from prefrl.reward_model import FitStats, RewardEnsemble
from prefrl.segments import Pair, Segment


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
        background: run updates beside the agent (True) or inline (False).
        process: run background updates in a worker process rather than a thread. A small MLP's fit is
            mostly Python, which holds the GIL a thread would share with the agent's own Python loop; a
            process shares nothing and needs the dataset sent along (cheap for vectors, not for frames,
            whose CNN ops release the GIL anyway).
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
        process: bool = False,
    ) -> None:
        self.live, self.dataset, self.rng = ensemble, dataset, rng
        self.fit_threads, self.background = fit_threads, background
        self.shadow = copy.deepcopy(ensemble)
        self.selector = make_selector(query_selection, self.shadow, oversample=oversample)
        self._request: UpdateRequest | None = None
        self._result: UpdateResult | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._future: Future[Any] | None = None
        self._pool: ProcessPoolExecutor | None = None
        if background and process:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_start,
                initargs=(
                    copy.deepcopy(self.shadow).to_device("cpu"),
                    str(self.shadow.device),
                    query_selection,
                    oversample,
                    fit_threads,
                ),
            )

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
        if self._pool is not None:
            self._pool.submit(_worker_reset, on_cpu(self.live.state())).result()

    def submit(self, request: UpdateRequest) -> None:
        """Start an update; inline updates are finished when this returns."""
        if self.busy:
            raise RuntimeError("an update is already under way; take its result first")
        self._request, self._result, self._error = request, None, None
        if not self.background:
            self._run(request)
            return
        if self._pool is not None:
            obs, acts = _pairs_as_arrays(request.candidates)
            job = (self.dataset, request.epochs, request.sample_size, request.norm_obs, request.norm_acts)
            self._future = self._pool.submit(
                _worker_update, *job, obs, acts, request.num_queries, self.rng.bit_generator.state
            )
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
        elif (self._thread is not None and self._thread.is_alive()) or (
            self._future is not None and not self._future.done()
        ):
            return None
        self._thread = None
        if self._future is not None:
            self._collect(self._future)
            self._future = None
        if self._error is not None:
            error, self._error, self._request = self._error, None, None
            raise RuntimeError("the reward-model update failed") from error
        result = self._result
        assert result is not None
        self._request = self._result = None
        self.live.restore(result.state)
        return result

    def close(self) -> None:
        """Wait for an update under way and drop its result; stop the worker process, if any."""
        self._wait()
        self._request = self._result = self._error = None
        self._future = None
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def _wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._future is not None:
            wait([self._future])

    def _collect(self, future: Future[Any]) -> None:
        """The worker process's answer, as a thread's would be."""
        assert self._request is not None
        try:
            state, stats, chosen, seconds, rng_state = future.result()
        except BaseException as err:
            self._error = err
            return
        self.rng.bit_generator.state = rng_state
        queries = [self._request.candidates[i] for i in chosen]
        self._result = UpdateResult(self._request, state, stats, queries, seconds)

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
                self.selector.choose(request.candidates, request.num_queries, self.dataset)
                if request.num_queries
                else []
            )
            state = copy.deepcopy(self.shadow.state())
            self._result = UpdateResult(request, state, stats, queries, time.perf_counter() - start)
        except BaseException as err:  # handed to the trainer's thread by take()
            self._error = err
        finally:
            if not self.background:
                torch.set_num_threads(previous_threads)


# ------------------------------------------------------------------------------- the worker process
_WORKER: dict[str, Any] = {}


def _worker_start(
    ensemble: RewardEnsemble, device: str, query_selection: str, oversample: int, fit_threads: int
) -> None:
    _die_with_parent()
    # Ctrl-C reaches the whole foreground process group: the run writes its checkpoint and drops the update
    # under way, so the worker just ends, without a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    torch.set_num_threads(fit_threads)
    ensemble.to_device(device)
    _WORKER["ensemble"] = ensemble
    _WORKER["selector"] = make_selector(query_selection, ensemble, oversample=oversample)


def _worker_reset(state: dict[str, Any]) -> None:
    _WORKER["ensemble"].restore(state)


def _worker_update(
    dataset: PreferenceDataset,
    epochs: int,
    sample_size: int | None,
    norm_obs: np.ndarray,
    norm_acts: np.ndarray,
    candidate_obs: np.ndarray,
    candidate_acts: np.ndarray,
    num_queries: int,
    rng_state: Mapping[str, Any],
) -> tuple[dict[str, Any], FitStats | None, list[int], float, Mapping[str, Any]]:
    """One update in the worker process: what :meth:`RewardUpdater._run` does in a thread."""
    start = time.perf_counter()
    ensemble: RewardEnsemble = _WORKER["ensemble"]
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    stats = ensemble.fit(dataset, epochs=epochs, rng=rng, sample_size=sample_size) if epochs > 0 else None
    ensemble.normalize(norm_obs, norm_acts)
    chosen: list[int] = []
    if num_queries:
        zeros = np.zeros(candidate_obs.shape[2])
        pairs = [
            (Segment(o[0], a[0], zeros), Segment(o[1], a[1], zeros))
            for o, a in zip(candidate_obs, candidate_acts)
        ]
        index = {id(pair[0]): i for i, pair in enumerate(pairs)}
        chosen = [index[id(left)] for left, _ in _WORKER["selector"].choose(pairs, num_queries, dataset)]
    state = on_cpu(ensemble.state())
    return state, stats, chosen, time.perf_counter() - start, rng.bit_generator.state


def on_cpu(state: Any) -> Any:
    """``state`` (nested dicts, lists and tuples of tensors) with every tensor on the CPU: what crosses the
    process boundary. torch passes a CUDA tensor to another process as a handle to the sender's memory,
    which the receiver may not pass on (a worker's answer would fail) and whose writes the sender would
    see. Tensors already on the CPU are passed through as they are."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        moved = type(state)((key, on_cpu(value)) for key, value in state.items())
        if hasattr(state, "_metadata"):  # a state_dict's per-module versions
            moved._metadata = state._metadata  # type: ignore[attr-defined]
        return moved
    if isinstance(state, (list, tuple)):
        return type(state)(on_cpu(value) for value in state)
    return state


def _pairs_as_arrays(pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs as obs ``(C, 2, length, ...)`` and acts ``(C, 2, length, ...)`` (empty when none)."""
    if not pairs:
        return np.zeros((0, 2, 0)), np.zeros((0, 2, 0))
    obs = np.stack([np.stack([np.asarray(left.obs), np.asarray(right.obs)]) for left, right in pairs])
    acts = np.stack([np.stack([np.asarray(left.acts), np.asarray(right.acts)]) for left, right in pairs])
    return obs, acts


def _die_with_parent() -> None:
    """The worker goes when the run's process does, even after a kill -9."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
