"""Tests for the summary maths of benchmarks/peers.py (no virtualenv is built, nothing is trained)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from benchmarks.peers import (
    ARMS,
    Args,
    arm_dir,
    bootstrap_quotient_ci,
    earlier_results,
    finished_result,
    is_partial,
    keep_record,
    record_dir,
    report,
    summarize,
)


def run(arm: str, seed: int, final: float | None, wall: float, steps: int = 1_000_000) -> dict[str, Any]:
    return {"arm": arm, "seed": seed, "final_true_return": final, "wall_s": wall, "steps": steps}


def epochs(prefrl: list[float], imitation: list[float], ensemble: list[float]) -> dict[str, Any]:
    return {
        "prefrl": {"seconds": prefrl},
        "imitation": {"seconds": imitation},
        "imitation_ensemble_3": {"seconds": ensemble},
    }


def test_ratios_are_of_means_over_the_seeds_where_both_arms_finished() -> None:
    runs = [
        run("prefrl-oracle", 0, 2000.0, 120.0),
        run("prefrl-oracle", 1, 2400.0, 140.0),
        run("prefrl-oracle", 2, 9999.0, 999.0),  # its baseline has not finished: left out
        run("prefrl-true-reward", 0, 2000.0, 100.0),
        run("prefrl-true-reward", 1, 2000.0, 100.0),
        run("imitation-preferences", 0, 1000.0, 300.0),
        run("imitation-true-reward", 0, 2000.0, 100.0),
    ]
    summary = summarize(runs, epochs([0.1, 0.2, 0.3], [1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
    assert summary["prefrl_seeds"] == [0, 1]
    assert summary["prefrl_ratio"] == pytest.approx(1.1)  # (2000 + 2400) / 2 over 2000
    assert summary["prefrl_wall_ratio"] == pytest.approx(1.3)
    assert summary["imitation_ratio"] == pytest.approx(0.5)
    assert summary["imitation_wall_ratio"] == pytest.approx(3.0)
    assert summary["prefrl_epoch_s"] == pytest.approx(0.2)  # medians over repeats
    assert summary["imitation_epoch_s"] == pytest.approx(2.0)
    assert summary["ratio_vs_imitation"] == pytest.approx(2.2)
    assert summary["wall_ratio_vs_imitation"] == pytest.approx(1.3 / 3.0, abs=1e-3)
    assert summary["epoch_speedup"] == pytest.approx(10.0)
    assert summary["epoch_speedup_same_ensemble"] == pytest.approx(20.0)
    assert summary["targets_met"] == {
        "ratio_vs_imitation": True,
        "wall_ratio_vs_imitation": True,  # 0.43 ≤ 0.6: lower is better for wall time
        "epoch_speedup": True,
    }


def test_the_quotient_has_a_bootstrap_interval_over_seeds() -> None:
    same = bootstrap_quotient_ci(([2000.0] * 3, [2000.0] * 3), ([1000.0] * 3, [2000.0] * 3))
    assert same == pytest.approx([2.0, 2.0])  # seeds that agree leave nothing to resample
    spread = bootstrap_quotient_ci(([2400.0, 2000.0, 1000.0], [2000.0] * 3), ([1000.0] * 3, [2000.0] * 3))
    assert spread is not None
    low, high = spread
    assert low < (5400.0 / 6000.0) / 0.5 < high  # the point estimate, 1.8, lies inside
    assert low == pytest.approx(2 * 1000.0 / 2000.0, abs=0.35) and high <= 2 * 2400.0 / 2000.0
    assert bootstrap_quotient_ci(([2000.0], [2000.0]), ([1000.0] * 3, [2000.0] * 3)) is None


def test_missing_or_meaningless_figures_are_none() -> None:
    runs = [
        run("prefrl-oracle", 0, 100.0, 120.0),
        run("prefrl-true-reward", 0, -50.0, 100.0),  # a negative baseline: no return ratio
        run("imitation-preferences", 0, None, 300.0),  # no episode in the last 10 %: seed left out
        run("imitation-true-reward", 0, 2000.0, 100.0),
    ]
    summary = summarize(runs, None)
    assert summary["prefrl_ratio"] is None and summary["ratio_vs_imitation_ci95"] is None
    assert summary["prefrl_wall_ratio"] == pytest.approx(1.2)
    assert summary["imitation_seeds"] == []
    assert summary["imitation_ratio"] is None and summary["imitation_wall_ratio"] is None
    assert summary["prefrl_epoch_s"] is None and summary["epoch_speedup"] is None
    assert set(summary["targets_met"].values()) == {None}


def test_partial_until_every_arm_has_three_seeds_at_full_length() -> None:
    full = [run(arm, seed, 1.0, 1.0) for arm in ARMS for seed in (0, 1, 2)]
    assert not is_partial(full)
    assert is_partial(full[:-1])
    assert is_partial([run(arm, seed, 1.0, 1.0, steps=300_000) for arm in ARMS for seed in (0, 1, 2)])
    assert is_partial([])


def test_results_under_other_settings_are_kept_beside_new_ones(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    one_core = {"steps": 300_000, "seeds": [0, 1, 2], "labels": 700, "cpu": "1", "torch_threads": 1}
    published = {
        "settings": {**one_core, "prefrl": "defaults"},
        "summary": {"wall_ratio_vs_imitation": 0.815},
        "runs": [run("prefrl-oracle", 0, 2104.6, 348.5, steps=300_000)],
        "machine": {"date": "2026-11-22"},
    }
    out.write_text(json.dumps(published))
    both_cores = {**one_core, "cpu": "0,1"}

    earlier = earlier_results(out, both_cores)
    assert earlier == [
        {
            "settings": one_core,
            "measured": "2026-11-22",
            "summary": published["summary"],
            "runs": published["runs"],
        }
    ]
    # Reporting again under the new settings carries the earlier results over, without a copy of the new.
    out.write_text(json.dumps({"settings": both_cores, "summary": {}, "runs": [], "earlier": earlier}))
    assert earlier_results(out, both_cores) == earlier
    assert earlier_results(tmp_path / "absent.json", both_cores) == []


def test_finished_arms_are_kept_and_reported_from_their_records_once_the_runs_are_gone(
    tmp_path: Path,
) -> None:
    args = Args(steps=300_000, seeds=[0], runs_dir=tmp_path / "runs", records=tmp_path / "kept")
    args.out = tmp_path / "peers.json"
    finals = dict(zip(ARMS, (1900.0, 2000.0, 800.0, 1000.0)))
    for arm, final in finals.items():
        run_dir = arm_dir(args, arm, 0)
        run_dir.mkdir(parents=True)
        header = "step,wall_s,episodes,true_return,learned_return,labels,val_accuracy\n"
        (run_dir / "metrics.csv").write_text(header + "150000,100,2,10,1,0,nan\n300000,200,2,20,2,0,nan\n")
        result = {**run(arm, 0, final, 200.0, steps=300_000), "agent_steps": 300_000}
        (run_dir / "result.json").write_text(json.dumps(result))
        assert finished_result(args, arm, 0) == run_dir / "result.json"
        keep_record(args, arm, 0)
    shutil.rmtree(tmp_path / "runs")  # run directories are not committed; the records are

    for arm in ARMS:
        assert finished_result(args, arm, 0) == record_dir(args, arm, 0) / "result.json"
    report(args, None, {})
    data = json.loads(args.out.read_text())
    assert data["missing"] == [] and len(data["runs"]) == 4
    assert data["summary"]["prefrl_ratio"] == 0.95 and data["summary"]["imitation_ratio"] == 0.8
    assert all(Path(r["metrics"]).name == "metrics.csv" for r in data["runs"])
    assert args.out.with_suffix(".png").exists()
