"""The scripted person: BPref noise at the configured rate, a person's pace, answers over the HTTP API."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from prefrl.envs.backflip_judge import backflip_progress
from prefrl.label_store import LabelStore
from prefrl.labeling_gui.scripted import NoisyChoice, ScriptedLabeler, oracle_choice
from prefrl.labeling_gui.server import ServerSettings, create_app
from prefrl.segments import Segment
from prefrl.teachers import Preference
from tests.labeling_helpers import fill_fake, serve
from tests.test_backflip_judge import launched


def scored(value: float) -> Segment:
    return Segment(np.zeros((1, 1)), np.zeros((1, 1)), np.array([value]))


@pytest.mark.parametrize(
    "beta, epsilon",
    [(np.inf, 0.1), (1.0, 0.0), (20.0, 0.05)],
    ids=["bpref-mistake", "bpref-stochastic", "benchmark-person"],
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
    if beta == 20.0:  # the benchmark's person: about one answer in ten is wrong on scores spread over [0, 1]
        assert 0.08 < wrong < 0.12


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
