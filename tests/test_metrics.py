"""Tests for prefrl.metrics: the learning curve and the final-return statistic the benchmarks report."""

import pytest

from prefrl.metrics import MetricsLog, final_true_return


def write_curve(path, rows):
    log = MetricsLog(path)
    for step, episodes, ret in rows:
        log.append(
            step=step,
            wall_s=0.0,
            episodes=episodes,
            true_return=ret,
            learned_return=0.0,
            labels=0,
            val_accuracy=0.0,
        )


def test_final_true_return_weights_episodes_and_can_stop_at_a_step(tmp_path):
    path = tmp_path / "metrics.csv"
    write_curve(path, [(100, 1, -21.0), (850, 1, -10.0), (950, 3, -6.0), (1000, 1, 0.0), (1900, 2, 20.0)])
    # Last 10 % of 2,000 steps: only the row at 1,900.
    assert final_true_return(path, 2_000) == 20.0
    # At 1,000 steps (a shorter arm's), episodes finished after step 1,000 do not count.
    assert final_true_return(path, 1_000, until=1_000) == pytest.approx((3 * -6.0 + 0.0) / 4)
    assert final_true_return(path, 1_000) == pytest.approx((3 * -6.0 + 0.0 + 2 * 20.0) / 6)
    with pytest.raises(ValueError, match="no episodes in the last 10%"):
        final_true_return(path, 700, until=700)


def test_the_pong_summary_compares_both_arms_at_the_shorter_ones_steps(tmp_path):
    from benchmarks.atari_pong import at_same_steps

    def arm(name, teacher, rows):
        (tmp_path / name).mkdir()
        write_curve(tmp_path / name / "metrics.csv", rows)
        return {"teacher": teacher, "steps_reached": rows[-1][0], "run_dir": str(tmp_path / name)}

    pref = arm("pref", "oracle", [(500, 1, -21.0), (950, 2, -11.0), (1_000, 1, -5.0)])
    # The true-reward arm ran further and improved later: only its episodes up to step 1,000 count.
    true = arm("true", "true-reward", [(850, 1, -19.0), (1_000, 1, -17.0), (1_900, 1, 21.0)])
    summary = at_same_steps([pref, true])
    assert summary is not None and summary["ratio_steps"] == 1_000
    assert summary["preferences_final_true_return"] == pytest.approx((2 * -11.0 - 5.0) / 3)
    assert summary["true_reward_final_true_return"] == -17.0
    assert summary["ratio"] == pytest.approx(round((-9.0 + 21) / (-17.0 + 21), 3))
    # Nothing to compare until both arms have reached RL.
    assert at_same_steps([{**pref, "steps_reached": 0}, true]) is None
