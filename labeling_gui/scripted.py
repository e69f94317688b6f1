"""A scripted labeler: answers through the labeling server's HTTP API, as a person's browser does.

It stands in for a person so that the whole human path (queries in the store, clips, claims and answers
over HTTP, the trainer polling them) runs without one: in the end-to-end test with the oracle, in the
backflip benchmark with a :class:`NoisyChoice` on :func:`prefrl.envs.backflip_judge.backflip_progress`, at a
person's pace, and in the online comparison of label sources (``benchmarks/teachers_online.py``) with a
:class:`NoisyChoice` on the true reward. It reads a claimed pair's segments from the run's database (where a
person would watch its clips) and picks with ``choose(left, right)``. :func:`train_with_scripted_person` runs
a whole ``prefrl train --teacher human`` run that way: trainer, labeling server and scripted person.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefrl.config import ConfigError
from prefrl.label_store import LabelStore
from prefrl.segments import Segment
from prefrl.sweep import die_with_parent
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


def true_reward_per_step(segment: Segment) -> float:
    """A scripted person's score on a task with a true reward: the segment's mean true reward per step,
    what the task's instructions ask people to look for (Hopper: moving right, then height), in units that
    do not depend on the segment's length."""
    return float(np.mean(segment.true_rewards))


class NoisyChoice:
    """A person's choice between two clips: prefers the higher ``score``, with BPref's noise.

    The two scores go through BPref's teacher model (Lee et al. 2021): Boltzmann-rational with ``beta`` on
    the score difference (the stochastic teacher), then a mistake with probability ``epsilon``. With the
    defaults and scores spread over [0, 1] about 10 % of the answers are wrong: half from mistakes, half
    from close calls. Pairs whose scores differ by no more than ``equal_below`` are "equal" (BPref's equal
    teacher; App. B's ↑ key, pressed by a person who sees no difference).

    Args:
        score: how close a segment is to what the person wants (e.g.
            :func:`prefrl.envs.backflip_judge.backflip_progress` of its states); about 1 per unit of progress.
        beta: rationality on score differences.
        epsilon: probability of answering the other way.
        equal_below: score difference a person cannot see (0: only exactly equal scores are "equal").
        rng: random generator.
    """

    def __init__(
        self,
        score: Callable[[Segment], float],
        *,
        beta: float = 20.0,
        epsilon: float = 0.05,
        equal_below: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        if not equal_below >= 0:
            raise ValueError(f"equal_below must be >= 0; got {equal_below}")
        self.score = score
        self.equal_below = equal_below
        self.model = SyntheticTeacher(beta=beta, epsilon=epsilon, rng=rng)

    def __call__(self, left: Segment, right: Segment) -> Preference:
        scores = np.array([[self.score(left)]]), np.array([[self.score(right)]])
        if abs(scores[0][0, 0] - scores[1][0, 0]) <= self.equal_below:
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


def wait_for_server(
    base_url: str,
    *,
    token: str | None = None,
    timeout_s: float = 60.0,
    server: subprocess.Popen[bytes] | None = None,
) -> None:
    """Block until ``GET /api/info`` answers (raises TimeoutError after ``timeout_s``). With ``server``, the
    process meant to answer: RuntimeError as soon as it has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server is not None and server.poll() is not None:
            code = server.returncode
            raise RuntimeError(f"the labeling server for {base_url} exited (status {code}) before answering")
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int) -> None:
    """ConfigError if something already listens on 127.0.0.1:``port``: another run's labeling server there
    would be sent this run's scripted answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise ConfigError(
                f"port {port} is in use (another labeling server?); choose another port or leave it unset "
                "for a free one"
            )


def train_with_scripted_person(
    command: Sequence[str],
    run_dir: Path,
    choose: Chooser,
    *,
    log: Path,
    port: int | None = None,
    clips: bool = False,
    pace_s: tuple[float, float] | None = None,
    rng: np.random.Generator | None = None,
    name: str = "scripted-person",
    stop: threading.Event | None = None,
    server_timeout_s: float = 120.0,
) -> int:
    """Run a trainer whose run a scripted person teaches through the labeling GUI, as a person would.

    ``command`` (``prefrl train --teacher human ... --run-dir RUN_DIR``, or ``prefrl resume RUN_DIR``) runs in
    a subprocess; the run's labeling server (``prefrl label --run-dir RUN_DIR``) in another; a
    :class:`ScriptedLabeler` named ``name`` claims its pairs and answers them over HTTP with ``choose``, in a
    thread of this process, until the trainer ends. Everything the trainer and the server print is appended
    to ``log``, which stays locked while the trainer runs (the same run started again waits for it).

    Args:
        port: the server's port (default: a free one). ConfigError if something listens there already.
        clips: render the clips of every query, as for a person (``choose`` reads the segments, so the
            scripted person needs none).
        pace_s: ``(low, high)`` seconds to wait before each answer, as a person watching the clips (App. B:
            3-5 s); None answers as soon as a pair is claimed.
        rng: draws the pace.
        stop: when set (e.g. by another thread), the trainer is interrupted as by Ctrl-C.

    Returns:
        The trainer's exit status (130 when interrupted: it wrote a checkpoint, ``prefrl resume`` goes on).

    Raises:
        RuntimeError: the scripted person failed (the trainer is interrupted first, so no label is lost).
        KeyboardInterrupt: on Ctrl-C, once the trainer has written its checkpoint and exited.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if port is not None:
        check_port_free(port)
    port = port if port is not None else free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    stop = stop if stop is not None else threading.Event()
    finished = threading.Event()
    failure: list[Exception] = []
    with open(log, "ab") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # the trainer shares this open file, so it holds the lock too
        shown = next((i for i, a in enumerate(command) if a in ("train", "resume")), 0)
        out.write(f"== {time.strftime('%Y-%m-%d %H:%M:%S')}: prefrl {' '.join(command[shown:])}\n".encode())
        out.flush()
        server_cmd = [sys.executable, "-m", "prefrl", "label", "--run-dir", str(run_dir), "--port", str(port)]
        server = subprocess.Popen(
            server_cmd + ([] if clips else ["--no-clips"]),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent,
        )
        trainer: subprocess.Popen[bytes] | None = None
        try:
            wait_for_server(url, timeout_s=server_timeout_s, server=server)
            trainer = subprocess.Popen(
                list(command), stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent
            )
            labeler = ScriptedLabeler(
                url, run_dir / "labels.sqlite", choose, name=name, pace_s=pace_s, rng=rng
            )

            def label() -> None:
                try:
                    labeler.run(finished)
                except Exception as err:  # reported by the loop below, which stops the trainer
                    failure.append(err)

            threading.Thread(target=label, name=f"{name} on {run_dir.name}", daemon=True).start()
            while trainer.poll() is None:
                if stop.wait(1.0) or failure:
                    _interrupt(trainer)
            if failure:
                raise RuntimeError(f"the scripted person stopped ({failure[0]!r}); see {log}") from failure[0]
            return int(trainer.returncode)
        except KeyboardInterrupt:
            if trainer is not None:
                _interrupt(trainer)
            raise
        finally:
            finished.set()
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()


def _interrupt(trainer: subprocess.Popen[bytes]) -> None:
    """As Ctrl-C: the trainer writes its checkpoint and exits (``prefrl resume`` continues it)."""
    if trainer.poll() is None:
        trainer.send_signal(signal.SIGINT)
    trainer.wait()
