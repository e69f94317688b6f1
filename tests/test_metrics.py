"""Tests for prefrl.metrics: the learning curve and the final-return statistic the benchmarks report."""

import math

import pytest

from prefrl.metrics import COLUMNS, MetricsLog, final_true_return, read_metrics


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
            fresh_accuracy=0.0,
        )


def test_a_curve_written_before_a_column_existed_reads_it_as_nan_and_gains_it_on_resume(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,wall_s,episodes,true_return,learned_return,labels,val_accuracy\n"
        "100,1.0,2,-5.0,3.0,10,nan\n200,2.0,1,-4.0,3.5,12,0.75\n"
    )
    old = read_metrics(path)
    assert list(old["true_return"]) == [-5.0, -4.0] and math.isnan(old["fresh_accuracy"][1])
    log = MetricsLog(path)  # a resumed run opens it: the header gains the column, no row is lost
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    log.append(step=300, wall_s=3.0, episodes=1, true_return=-3.0, learned_return=4.0, labels=14,
               val_accuracy=0.8, fresh_accuracy=0.7)  # fmt: skip
    m = read_metrics(path)
    assert list(m["step"]) == [100, 200, 300] and m["val_accuracy"][1] == 0.75
    assert math.isnan(m["fresh_accuracy"][0]) and m["fresh_accuracy"][2] == 0.7


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
