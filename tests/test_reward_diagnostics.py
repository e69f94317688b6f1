"""benchmarks/reward_diagnostics.py on two short real runs: a taught run's learned reward scored on its own
agent and on another run's, and the published diagnoses of other runs kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import reward_diagnostics
from prefrl.cli import main


def train(run_dir: Path, *teacher: str) -> Path:
    args = ["train", "--env", "prefrl/InvertedPendulum-v0", "--algo", "ppo", *teacher, "--steps", "512",
            "--n-envs", "1", "--reward-update-interval", "256", "--agent-kwargs", "n_steps=256",
            "batch_size=64", "--run-dir", str(run_dir), "--no-progress-bar"]  # fmt: skip
    assert main(args) == 0
    return run_dir


def test_a_taught_runs_reward_is_checked_on_its_own_and_another_agents_behaviour(tmp_path: Path) -> None:
    taught = train(tmp_path / "taught", "--teacher", "oracle", "--labels", "20")
    baseline = train(tmp_path / "baseline", "--teacher", "true-reward")
    out = tmp_path / "diagnostics.json"
    out.write_text(json.dumps({"runs": [{"run_dir": "another/run", "teacher": "oracle"}]}))

    args = reward_diagnostics.Args(
        run_dirs=[taught, baseline], episodes=1, pairs=200, against=baseline, out=out
    )
    reward_diagnostics.main(args)

    runs = {run["run_dir"]: run for run in json.loads(out.read_text())["runs"]}
    assert set(runs) == {"another/run", str(taught), str(baseline)}  # the published diagnosis is kept
    mine = runs[str(taught)]
    assert -1.0 <= mine["step_correlation"] <= 1.0 and 0.0 <= mine["segment_pair_agreement"] <= 1.0
    other = mine["against"]
    assert other["run_dir"] == str(baseline) and other["learned_return_per_episode"] != pytest.approx(0.0)
    assert math.isfinite(other["true_return_per_episode"])
    assert "against" not in runs[str(baseline)]  # a true-reward run has no learned reward to score with

    reward_diagnostics.main(reward_diagnostics.Args(run_dirs=[taught], episodes=1, pairs=200, out=out))
    again = {run["run_dir"]: run for run in json.loads(out.read_text())["runs"]}
    assert set(again) == set(runs) and "against" not in again[str(taught)]  # diagnosed anew, once
