"""A scripted labeler: answers through the labeling server's HTTP API, as a person's browser does.

It stands in for a person so that the whole human path (queries in the store, clips, claims and answers
over HTTP, the trainer polling them) runs without one: in the end-to-end test with the oracle and in the
backflip benchmark with a :class:`NoisyChoice` on :func:`prefrl.envs.backflip_judge.backflip_progress`, at a
person's pace. It reads a claimed pair's segments from the run's database (where a person would watch its
clips) and picks with ``choose(left, right)``.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prefrl.label_store import LabelStore
from prefrl.segments import Segment
from prefrl.teachers import Preference, SyntheticTeacher

Chooser = Callable[[Segment, Segment], Preference]


class HTTPStatusError(RuntimeError):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


def request(base_url: str, path: str, body: dict[str, Any] | None = None, *, token: str | None = None) -> Any:
    """GET (no body) or POST JSON to the labeling server; the decoded reply, or HTTPStatusError (4xx/5xx).

    Network failures raise ``OSError`` (``urllib.error.URLError``).
    """
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read()).get("detail", "")
        except (ValueError, AttributeError):
            detail = ""
        raise HTTPStatusError(err.code, str(detail)) from None


def oracle_choice(left: Segment, right: Segment) -> Preference:
    """The BPref oracle (Lee et al. 2021): the segment with the larger true return; ties are "equal"."""
    if left.true_return == right.true_return:
        return Preference.EQUAL
    return Preference.LEFT if left.true_return > right.true_return else Preference.RIGHT


class NoisyChoice:
    """A person's choice between two clips: prefers the higher ``score``, with BPref's noise.

    The two scores go through BPref's teacher model (Lee et al. 2021): Boltzmann-rational with ``beta`` on
    the score difference (the stochastic teacher), then a mistake with probability ``epsilon``. With the
    defaults and scores spread over [0, 1] about 10 % of the answers are wrong: half from mistakes, half
    from close calls. Pairs scored exactly alike are "equal".

    Args:
        score: how close a segment is to what the person wants (e.g.
            :func:`prefrl.envs.backflip_judge.backflip_progress` of its states); about 1 per unit of progress.
        beta: rationality on score differences.
        epsilon: probability of answering the other way.
        rng: random generator.
    """

    def __init__(
        self,
        score: Callable[[Segment], float],
        *,
        beta: float = 20.0,
        epsilon: float = 0.05,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.score = score
        self.model = SyntheticTeacher(beta=beta, epsilon=epsilon, rng=rng)

    def __call__(self, left: Segment, right: Segment) -> Preference:
        scores = np.array([[self.score(left)]]), np.array([[self.score(right)]])
        if scores[0][0, 0] == scores[1][0, 0]:
            return Preference.EQUAL
        return Preference(int(self.model.answer(*scores)[0]))


class ScriptedLabeler:
    """Claims pairs and answers them over HTTP until stopped.

    Args:
        base_url: the labeling server, e.g. ``http://127.0.0.1:8000``.
        store_path: the run's ``labels.sqlite``, read to look at the claimed segments.
        choose: picks an answer for ``(left, right)``.
        name: the labeler name sent with each answer.
        token: the server's token, if it has one.
        seconds: the "time taken" reported with each answer (unless ``pace_s`` is set).
        pace_s: ``(low, high)``: before each answer wait a time drawn uniformly from it, and report that
            time, as a person watching the clips would (App. B: 3-5 s per comparison).
        rng: draws the pace.
    """

    def __init__(
        self,
        base_url: str,
        store_path: Path,
        choose: Chooser,
        *,
        name: str = "script",
        token: str | None = None,
        seconds: float = 0.0,
        pace_s: tuple[float, float] | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        if pace_s is not None and not 0 <= pace_s[0] <= pace_s[1]:
            raise ValueError(f"pace_s must be (low, high) with 0 <= low <= high; got {pace_s}")
        self.pace_s, self.rng = pace_s, rng if rng is not None else np.random.default_rng()
        self._stop = threading.Event()
        self.base_url = base_url
        self.token = token
        self.store_path = Path(store_path)
        self.choose = choose
        self.name = name
        self.seconds = seconds
        self.answered = 0

    def step(self, store: LabelStore, limit: int = 2) -> int:
        """Claim up to ``limit`` (at most two) pairs and answer them; returns how many were answered."""
        n = max(1, min(2, limit))
        claimed = request(self.base_url, "/api/claim", {"labeler": self.name, "n": n}, token=self.token)
        done = 0
        for pair in claimed["pairs"][:n]:
            query = store.query(pair["query_id"])
            seconds = self.seconds
            if self.pace_s is not None:
                seconds = float(self.rng.uniform(*self.pace_s))
                if self._stop.wait(seconds):
                    break  # stopped while "watching": the claim lapses and the pair returns to the queue
            choice = self.choose(query.left, query.right)
            body = {
                "query_id": query.query_id,
                "choice": choice.name.lower(),
                "labeler": self.name,
                "seconds": seconds,
            }
            try:
                request(self.base_url, "/api/answer", body, token=self.token)
                done += 1
            except HTTPStatusError as err:
                if err.status != 409:  # 409: answered meanwhile (e.g. by an import); anything else is a bug
                    raise
        self.answered += done
        return done

    def run(self, stop: threading.Event, *, poll_s: float = 0.2, max_answers: int | None = None) -> int:
        """Answer until ``stop`` is set (or ``max_answers`` are given); returns the number answered."""
        self._stop = stop
        with LabelStore(self.store_path) as store:
            while not stop.is_set() and (max_answers is None or self.answered < max_answers):
                try:
                    left = 2 if max_answers is None else max_answers - self.answered
                    if self.step(store, limit=left) == 0:
                        stop.wait(poll_s)
                except HTTPStatusError:
                    raise
                except OSError:  # the server is (re)starting
                    stop.wait(1.0)
        return self.answered


def wait_for_server(base_url: str, *, token: str | None = None, timeout_s: float = 60.0) -> None:
    """Block until ``GET /api/info`` answers (raises TimeoutError after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            request(base_url, "/api/info", token=token)
            return
        except HTTPStatusError:
            raise
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the labeling server at {base_url} did not start within {timeout_s:.0f} s")
        time.sleep(0.2)
