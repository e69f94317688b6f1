"""A scripted labeler: answers through the labeling server's HTTP API, as a person's browser does.

It stands in for a person so that the whole human path (queries in the store, clips, claims and answers
over HTTP, the trainer polling them) runs without one: in the end-to-end test with the oracle and in the
backflip benchmark with :class:`prefrl.envs.backflip.BackflipTeacher`. It reads a claimed pair's segments
from the run's database (where a person would watch its clips) and picks with ``choose(left, right)``.
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

from prefrl.label_store import LabelStore
from prefrl.segments import Segment
from prefrl.teachers import Preference

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


class ScriptedLabeler:
    """Claims pairs and answers them over HTTP until stopped.

    Args:
        base_url: the labeling server, e.g. ``http://127.0.0.1:8000``.
        store_path: the run's ``labels.sqlite``, read to look at the claimed segments.
        choose: picks an answer for ``(left, right)``.
        name: the labeler name sent with each answer.
        token: the server's token, if it has one.
        seconds: the "time taken" reported with each answer.
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
    ) -> None:
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
            choice = self.choose(query.left, query.right)
            body = {
                "query_id": query.query_id,
                "choice": choice.name.lower(),
                "labeler": self.name,
                "seconds": self.seconds,
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
