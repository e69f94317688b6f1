"""The scripted person: BPref noise at the configured rate, a person's pace, answers over the HTTP API."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from prefrl.config import ConfigError
from prefrl.envs.backflip_judge import backflip_progress
from prefrl.label_store import LabelStore
from prefrl.labeling_gui.scripted import (
    NoisyChoice,
    ScriptedLabeler,
    free_port,
    oracle_choice,
    train_with_scripted_person,
    wait_for_server,
)
from prefrl.labeling_gui.server import ServerSettings, create_app
from prefrl.report import find_runs
from prefrl.segments import Segment
from prefrl.sweep import sweep_from_spec
from prefrl.teachers import Preference
from tests.labeling_helpers import fill_fake, serve
from tests.test_backflip_judge import launched


def scored(value: float) -> Segment:
    return Segment(np.zeros((1, 1)), np.zeros((1, 1)), np.array([value]))


@pytest.mark.parametrize(
    "beta, epsilon",
    [(np.inf, 0.1), (1.0, 0.0), (20.0, 0.05)],
    ids=["bpref-mistake", "bpref-stochastic", "stochastic-and-mistake"],
)
def test_wrong_answers_come_at_the_configured_rate(beta: float, epsilon: float) -> None:
    rng = np.random.default_rng(0)
    person = NoisyChoice(lambda segment: float(segment.true_rewards[0]), beta=beta, epsilon=epsilon, rng=rng)
    scores = rng.uniform(0, 1, (5_000, 2))
    wrong = np.mean(
        [person(scored(a), scored(b)) != (Preference.LEFT if a > b else Preference.RIGHT) for a, b in scores]
    )
    # BPref: right with probability sigmoid(β |Δ|), then flipped with probability ε.
    gap = np.abs(scores[:, 0] - scores[:, 1])
    expected = np.mean(epsilon + (1 - 2 * epsilon) / (1 + np.exp(np.minimum(beta * gap, 50))))
    assert wrong == pytest.approx(expected, abs=0.015)
    if beta == 20.0:  # with both: about one answer in ten wrong on scores spread over [0, 1]
        assert 0.08 < wrong < 0.12


def test_differences_a_person_cannot_see_are_equal() -> None:
    # No mistakes either: the test is about the threshold, and a 5 % mistake made it fail now and then.
    person = NoisyChoice(
        lambda segment: float(segment.true_rewards[0]), beta=np.inf, epsilon=0.0, equal_below=0.005
    )
    assert person(scored(0.5), scored(0.504)) == Preference.EQUAL
    assert person(scored(0.5), scored(0.506)) == Preference.RIGHT
    assert person(scored(1.0), scored(0.99)) == Preference.LEFT
    with pytest.raises(ValueError, match="equal_below"):
        NoisyChoice(lambda segment: 0.0, equal_below=-1.0)


def test_the_scripted_person_keeps_a_persons_pace(tmp_path: Path) -> None:
    fill_fake(tmp_path / "labels.sqlite", 4, np.random.default_rng(0))
    pace = (0.15, 0.25)  # a person's 3-5 s, scaled down
    app = create_app(ServerSettings(run_dir=tmp_path, render_clips=False))
    with serve(app) as url:
        labeler = ScriptedLabeler(
            url,
            tmp_path / "labels.sqlite",
            oracle_choice,
            name="paced",
            pace_s=pace,
            rng=np.random.default_rng(1),
        )
        start = time.monotonic()
        assert labeler.run(threading.Event(), max_answers=4) == 4
        elapsed = time.monotonic() - start
    with LabelStore(tmp_path / "labels.sqlite") as store:
        records = store.answer_records()
    seconds = [r["seconds"] for r in records]
    assert len(records) == 4 and {r["labeler"] for r in records} == {"paced"}
    assert all(pace[0] <= s <= pace[1] for s in seconds) and len(set(seconds)) == 4  # drawn, not fixed
    assert elapsed >= sum(seconds)  # it waited that long before each answer


def test_the_scripted_person_prefers_the_landed_flip_over_the_gui(tmp_path: Path) -> None:
    def segment(states: np.ndarray) -> Segment:
        n = len(states)
        return Segment(np.zeros((n, 12)), np.zeros((n, 3)), np.zeros(n, np.float32), states=states)

    landed, crashed = segment(launched(-5.0, 75)), segment(launched(-6.0, 75))  # 1.5 s clips
    with LabelStore(tmp_path / "labels.sqlite") as store:
        (query,) = store.add_queries([(crashed, landed)])
    person = NoisyChoice(lambda s: backflip_progress(s.states), beta=np.inf, epsilon=0.0)
    app = create_app(ServerSettings(run_dir=tmp_path, render_clips=False))
    with serve(app) as url:
        ScriptedLabeler(url, tmp_path / "labels.sqlite", person).run(threading.Event(), max_answers=1)
    with LabelStore(tmp_path / "labels.sqlite") as store:
        (record,) = store.answer_records()
    assert (record["query_id"], record["choice"]) == (query.query_id, "right")


def test_a_sweep_run_taught_by_the_scripted_person_through_the_gui_is_resumed_and_finishes(
    tmp_path: Path,
) -> None:
    # The scripted-person arm of benchmarks/teachers_online.py: a sweep's run with --teacher human, its
    # labeling server in a subprocess and the person answering over HTTP; stopped part way (as Ctrl-C), then
    # resumed by the same call to its end.
    spec = {
        "out": str(tmp_path / "runs"),
        "imports": ["tests.toy_envs"],
        "steps": 2048,
        "grid": {"env": ["prefrl-test/LinearReward-v0"], "teacher": ["human"], "labels": [30]},
        "settings": {  # sync updates: no worker process to start, on a busy CI machine
            "segment-length": 10,
            "reward-update-interval": 256,
            "checkpoint-interval": 512,
            "reward-updates": "sync",
        },
    }
    (run,) = sweep_from_spec(spec).runs
    stop = threading.Event()

    def stop_after_first_checkpoint() -> None:
        while not stop.is_set() and run.steps_done() == 0:
            time.sleep(0.1)
        stop.set()

    watcher = threading.Thread(target=stop_after_first_checkpoint, daemon=True)
    watcher.start()
    code = train_with_scripted_person(run.command(), run.run_dir, oracle_choice, log=run.log, stop=stop)
    assert code == 130 and 0 < run.steps_done() < run.steps  # interrupted, with a checkpoint to go on from
    assert run.command()[-3:-1] == ["resume", str(run.run_dir)]

    assert train_with_scripted_person(run.command(), run.run_dir, oracle_choice, log=run.log) == 0
    assert run.finished
    with LabelStore(run.run_dir / "labels.sqlite") as store:
        records = store.answer_records()
        queries = store.num_queries()
    # The 8 initial labels, then answers during RL (the last queries may still be unanswered at the end).
    assert 8 < len(records) <= queries == 30 and {r["labeler"] for r in records} == {"scripted-person"}
    (result,) = find_runs([tmp_path / "runs"])  # prefrl report scores it beside the sweep's own runs
    assert result.teacher == "human" and result.final_true_return is not None
    assert run.log.read_text().count("== ") == 2  # both sessions logged in the run's train.log


def test_a_taken_port_is_refused_before_anything_starts_and_a_dead_server_is_named(tmp_path: Path) -> None:
    # Two runs taught side by side on one port: the second's scripted person would answer the first run's
    # server. Refused in one line before any process starts; and a server that exits (e.g. it could not
    # bind) is reported at once, not after the start-up timeout.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is in use"):
            train_with_scripted_person(
                ["false"], tmp_path / "run", oracle_choice, log=tmp_path / "log", port=port
            )
    assert not (tmp_path / "log").exists()
    dead = subprocess.Popen(["true"])
    dead.wait()
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="exited .status 0. before answering"):
        wait_for_server(f"http://127.0.0.1:{free_port()}", timeout_s=60, server=dead)
    assert time.monotonic() - start < 5
