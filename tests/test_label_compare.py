"""``prefrl labels compare``: label sources on the same pairs (agreement, shares, pace, efficiency curves)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import tests.toy_envs  # noqa: F401  (registers prefrl-test/LinearReward-v0)
from prefrl.cli import main
from prefrl.label_efficiency import efficiency_curve, label_counts, spaces_of
from prefrl.label_store import LabelStore
from prefrl.labeling_gui.compare import (
    PersonSettings,
    agreement,
    gather_sources,
    load_pair_set,
    oracle_truth,
)
from prefrl.labeling_gui.scripted import oracle_choice
from prefrl.labeling_gui.transfer import copy_pairs, export_answers
from prefrl.segments import Segment
from prefrl.teachers import Answer, Preference
from tests.labeling_helpers import fill_fake

ENV = "prefrl-test/LinearReward-v0"


def toy_segments(n: int, length: int = 10, seed: int = 0) -> list[Segment]:
    """Segments of the toy env (true reward w · obs) under policies that drift in a random direction each, so
    returns differ by more than the start position."""
    env = gym.make(ENV)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    out = []
    for _ in range(n):
        o, _ = env.reset()
        drift = rng.normal(size=4)
        obs, acts, rews = [], [], []
        for _ in range(length):
            a = np.clip(drift + 0.3 * rng.normal(size=4), -1, 1).astype(np.float32)
            o2, r, *_ = env.step(a)
            obs.append(o)
            acts.append(a)
            rews.append(r)
            o = o2
        out.append(Segment(np.array(obs, np.float32), np.array(acts), np.array(rews, np.float32)))
    env.close()
    return out


def toy_set(path: Path, n_pairs: int, seed: int = 0) -> Path:
    segments = toy_segments(2 * n_pairs, seed=seed)
    with LabelStore(path) as store:
        store.set_meta("env_id", ENV)
        store.add_queries(list(zip(segments[::2], segments[1::2], strict=True)))
    return path


def people_file(
    pair_store: Path,
    out: Path,
    choose,
    *,
    labeler: str,
    every: int = 1,
    pace: float = 3.0,
    take: int | None = None,
) -> Path:
    """A people's file as `prefrl labels export` writes it: answers ``choose(left, right)`` on every
    ``every``-th pair (the first ``take``), ``pace`` seconds apart."""
    run = out.with_suffix("")
    with LabelStore(run / "labels.sqlite") as store:
        copy_pairs(pair_store, store)
        ids = [qid for qid, _, _ in store.query_segment_ids()][::every][:take]
        answers = [Answer(q, choose(store.query(q).left, store.query(q).right), labeler, pace) for q in ids]
        store.add_answers(answers, created=[1.7e9 + pace * i for i in range(len(ids))])
        with out.open("w") as f:
            export_answers(store, f)
    return out


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["labels", "compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_the_oracle_agrees_with_itself_and_each_bpref_teacher_disagrees_as_its_parameters_say(tmp_path):
    rng = np.random.default_rng(0)
    fill_fake(tmp_path / "labels.sqlite", 600, rng)
    pair_set = load_pair_set(tmp_path)
    sources = {s.name: s for s in gather_sources(pair_set, person=None, seed=3)}
    assert list(sources) == ["oracle", "stochastic", "myopic", "mistake", "skip", "equal"]
    truth = dict(enumerate(oracle_truth(pair_set)))
    assert agreement(sources["oracle"].answers, truth) == (1.0, 600)  # fake returns never tie
    rate, compared = agreement(sources["mistake"].answers, truth)
    assert compared == 600 and 1 - rate == pytest.approx(0.1, abs=0.035)  # ε = 0.1 (Lee et al. 2021)
    # Skip: "can't tell" exactly when both returns are below 0.1 of the largest |return| (and only then).
    returns = np.array([[left.true_return, right.true_return] for left, right in pair_set.pairs])
    low = (returns < 0.1 * np.abs(returns).max()).all(1)
    skipped = np.array([sources["skip"].answers[i] == Preference.SKIP for i in range(600)])
    assert low.any() and (skipped == low).all()
    equal = np.array([sources["equal"].answers[i] == Preference.EQUAL for i in range(600)])
    close = np.abs(returns[:, 0] - returns[:, 1]) <= 0.1 * np.abs(returns).max()
    assert equal.any() and (equal == close).all()


def test_the_oracles_efficiency_curve_rises_with_the_number_of_labels():
    segments = toy_segments(600)
    pairs = list(zip(segments[::2], segments[1::2], strict=True))
    train, held = pairs[:200], pairs[200:]
    obs_space, act_space = spaces_of(segments[0])
    few, many = efficiency_curve(
        train,
        [oracle_choice(*p) for p in train],
        held,
        [oracle_choice(*p) for p in held],
        observation_space=obs_space,
        action_space=act_space,
        counts=(10, 200),
    )
    assert (few.labels, many.labels) == (10, 200)
    assert many.accuracy is not None and few.accuracy is not None
    assert many.accuracy >= 0.88 and many.accuracy >= few.accuracy + 0.08
    assert label_counts(480) == [25, 50, 100, 200, 400, 480] and label_counts(25) == [25]


def test_compare_reports_every_source_and_reads_peoples_files(capsys, tmp_path):
    pairs = toy_set(tmp_path / "set" / "labels.sqlite", 60)
    ann = people_file(pairs, tmp_path / "ann.jsonl", oracle_choice, labeler="ann", pace=3.0)

    def contrary(left: Segment, right: Segment) -> Preference:
        return Preference.RIGHT if oracle_choice(left, right) == Preference.LEFT else Preference.LEFT

    # Bob answers every other pair, the first 20 of them, always against the oracle, and "can't tell" once.
    bob = people_file(
        pairs, tmp_path / "bob" / "ann.jsonl", contrary, labeler="bob", every=2, pace=5.0, take=20
    )
    lines = bob.read_text().splitlines()
    lines[3] = (
        lines[3]
        .replace('"choice": "left"', '"choice": "skip"')
        .replace('"choice": "right"', '"choice": "skip"')
    )
    lines.append(lines[0].replace('"labeler": "bob"', '"labeler": "cy"'))  # a repeat by another labeler
    bob.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report" / "cmp"
    code, table, err = run_cli(
        capsys,
        str(pairs.parent),
        "--people",
        str(ann),
        str(bob),
        "--teachers",
        "mistake",
        "--pace-scale",
        "0.01",
        "--labels",
        "10",
        "--epochs",
        "20",
        "--out",
        str(out),
    )
    assert code == 0, err
    result = json.loads(out.with_name("cmp.json").read_text())
    assert out.with_name("cmp.png").stat().st_size > 10_000
    assert result["pairs"] == 60 and result["pair_set"]["held_out"] == 12
    sources = result["sources"]
    assert list(sources) == ["oracle", "mistake", "scripted-person", "ann", "ann-2"]
    assert sources["ann"]["agreement_with_oracle"] == 1.0 and sources["ann"]["answers"] == 60
    bob_s = sources["ann-2"]
    assert (
        bob_s["agreement_with_oracle"] == 0.0
        and bob_s["answers"] == 20
        and bob_s["coverage"] == pytest.approx(1 / 3)
    )
    assert bob_s["share_cant_tell"] == pytest.approx(1 / 20) and bob_s["labelers"] == ["bob"]
    assert bob_s["repeats"] == 1 and bob_s["repeat_agreement"] == 1.0
    assert bob_s["seconds_per_label"] == 5.0 and bob_s["seconds_between_answers"] == 5.0
    assert sources["ann"]["seconds_per_label"] == 3.0 and sources["oracle"]["seconds_per_label"] is None
    # Bob's curve stops at his answers outside the held-out pairs; "can't tell" is counted, not trained.
    (first, last) = bob_s["efficiency"]
    assert first["labels"] == 10 and last["labels"] == last["trained_on"] + 1 < 20
    assert [p["labels"] for p in sources["oracle"]["efficiency"]] == [10, 48]
    matrix = result["agreement"]
    ann_i, bob_i = matrix["sources"].index("ann"), matrix["sources"].index("ann-2")
    assert matrix["rate"][ann_i][bob_i] == 0.0 and matrix["compared"][ann_i][bob_i] == 19
    assert all(matrix["rate"][i][i] == 1.0 for i in range(len(matrix["sources"])))
    # The scripted person answered every pair through the GUI's API, at the scaled pace (3-5 s x 0.01).
    person = sources["scripted-person"]
    assert person["answers"] == 60 and person["labelers"] == ["scripted-person"]
    assert 0.03 <= person["seconds_per_label"] <= 0.05
    assert 3 <= person["seconds_per_label_at_full_pace"] <= 5
    assert person["seconds_between_answers"] >= 0.03
    assert "scripted-person" in table and "acc@10" in table and "(x0.01 pace)" in table


def test_the_scripted_person_makes_mistakes_at_about_its_rate(tmp_path):
    rng = np.random.default_rng(1)
    fill_fake(tmp_path / "labels.sqlite", 200, rng)
    pair_set = load_pair_set(tmp_path)
    # β = ∞: only the ε mistakes; fake segments score their return / 4 per step.
    person = PersonSettings(beta=np.inf, epsilon=0.2, pace_scale=0.0)
    sources = gather_sources(pair_set, teachers=(), person=person, seed=0)
    rate, compared = agreement(sources[1].answers, sources[0].answers)
    assert sources[1].name == "scripted-person" and compared == 200
    assert 1 - rate == pytest.approx(0.2, abs=0.07)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda lines, other: [*lines, other[0]],
            "1 of 61 answers (first on line 61) are for pairs that are not among the 60 pairs",
        ),
        (lambda lines, other: [lines[0], "{not json", *lines[2:]], "line 2: not JSON"),
        (
            lambda lines, other: [lines[0].replace('"left"', '"maybe"').replace('"right"', '"maybe"')],
            "unknown preference 'maybe'",
        ),
        (lambda lines, other: [], "holds no answers"),
    ],
    ids=["pair-not-in-the-set", "malformed-line", "unknown-choice", "empty"],
)
def test_a_peoples_file_that_does_not_match_the_set_is_a_one_line_error(capsys, tmp_path, edit, message):
    pairs = toy_set(tmp_path / "set" / "labels.sqlite", 60)
    other = toy_set(tmp_path / "other" / "labels.sqlite", 5, seed=1)
    good = people_file(pairs, tmp_path / "ann.jsonl", oracle_choice, labeler="ann").read_text().splitlines()
    foreign = people_file(other, tmp_path / "x.jsonl", oracle_choice, labeler="x").read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(edit(good, foreign)) + "\n")
    out = tmp_path / "cmp"
    code, _, err = run_cli(
        capsys, str(pairs), "--people", str(tmp_path / "ann.jsonl"), str(bad), "--out", str(out)
    )
    assert code == 2 and "\n" not in err and message in err and str(bad) in err, err
    assert not out.with_name("cmp.json").exists()  # refused before anything was computed or written


def test_bad_arguments_are_one_line_errors(capsys, tmp_path):
    pairs = toy_set(tmp_path / "labels.sqlite", 5)
    for args, message in [
        ([str(tmp_path / "nowhere")], "neither a run directory"),
        ([str(pairs), "--people", str(tmp_path / "missing.jsonl")], "missing.jsonl does not exist"),
        ([str(pairs), "--held-out", "1.5"], "--held-out must be in (0, 1)"),
        ([str(pairs), "--teachers", "grumpy"], "grumpy"),
    ]:
        code, _, err = run_cli(capsys, *args)
        assert code == 2 and "\n" not in err and message in err, err
