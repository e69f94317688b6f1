"""Tests for the summary maths of benchmarks/peers.py (no virtualenv is built, nothing is trained)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.peers import ARMS, earlier_results, is_partial, summarize


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


def test_missing_or_meaningless_figures_are_none() -> None:
    runs = [
        run("prefrl-oracle", 0, 100.0, 120.0),
        run("prefrl-true-reward", 0, -50.0, 100.0),  # a negative baseline: no return ratio
        run("imitation-preferences", 0, None, 300.0),  # no episode in the last 10 %: seed left out
        run("imitation-true-reward", 0, 2000.0, 100.0),
    ]
    summary = summarize(runs, None)
    assert summary["prefrl_ratio"] is None
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
