import pytest

from prefrl.schedule import LabelSchedule


def test_schedule_spends_budget_with_decaying_rate():
    s = LabelSchedule.from_fraction(700, 1_000_000)
    assert s.initial_labels == 175
    assert s.labels_due(0) == 175 and s.labels_due(1_000_000) == 700
    due = [s.labels_due(t) for t in range(0, 1_000_001, 100_000)]
    gains = [b - a for a, b in zip(due, due[1:])]
    assert all(g2 <= g1 for g1, g2 in zip(gains, gains[1:]))  # rate ∝ c/(T + c) decreases
    assert s.labels_due(5_000_000) == 700


def test_budget_smaller_than_initial_share_is_rejected():
    with pytest.raises(ValueError, match="smaller than the initial share"):
        LabelSchedule(100, 200, 1000)
