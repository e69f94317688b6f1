import numpy as np
import pytest

from prefrl.segments import Segment
from prefrl.teachers import Preference, Query, SyntheticTeacher, make_synthetic_teacher


def returns_batch(rng, n=20_000, horizon=10):
    left = rng.normal(size=(n, horizon))
    right = rng.normal(size=(n, horizon))
    return left, right


def oracle_choice(left, right):
    return np.where(left.sum(1) > right.sum(1), Preference.LEFT, Preference.RIGHT)


def test_oracle_prefers_higher_return_and_ties_are_equal(rng):
    left, right = returns_batch(rng)
    answers = make_synthetic_teacher("oracle", rng).answer(left, right)
    np.testing.assert_array_equal(answers, oracle_choice(left, right))
    tie = SyntheticTeacher(rng=rng).answer(np.ones((1, 3)), np.ones((1, 3)))
    assert tie[0] == Preference.EQUAL


def test_mistake_rate_matches_epsilon(rng):
    left, right = returns_batch(rng)
    answers = make_synthetic_teacher("mistake", rng).answer(left, right)
    rate = (answers != oracle_choice(left, right)).mean()
    assert rate == pytest.approx(0.1, abs=0.01)


def test_stochastic_teacher_follows_boltzmann(rng):
    n = 40_000
    left = np.zeros((n, 1))
    right = np.full((n, 1), 1.0)  # right is better by 1: P(left) = sigmoid(-1) ≈ 0.269 at β = 1
    answers = make_synthetic_teacher("stochastic", rng).answer(left, right)
    assert (answers == Preference.LEFT).mean() == pytest.approx(1 / (1 + np.e), abs=0.01)


def test_myopic_teacher_weighs_the_end(rng):
    left = np.array([[10.0] + [0.0] * 9])  # big reward early
    right = np.array([[0.0] * 9 + [5.0]])  # smaller reward at the end
    assert make_synthetic_teacher("oracle", rng).answer(left, right)[0] == Preference.LEFT
    assert make_synthetic_teacher("myopic", rng).answer(left, right)[0] == Preference.RIGHT


def test_skip_and_equal_thresholds(rng):
    left = np.array([[0.05], [10.0], [10.0]])
    right = np.array([[0.02], [9.5], [1.0]])
    skip = make_synthetic_teacher("skip", rng).answer(left, right)
    assert list(skip) == [Preference.SKIP, Preference.LEFT, Preference.LEFT]
    equal = make_synthetic_teacher("equal", rng).answer(left, right)
    assert list(equal) == [Preference.EQUAL, Preference.EQUAL, Preference.LEFT]


def test_async_interface_answers_posted_queries(rng):
    teacher = make_synthetic_teacher("oracle", rng)
    seg = lambda r: Segment(np.zeros((3, 1)), np.zeros((3, 1)), np.full(3, r, np.float32))  # noqa: E731
    teacher.post([Query(7, seg(1.0), seg(2.0)), Query(8, seg(3.0), seg(0.0))])
    answers = teacher.poll()
    assert [(a.query_id, a.preference) for a in answers] == [(7, Preference.RIGHT), (8, Preference.LEFT)]
    assert teacher.poll() == [] and teacher.pending() == 0


def test_preference_parse_and_errors():
    assert Preference.parse("left") is Preference.LEFT
    assert Preference.parse(" Equal ") is Preference.EQUAL
    assert Preference.parse(3) is Preference.SKIP
    with pytest.raises(ValueError, match="expected one of"):
        Preference.parse("up")
    with pytest.raises(ValueError, match="unknown synthetic teacher"):
        make_synthetic_teacher("psychic", np.random.default_rng())
