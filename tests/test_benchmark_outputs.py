"""Tests for what the backflip and off-policy benchmarks report (benchmarks/backflip.py,
benchmarks/backflip_coverage.py, benchmarks/offpolicy_feedback.py), where the GPU profile says the time
went (benchmarks/gpu_profile.py), and the helpers they share (benchmarks/common.py): the summary maths on
made-up runs, and the final policy played and filmed from a short real run."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import backflip, gpu_profile, offpolicy_feedback, teachers_online
from benchmarks.common import filmstrip, play_final_policy, updating_json, write_json
from prefrl.cli import main
from prefrl.envs.backflip_judge import BackwardTurn, backflip_progress
from prefrl.sweep import Sweep, load_spec


def flip_run(algo: str, budget: int, labels: int, flips: float, airborne: float = 0.0) -> dict[str, Any]:
    return {
        "algo": algo,
        "label_budget": budget,
        "labels": labels,
        "seed": 0,
        "steps": 1_001_472,
        "backflips_per_episode": flips,
        "airborne_turns_per_episode": airborne,
        "backward_turns_per_episode": airborne,
    }


def test_the_backflip_summary_takes_each_algorithms_best_run_within_the_label_budget() -> None:
    runs = [
        flip_run("ppo", 900, 895, 0.0, airborne=2.4),
        flip_run("sac", 200, 200, 0.0, airborne=1.0),
        flip_run("sac", 1400, 1400, 3.0),  # over the target's 900 labels: not eligible
    ]
    summary = backflip.summary(runs)
    assert summary["best_per_algo"]["sac"]["label_budget"] == 200
    assert not summary["target_met"] and not summary["beyond_peers"]["met"]
    summary = backflip.summary([*runs, flip_run("sac", 100, 100, 1.2)])
    assert summary["best_per_algo"]["sac"]["label_budget"] == 100
    assert summary["target_met"] and summary["beyond_peers"]["met"]
    assert not summary["target_met_over_seeds"]  # one seed is not a setting that works
    assert not summary["beyond_peers"]["met_over_seeds"]
    second = {**flip_run("sac", 100, 100, 0.0), "seed": 1}  # the same setting, another seed: 0.6 on average
    beyond = backflip.summary([*runs, flip_run("sac", 100, 100, 1.2), second])["beyond_peers"]
    assert beyond["met"] and not beyond["met_over_seeds"]
    assert beyond["best_setting_per_algo"]["sac"]["backflips_each_seed"] == [1.2, 0.0]
    third = {**second, "seed": 2, "backflips_per_episode": 2.1}
    beyond = backflip.summary([*runs, flip_run("sac", 100, 100, 1.2), second, third])["beyond_peers"]
    assert beyond["met_over_seeds"]  # 1.1 on average over 3 seeds
    assert "ppo" not in beyond["best_setting_per_algo"]  # its only run had 900 labels
    assert backflip.run_key(runs[1]) == ("sac", 200, 0, backflip.EARLIER_PERSON_SCORE, "", 1_000_000)
    assert backflip.run_key({**runs[1], "person_score": backflip.PERSON_SCORE})[3] == backflip.PERSON_SCORE


def test_a_backflip_run_with_more_reward_epochs_is_a_setting_of_its_own(tmp_path: Path) -> None:
    run = {**flip_run("sac", 100, 100, 0.0), "reward_l2": 0.0, "reward_epochs": 50}
    assert backflip.settings(run) == ["reward_l2=0.0", "reward_epochs=50"]
    default = {**run, "reward_epochs": backflip.DEFAULT_REWARD_EPOCHS}
    assert backflip.settings(default) == ["reward_l2=0.0"]  # as every run recorded before it was
    assert backflip.run_key(run) != backflip.run_key(default)
    args = backflip.Args(algo="sac", labels=100, steps=200_000, reward_epochs=50, run_dir=tmp_path / "run")
    command = backflip.train_command(args)
    assert command is not None and command[command.index("--reward-epochs") + 1] == "50"


@pytest.mark.parametrize(
    ("field", "value", "unset_values"),
    [
        ("initial_labels", 10, [None]),  # prefrl's default is a share of the budget: named whenever set
        ("oversample", 50, [None, 10]),  # None: recorded before the field was; 10: prefrl's default
    ],
)
def test_a_backflip_run_asking_its_labels_otherwise_is_a_setting_of_its_own(
    tmp_path: Path, field: str, value: int, unset_values: list[int | None]
) -> None:
    run = {**flip_run("sac", 100, 100, 0.0), "unsupervised_steps": 30_000, field: value}
    assert backflip.settings(run) == ["unsupervised_steps=30000", f"{field}={value}"]
    for unset in unset_values:
        assert backflip.settings({**run, field: unset}) == ["unsupervised_steps=30000"]
        assert backflip.run_key(run) != backflip.run_key({**run, field: unset})
    flag = "--" + field.replace("_", "-")
    args = backflip.Args(algo="sac", labels=100, steps=200_000, run_dir=tmp_path / "r", **{field: value})
    command = backflip.train_command(args)
    assert command is not None and command[command.index(flag) + 1] == str(value)
    assert flag not in (backflip.train_command(backflip.Args(run_dir=tmp_path / "d")) or [])
    ceiling = backflip.Args(ceiling=True, run_dir=tmp_path / "c", **{field: value})  # asks no labels
    assert flag not in (backflip.train_command(ceiling) or [])


def test_a_backflip_run_with_longer_unsupervised_exploration_is_a_setting_of_its_own(tmp_path: Path) -> None:
    run = {**flip_run("sac", 100, 100, 0.0), "unsupervised_steps": 30_000}
    assert backflip.settings(run) == ["unsupervised_steps=30000"]
    for default in (None, backflip.DEFAULT_UNSUPERVISED_STEPS):  # unset, or set to prefrl's 9,000
        assert backflip.settings({**run, "unsupervised_steps": default}) == []
    assert backflip.DEFAULT_UNSUPERVISED_STEPS == 9_000
    assert backflip.run_key(run) != backflip.run_key({**run, "unsupervised_steps": None})
    args = backflip.Args(
        algo="sac", labels=100, steps=200_000, unsupervised_steps=30_000, run_dir=tmp_path / "r"
    )
    command = backflip.train_command(args)
    assert command is not None and command[command.index("--unsupervised-steps") + 1] == "30000"
    assert "--unsupervised-steps" not in (backflip.train_command(backflip.Args(run_dir=tmp_path / "d")) or [])


def test_the_backflip_summary_averages_each_setting_over_its_seeds() -> None:
    lucky = flip_run("sac", 900, 900, 1.8)
    unlucky = {**lucky, "seed": 1, "backflips_per_episode": 0.0}
    steady = [{**flip_run("sac", 900, 900, 0.8), "steps": 300_000, "seed": seed} for seed in (0, 1)]
    summary = backflip.summary([lucky, unlucky, *steady])
    assert summary["best_per_algo"]["sac"]["backflips_per_episode"] == 1.8  # the best run, one seed
    assert summary["target_met"]
    best = summary["best_setting_per_algo"]["sac"]  # the best on average over seeds: 0.9 against 0.8
    assert best["seeds"] == [0, 1] and best["backflips_each_seed"] == [1.8, 0.0]
    assert best["steps"] == 1_000_000 and best["backflips_per_episode_mean"] == pytest.approx(0.9)
    assert best["seeds_with_a_backflip_per_episode"] == 1
    assert not summary["target_met_over_seeds"]
    summary = backflip.summary([lucky, {**lucky, "seed": 2, "backflips_per_episode": 0.4}])
    assert summary["target_met_over_seeds"]  # 1.1 on average over 2 seeds
    one_seed = {**flip_run("sac", 900, 900, 9.0), "steps": 200_000}  # a setting run once, luckily
    best = backflip.summary([lucky, unlucky, *steady, one_seed])["best_setting_per_algo"]["sac"]
    assert best["seeds"] == [0, 1] and best["backflips_per_episode_mean"] == pytest.approx(0.9)
    alone = backflip.summary([one_seed])["best_setting_per_algo"]["sac"]  # no setting has two seeds
    assert alone["seeds"] == [0] and alone["backflips_per_episode_mean"] == 9.0


def test_the_ceiling_is_reported_beside_the_taught_runs_and_meets_no_label_target(tmp_path: Path) -> None:
    ceiling = {**flip_run("ppo", 0, 0, 17.0, airborne=17.0), "arm": backflip.CEILING}
    summary = backflip.summary([flip_run("ppo", 900, 895, 0.0, airborne=2.4), ceiling])
    assert not summary["target_met"] and not summary["beyond_peers"]["met"]
    assert summary["best_per_algo"]["ppo"]["label_budget"] == 900
    assert summary["ceiling_per_algo"]["ppo"]["backflips_per_episode"] == 17.0
    command = backflip.train_command(backflip.Args(ceiling=True, run_dir=tmp_path / "run"))
    assert command is not None
    assert command[command.index("--teacher") + 1] == "true-reward"
    assert command[command.index("--env-kwargs") + 1] == "reward=flips" and "--labels" not in command


def test_a_frozen_reward_and_a_noise_free_person_are_arms_apart_from_the_taught_runs(tmp_path: Path) -> None:
    taught = {**flip_run("ppo", 900, 894, 0.0, airborne=0.6), "arm": "scripted person"}
    frozen = {**flip_run("ppo", 900, 894, 2.0, airborne=2.0), "arm": backflip.FROZEN}
    noise_free = {**flip_run("ppo", 900, 900, 3.0, airborne=3.0), "arm": backflip.NOISE_FREE}
    entropy = {**taught, "agent_kwargs": ["ent_coef=0.01"]}
    observed = {**taught, "reward_inputs": "observations"}
    aligned = {**taught, "policy_aligned_steps": 10000}
    bpref_fit = {**aligned, "reward_l2": 0.0, "reward_validation": backflip.NO_REWARD_VALIDATION}
    longer = {**entropy, "steps": 2_001_472}
    unpaced = {**entropy, "pace_s": [0.0, 0.0]}  # a scripted person answering at once is not a person
    rune = {**entropy, "exploration_bonus": 0.5, "exploration_decay": 1e-6}
    calibrated = {**unpaced, "person": backflip.PERSON}  # the person's noise since 2026-11-26
    runs = (
        taught,
        frozen,
        noise_free,
        entropy,
        observed,
        aligned,
        bpref_fit,
        longer,
        unpaced,
        rune,
        calibrated,
    )
    assert len({backflip.run_key(run) for run in runs}) == len(runs)  # none replaces another
    # prefrl's own L2, recorded or not (runs before it was recorded), is the same run; 0 is not.
    assert backflip.run_key({**aligned, "reward_l2": backflip.DEFAULT_REWARD_L2}) == backflip.run_key(aligned)
    assert backflip.run_key({**aligned, "reward_l2": 0.0}) != backflip.run_key(aligned)
    # A person's pace, recorded or not (runs before it was recorded), is the same run.
    assert backflip.run_key({**entropy, "pace_s": list(backflip.PERSON_PACE_S)}) == backflip.run_key(entropy)
    assert backflip.run_key({**rune, "exploration_decay": 1e-5}) != backflip.run_key(rune)
    # So is the earlier person's noise, recorded or not (runs before it was recorded).
    assert backflip.run_key({**unpaced, "person": backflip.EARLIER_PERSON}) == backflip.run_key(unpaced)
    command = backflip.train_command(backflip.Args(exploration_bonus=0.5, run_dir=tmp_path / "rune"))
    assert command is not None and command[command.index("--exploration-bonus") + 1] == "0.5"
    summary = backflip.summary([taught, frozen, noise_free])
    assert not summary["target_met"] and summary["target_met_by_frozen_reward"]
    assert summary["noise_free_person_per_algo"]["ppo"]["backflips_per_episode"] == 3.0
    assert summary["best_per_algo"]["ppo"]["backflips_per_episode"] == 0.0
    assert summary["frozen_reward_per_algo"]["ppo"]["backflips_per_episode"] == 2.0
    source = tmp_path / "taught"
    command = backflip.train_command(backflip.Args(reward_from=source, run_dir=tmp_path / "run"))
    assert command is not None and "--labels" not in command
    assert command[command.index("--teacher") + 1] == "frozen"
    assert command[command.index("--reward-from") + 1] == str(source)
    settings = backflip.Args(agent_kwargs=("ent_coef=0.01",), run_dir=tmp_path / "entropy")
    command = backflip.train_command(settings)
    assert command is not None and command[command.index("--agent-kwargs") + 1] == "ent_coef=0.01"
    command = backflip.train_command(backflip.Args(reward_inputs="observations", run_dir=tmp_path / "o"))
    assert command is not None and command[command.index("--reward-inputs") + 1] == "observations"
    command = backflip.train_command(backflip.Args(policy_aligned_steps=10000, run_dir=tmp_path / "qpa"))
    assert command is not None and command[command.index("--policy-aligned-steps") + 1] == "10000"
    command = backflip.train_command(backflip.Args(policy_aligned_steps=0, run_dir=tmp_path / "pebble"))
    assert command is not None and command[command.index("--policy-aligned-steps") + 1] == "0"
    fit = backflip.Args(reward_l2=0.0, reward_validation_share=0.0, run_dir=tmp_path / "bpref")
    command = backflip.train_command(fit)
    assert command is not None and command[command.index("--reward-l2") + 1] == "0.0"
    assert command[command.index("--reward-validation-share") + 1] == "0.0"
    assert "--reward-l2" not in (backflip.train_command(backflip.Args(run_dir=tmp_path / "plain")) or [])
    for share, held in ((0.0, backflip.NO_REWARD_VALIDATION), (None, backflip.REWARD_VALIDATION)):
        (tmp_path / "fits").mkdir(exist_ok=True)
        (tmp_path / "fits" / "config.json").write_text(json.dumps({"reward_validation_share": share}))
        assert backflip.reward_validation(tmp_path / "fits") == held
    # The window a run took is recorded: unset, a SAC run saved while QPA was the default (format 3) took it.
    sac = {"algo": "sac", "teacher": "human", "policy_aligned_steps": None}
    assert backflip.policy_aligned_steps({**sac, "format": 2}) == 0
    assert backflip.policy_aligned_steps({**sac, "format": 3}) == 10000
    assert backflip.policy_aligned_steps({**sac, "algo": "ppo", "format": 3}) == 0
    assert backflip.policy_aligned_steps({**sac, "policy_aligned_steps": 0, "format": 4}) == 0
    floor = backflip.Args(env_kwargs=("floor_clearance=True",), run_dir=tmp_path / "floor")
    command = backflip.train_command(floor)
    assert command is not None and command[command.index("--env-kwargs") + 1] == "floor_clearance=True"
    command = backflip.train_command(backflip.Args(ceiling=True, run_dir=tmp_path / "ceiling"))
    assert command is not None and command[command.index("--env-kwargs") + 1 :] == ["reward=flips"]
    # The task's settings tell runs apart, but the ceiling's own reward is not one of them.
    ceiling = {"env_kwargs": ["reward=flips"], "agent_kwargs": []}
    assert backflip.settings(ceiling) == []
    taught = {"env_kwargs": ["floor_clearance=True"], "agent_kwargs": ["ent_coef=0.01"]}
    assert backflip.settings(taught) == ["floor_clearance=True", "ent_coef=0.01"]


def turn(start: int, end: int, *, airborne: bool, landed: int | None, crashed: bool = False) -> BackwardTurn:
    return BackwardTurn(start, end, 0.9 if airborne else 0.1, airborne, landed, crashed)


def test_the_filmstrip_shows_the_first_landed_backflip_else_the_first_airborne_turn() -> None:
    rolled, airborne = turn(10, 60, airborne=False, landed=None), turn(100, 140, airborne=True, landed=None)
    landed = turn(200, 240, airborne=True, landed=250)
    assert backflip._moment([rolled, airborne, landed]) == (slice(190, 271), "landed backflip")
    assert backflip._moment([rolled, airborne]) == (slice(90, 161), "airborne turn")
    assert backflip._moment([rolled]) == (slice(0, 81), "backward turn")
    assert backflip._moment([]) == (slice(0, 100), "start")


def report_run(arm: str, seed: int, final: float | None, score: float | None = None) -> dict[str, Any]:
    return {"arm": arm, "seed": seed, "final_true_return": final, "normalized_score": score, "steps": 100_000}


def walker_sweep(tmp_path: Path) -> Sweep:
    """SAC on Walker2d, seeds 0-2, on the true reward and from 200 oracle labels (nothing run)."""
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'out = "{tmp_path / "runs"}"\nkeep = "{tmp_path / "kept"}"\nsteps = 100000\nseeds = [0, 1, 2]\n'
        '[grid]\nenv = ["prefrl/Walker2d-v0"]\nalgo = ["sac"]\nteacher = ["true-reward", "oracle"]\n'
        "labels = [200]\n"
    )
    return load_spec(spec)


def test_the_offpolicy_ratio_is_the_mean_score_over_the_seeds_both_arms_finished(tmp_path: Path) -> None:
    everything = walker_sweep(tmp_path)
    qpa = "sac oracle 200 policy_aligned_steps=10000"  # PEBBLE + QPA; the default arm is PEBBLE alone
    report = {
        "runs": [
            report_run("sac true-reward", 0, 2000.0),
            report_run("sac true-reward", 1, 1000.0),
            report_run("sac oracle 200", 0, 1800.0, 0.9),
            report_run("sac oracle 200", 1, 1200.0, 1.2),
            report_run("sac oracle 200", 2, 9999.0, 5.0),  # its baseline has not finished: left out
            report_run(qpa, 0, -100.0, 0.25),  # a negative return can still be a quarter of the way up
            report_run("sac oracle 200", 3, None),  # not far enough yet
        ],
        "summary": {"sac oracle 200": {"iqm": 0.8, "ci95": [0.5, 1.1]}},
    }
    summary = offpolicy_feedback.summary(report, everything)
    default = summary["ratio_per_arm"]["sac oracle 200"]
    assert summary["ratio"] == pytest.approx(1.05) and default["seeds"] == [0, 1]
    assert default["ratio_each_seed"] == {"0": pytest.approx(0.9), "1": pytest.approx(1.2)}
    assert default["return_ratio"] == pytest.approx(1.0)  # 1500 / 1500
    assert default["normalized_iqm"] == 0.8
    assert summary["ratio_per_arm"][qpa]["ratio"] == pytest.approx(0.25)
    assert summary["qpa_ratio"] == pytest.approx(0.25) and summary["qpa_ratio_over"] == "1 seeds"
    assert "sac true-reward" not in summary["ratio_per_arm"]
    assert summary["status"] == "partial: 0 of 6 runs recorded" and summary["target_met"] is None
    assert default["gait"]["seeds_judged"] == 0 and default["gait"]["upright_share"] is None  # none judged
    order = sorted(everything.runs, key=offpolicy_feedback.seed_by_seed)
    assert [r.name for r in order[:2]] == [
        "prefrl_Walker2d-v0-sac-true-reward-s0",
        "prefrl_Walker2d-v0-sac-oracle-200-s0",
    ]


def gait(walks_share: float, upright: float, speed: float) -> dict[str, float]:
    return {"walks_share": walks_share, "upright_share": upright, "forward_speed": speed}


def test_each_arm_says_how_many_of_its_judged_seeds_walk_beside_the_true_reward_arms(tmp_path: Path) -> None:
    runs = [
        {**report_run("sac true-reward", 0, 900.0), "gait": gait(1.0, 0.9, 1.5)},
        {**report_run("sac true-reward", 1, 800.0), "gait": None},  # its directory was gone when judged
        {**report_run("sac true-reward", 2, 700.0), "gait": gait(0.4, 0.5, 0.8)},
        {**report_run("sac oracle 200", 0, 800.0, 0.8), "gait": gait(0.6, 0.9, 1.0)},
        {**report_run("sac oracle 200", 1, 600.0, 0.6), "gait": gait(0.2, 0.1, 1.2)},
        {**report_run("sac oracle 200", 2, 500.0, 0.5), "gait": None},
    ]
    summary = offpolicy_feedback.summary({"runs": runs, "summary": {}}, walker_sweep(tmp_path))
    arm = summary["ratio_per_arm"]["sac oracle 200"]
    assert arm["gait"] == {
        "seeds_judged": 2,
        "seeds_walking": 1,  # most of seed 0's episodes walk, a fifth of seed 1's
        "upright_share": pytest.approx(0.5),
        "forward_speed": pytest.approx(1.1),
    }
    assert arm["true_reward_gait"]["seeds_judged"] == 2 and arm["true_reward_gait"]["seeds_walking"] == 1
    table = offpolicy_feedback.gait_table(summary)
    assert "| sac oracle 200 | 2 | 1 | 0.50 | 1.10 | 1 of 2, 0.70, 1.15 |" in table


def test_a_finished_runs_gait_is_judged_once_and_kept_beside_its_record(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'out = "{tmp_path / "runs"}"\nkeep = "{tmp_path / "kept"}"\nsteps = 256\nseeds = [0]\n'
        '[grid]\nenv = ["prefrl/Walker2d-v0"]\nalgo = ["ppo"]\nteacher = ["true-reward"]\n'
    )
    everything = load_spec(spec)
    (run,) = everything.runs
    assert run.record_dir is not None
    offpolicy_feedback.judge_final_gaits(everything)  # not trained yet: nothing to judge
    assert not (run.record_dir / offpolicy_feedback.GAIT_FILE).exists()
    assert main(["train", *run.args]) == 0
    run.keep_record()
    offpolicy_feedback.judge_final_gaits(everything)
    path = run.record_dir / offpolicy_feedback.GAIT_FILE
    judged = json.loads(path.read_text())
    assert judged["episodes"] == len(judged["each_episode"]) == offpolicy_feedback.GAIT_EPISODES
    assert judged["seed"] == offpolicy_feedback.GAIT_SEED and judged["rule"]["min_upright_share"] == 0.9
    assert 0.0 <= judged["upright_share"] <= 1.0 and judged["walks_share"] == 0.0  # an untrained walker
    assert all(np.isfinite(e["true_return"]) for e in judged["each_episode"])
    path.write_text(json.dumps({**judged, "upright_share": -1.0}))
    offpolicy_feedback.judge_final_gaits(everything)  # judged once: the kept judgement stays
    assert json.loads(path.read_text())["upright_share"] == -1.0
    shutil.rmtree(run.run_dir)
    report = {"runs": [{"arm": "ppo true-reward", "seed": 0, "run_dir": str(run.record_dir)}]}
    offpolicy_feedback.add_gaits(report)  # from the kept record, the run directory gone
    assert report["runs"][0]["gait"]["upright_share"] == -1.0
    assert "each_episode" not in report["runs"][0]["gait"]


def test_rewriting_the_report_keeps_a_film_whose_run_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'out = "{tmp_path / "runs"}"\nkeep = "{tmp_path / "kept"}"\nsteps = 100000\nseeds = [0]\n'
        '[grid]\nenv = ["prefrl/Walker2d-v0"]\nalgo = ["sac"]\nteacher = ["oracle"]\nlabels = [200]\n'
    )
    out = tmp_path / "results" / "offpolicy_feedback"
    out.parent.mkdir()
    film = {"clip": "offpolicy_feedback.mp4", "filmstrip": "x.png", "filmed_run": "a run filmed earlier"}
    write_json(out.with_suffix(".json"), {"runs": [], "film": film})

    def report_without_film(everything: Any, todo: Any, path: Path, cpus: Any) -> dict[str, Any]:
        write_json(path.with_suffix(".json"), {"runs": []})  # as write_report does: no film in it
        return {"runs": [], "summary": {}}

    monkeypatch.setattr(offpolicy_feedback, "sweep_and_report", report_without_film)
    monkeypatch.setattr(
        offpolicy_feedback, "summary", lambda report, everything: {"status": "x", "ratio_per_arm": {}}
    )
    offpolicy_feedback.main(offpolicy_feedback.Args(specs=(spec,), report_only=True, out=out))
    assert json.loads(out.with_suffix(".json").read_text())["film"] == film  # its run directory is not here


def test_a_runs_final_policy_is_played_on_its_env_and_filmed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["train", "--env", "prefrl/InvertedPendulum-v0", "--algo", "ppo", "--teacher", "true-reward",
            "--steps", "256", "--n-envs", "1", "--agent-kwargs", "n_steps=128", "batch_size=64",
            "--run-dir", str(run_dir), "--no-progress-bar"]  # fmt: skip
    assert main(args) == 0
    horizon = json.loads((run_dir / "spec.json").read_text())["horizon"]
    episodes = play_final_policy(run_dir, 2, seed=10_000)
    assert len(episodes) == 2
    for episode in episodes:
        assert episode.states.shape == (horizon + 1, 4)  # the reset state, then every step
        assert np.isfinite(episode.true_return)
    assert not np.allclose(episodes[0].states, episodes[1].states)  # two episodes, not one played twice

    frames = np.zeros((30, 24, 32, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(30, dtype=np.uint8)[:, None, None] * 8
    strip = tmp_path / "strip.png"
    filmstrip(frames, strip, fps=10.0, count=8, columns=4, title="a clip")
    assert Image.open(strip).size[0] > Image.open(strip).size[1] > 0


def test_the_learned_reward_check_scores_both_agents_segments_by_the_persons_score(tmp_path: Path) -> None:
    run_dir = tmp_path / "taught"
    args = ["train", "--env", "prefrl/HopperBackflip-v0", "--algo", "ppo", "--teacher", "oracle",
            "--labels", "20", "--steps", "512", "--n-envs", "1", "--segment-length", "50",
            "--reward-update-interval", "256", "--agent-kwargs", "n_steps=256", "batch_size=64",
            "--run-dir", str(run_dir), "--no-progress-bar"]  # fmt: skip
    assert main(args) == 0
    horizon = json.loads((run_dir / "spec.json").read_text())["horizon"]

    check = backflip.learned_reward_check(run_dir, run_dir, episodes=1, seed=7)

    assert check["segment_length"] == 50
    played = play_final_policy(run_dir, 1, seed=7)[0]
    scores = [backflip_progress(played.states[s + 1 : s + 51]) for s in range(0, horizon - 49, 50)]
    for side in ("own agent", "other agent"):  # the same agent on the same seed: the same segments
        assert check[side]["segments"] == horizon // 50
        assert check[side]["person_score_per_segment"] == pytest.approx(np.mean(scores), abs=1e-3)
    learned = [check[side]["learned_reward_per_segment"] for side in ("own agent", "other agent")]
    assert learned[0] == learned[1]
    for share in ("pair_agreement", "own_pair_agreement", "cross_pair_agreement"):
        assert 0.0 <= check[share] <= 1.0
    with pytest.raises(SystemExit, match="no checkpointed reward model"):
        backflip.learned_reward_check(tmp_path / "none", run_dir, episodes=1, seed=7)


def test_teachers_online_reports_from_its_kept_records_once_the_run_directories_are_gone(
    tmp_path: Path,
) -> None:
    spec = tmp_path / "teachers.toml"
    spec.write_text(
        f'out = "{tmp_path / "runs"}"\nkeep = "{tmp_path / "kept"}"\nimports = ["tests.toy_envs"]\n'
        'steps = 1024\nseeds = [0]\n[grid]\nenv = ["prefrl-test/LinearReward-v0"]\nalgo = ["ppo"]\n'
        'teacher = ["true-reward", "oracle", "mistake"]\nlabels = [20]\n'
        '[settings]\nsegment-length = 10\nreward-updates = "sync"\nreward-update-interval = 256\n'
    )
    out = tmp_path / "teachers_online.json"
    args = teachers_online.Args(spec=spec, sources=["oracle", "mistake"], report_only=True, out=out)
    assert teachers_online.main(args) == 1 and not out.exists()  # nothing run yet: nothing written

    _, piece = teachers_online.read_spec(args)
    synthetic, _ = teachers_online.sweeps(piece, spec)
    for run in synthetic.runs:  # as the sweep's tasks run them
        assert main(["train", *run.args]) == 0
    published = {"task": {"steps": 512, "seeds": [0]}, "sources": {"oracle": {}}, "note": "another piece"}
    out.write_text(json.dumps(published))
    assert teachers_online.main(args) == 0
    first = json.loads(out.read_text())
    assert set(first["runs_done"]) == {run.name for run in synthetic.runs}
    assert {p.name for p in (tmp_path / "kept").iterdir()} == {run.name for run in synthetic.runs}

    shutil.rmtree(tmp_path / "runs")  # run directories are not committed; the records are
    assert teachers_online.main(args) == 0
    again = json.loads(out.read_text())
    assert again["runs_done"] == first["runs_done"]
    assert first["earlier"] == again["earlier"] == [published]  # kept once, beside this piece's results
    for source in ("true-reward", "oracle", "mistake"):
        assert again["sources"][source]["final_true_return"] == first["sources"][source]["final_true_return"]
    for source in ("oracle", "mistake"):
        assert again["sources"][source]["normalized"] == first["sources"][source]["normalized"]
        (labels,) = again["sources"][source]["labels"]
        assert labels == first["sources"][source]["labels"][0] and labels["answers"] >= 8


def test_the_backflip_benchmark_says_what_the_labelled_clips_showed(tmp_path: Path) -> None:
    """A run whose person never saw a landed flip is told apart from one whose labels did not teach it."""
    from prefrl.label_store import LabelStore
    from prefrl.segments import Segment
    from prefrl.teachers import Answer, Preference
    from tests.test_backflip_judge import STAND, flip, rolling

    def clip(states: np.ndarray) -> Segment:
        steps = len(states)
        return Segment(np.zeros((steps, 3)), np.zeros((steps, 3)), np.zeros(steps), states=states)

    landed, crashed, rolled = flip(STAND, -2 * np.pi), flip(0.04, -2.5 * np.pi), rolling(60)
    with LabelStore(tmp_path / "labels.sqlite") as store:
        assert backflip.labelled_clips(store)["all"] == {"clips": 0}  # nothing answered yet
        first, second = store.add_queries([(clip(landed), clip(rolled)), (clip(crashed), clip(rolled))])
        store.add_answers([Answer(first.query_id, Preference.LEFT), Answer(second.query_id, Preference.LEFT)])
        shown = backflip.labelled_clips(store, last=1)
    assert shown["all"]["clips"] == 4 and shown["all"]["jumping"] == 0.5
    assert shown["all"]["turn_in_air_0.9"] == 0.5 and shown["all"]["landed_after_turn_0.9"] == 0.25
    last = {key: 0.0 for key in shown["all"] if key.startswith("landed")}
    assert shown["last_1_answers"] == {**shown["all"], "clips": 2, **last}  # the crashed flip and the roll


def test_the_backflip_benchmark_reports_the_persons_time_and_how_long_pairs_waited(tmp_path: Path) -> None:
    from prefrl.label_store import LabelStore
    from prefrl.segments import Segment
    from prefrl.teachers import Answer, Preference

    assert backflip.person_time([]) == {"answers": 0}
    # A batch of three pairs asked at t=100, answered 4 s apart, then one pair asked at 200, answered at once.
    asked, created = [100.0, 100.0, 100.0, 200.0], [104.0, 108.0, 112.0, 203.0]
    records = [
        {"asked": a, "created": c, "seconds": s}
        for a, c, s in zip(asked, created, [4.0, 4.0, 4.0, 3.0], strict=True)
    ]
    timed = backflip.person_time(records)
    assert timed["answers"] == 4 and timed["minutes_answering"] == 0.2  # 15 s
    assert timed["seconds_per_answer_median"] == 4.0
    assert timed["pair_waited_s_median"] == 6.0 and timed["pair_waited_s_max"] == 12.0
    # The store gives each answer the time its pair was asked.
    segment = Segment(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2))
    with LabelStore(tmp_path / "labels.sqlite") as store:
        (query,) = store.add_queries([(segment, segment)])
        store.add_answers([Answer(query.query_id, Preference.LEFT)], created=[time.time() + 7.0])
        (record,) = store.answer_records()
    assert 7.0 <= record["created"] - record["asked"] < 8.0


def test_the_coverage_diagnosis_cuts_aligned_segments_and_labels_them_by_the_persons_score() -> None:
    from benchmarks.backflip_coverage import cut, label
    from benchmarks.common import Episode

    steps = 81  # stand 10 steps, jump and turn 2π backwards in 51, stand 20 more
    flight = np.linspace(0, 1, 51)
    flipping = np.zeros((steps + 1, 12))
    jump = 1.22 + 5.0 * flight * (1 - flight)
    flipping[:, 1] = np.concatenate([np.full(11, 1.22), jump, np.full(20, 1.22)])
    flipping[:, 2] = np.concatenate([np.zeros(11), -2 * np.pi * flight, np.full(20, -2 * np.pi)])
    standing = np.zeros((steps + 1, 12))
    standing[:, 1] = 1.22
    step_ids = np.arange(steps, dtype=np.float64)[:, None]
    flip_episode = Episode(flipping, 0.0, step_ids, step_ids)  # observations: the step's index
    stand_episode = Episode(standing, 0.0, step_ids + 1000, step_ids)  # the standing one's from 1000

    part = cut([flip_episode], 5, 1, np.random.default_rng(1))[0]
    start = int(part.obs[0, 0])
    assert part.obs[:, 0].tolist() == list(range(start, start + 5))
    assert np.array_equal(part.states, flipping[start + 1 : start + 6])  # the state after each step

    rng = np.random.default_rng(0)
    segments = cut([flip_episode], steps, 4, rng) + cut([stand_episode], steps, 4, rng)
    assert backflip_progress(segments[0].states) > backflip_progress(segments[-1].states) + 1
    dataset, answers = label(segments, 60, rng)
    assert len(dataset) == 60 and answers["equal"] + answers["left_or_right"] == 60
    obs, _, mu = dataset.batch(np.arange(60))
    flip_left, flip_right = np.asarray(obs[:, 0, 0, 0] < 1000), np.asarray(obs[:, 1, 0, 0] < 1000)
    expected = np.where(flip_left == flip_right, 0.5, np.where(flip_left, 1.0, 0.0))
    assert np.array_equal(np.asarray(mu), expected)  # the flip preferred, like against like equal
    assert answers["equal"] == int((flip_left == flip_right).sum()) > 0


def test_the_gpu_profile_splits_the_agents_thread_into_the_loops_parts(tmp_path: Path) -> None:
    learn = "OnPolicyAlgorithm.learn (sb3/on_policy_algorithm.py:300)"
    stacks = [
        # py-spy's raw format: the thread, then the frames root first, then the sample count.
        f"thread (1): MainThread;<module> (x.py:1);{learn};DummyVecEnv.step_wait (sb3/dummy.py:70) 6",
        f"thread (1): MainThread;<module> (x.py:1);{learn};LearnedRewardVecEnv.step_wait (w.py:5);"
        "RewardEnsemble.reward (prefrl/reward_model.py:250) 3",
        f"thread (1): MainThread;<module> (x.py:1);{learn} 1",
        "thread (1): MainThread;<module> (x.py:1);PreferenceTrainer._pretrain_reward_model (t.py:9) 10",
        "thread (7): prefrl-reward-update-3;RewardEnsemble.fit (prefrl/reward_model.py:400) 4",
    ]
    raw = tmp_path / "pyspy.txt"
    raw.write_text("\n".join(stacks) + "\n")
    shares = gpu_profile.thread_shares(raw)
    assert shares["samples_per_thread"] == {"MainThread": 20, "prefrl-reward-update": 4}
    assert shares["agent_thread_learning_share"] == 0.5  # pre-training is outside learn
    parts = shares["agent_thread_while_learning"]
    assert parts["env step (ALE emulation, preprocessing, Monitor)"] == 0.6
    assert parts["learned reward per step (ensemble forward on the GPU)"] == 0.3
    assert parts["A2C gradient step"] == 0.0


def test_replaying_a_runs_answers_scores_each_batch_before_the_fit_that_learns_it(tmp_path: Path) -> None:
    from benchmarks import reward_fit_replay
    from prefrl.label_efficiency import spaces_of
    from prefrl.label_store import LabelStore
    from prefrl.reward_model import RewardEnsemble
    from prefrl.segments import Segment
    from prefrl.teachers import Answer, Preference

    rng = np.random.default_rng(0)
    w = rng.normal(size=4)

    def segment() -> Segment:
        obs = rng.normal(size=(10, 4)).astype(np.float32)
        return Segment(obs, rng.uniform(-1, 1, (10, 1)).astype(np.float32), (obs @ w).astype(np.float32))

    with LabelStore(tmp_path / "labels.sqlite") as store:
        queries = store.add_queries([(segment(), segment()) for _ in range(120)])
        better = [Preference.LEFT if q.left.true_return > q.right.true_return else Preference.RIGHT
                  for q in queries]  # fmt: skip
        store.add_answers([Answer(q.query_id, p, "person") for q, p in zip(queries, better)])
        pairs = [(q.left, q.right, a) for q, a in store.answered_pairs()]
    spec = {"initial_labels": 30, "steps": 100_000, "unsupervised_steps": 10_000,
            "reward_update_interval": 10_000, "ensemble_size": 3, "pretrain_epochs": 30}  # fmt: skip
    assert reward_fit_replay.cadence(spec, 120) == (30, 10)  # 90 answers over 9 updates
    accuracy, scored = reward_fit_replay.replay(pairs, spec, "b-pref", epochs=10, seed=0)
    assert scored == 90 and accuracy > 0.75  # every answer after the first fit, scored before learnt
    tanh, _ = reward_fit_replay.replay(pairs, spec, "b-pref", epochs=10, seed=0, activation="tanh")
    assert tanh > 0.75 and tanh != accuracy  # other units, another fit of the same answers
    # the reward of the observation alone (the run's own saw actions too: older specs do not say)
    assert reward_fit_replay.run_reward_inputs(spec) == "observations-actions"
    seen, _ = reward_fit_replay.replay(pairs, spec, "b-pref", epochs=10, seed=0, reward_inputs="observations")
    assert seen > 0.75 and seen != accuracy
    # a fit that never trains after the first predicts worse than one that does
    still, _ = reward_fit_replay.replay(pairs, {**spec, "pretrain_epochs": 1}, "b-pref", epochs=1, seed=0)
    assert still < accuracy
    # B-Pref's reward network: 3 hidden layers of 256 a member, batches of 128 pairs
    net = RewardEnsemble.for_spaces(*spaces_of(pairs[0][0]), **reward_fit_replay.FIT_SETTINGS["b-pref-net"])
    widths = [layer.out_features for layer in net.members[0].net if isinstance(layer, torch.nn.Linear)]
    assert widths == [256, 256, 256, 1] and net.batch_size == 128 and net.l2_coefs == [0.0] * 3


def _add_record(path: Path, name: str) -> None:
    with updating_json(path) as data:
        runs = data.setdefault("runs", [])
        time.sleep(0.05)  # the time a benchmark spends between reading the results and writing them
        runs.append(name)


def test_runs_started_side_by_side_each_keep_their_record_in_the_shared_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    write_json(out, {"runs": ["earlier"]})
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_record, args=(out, f"run {i}")) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0] * 6
    assert sorted(json.loads(out.read_text())["runs"]) == ["earlier", *(f"run {i}" for i in range(6))]


def test_a_results_update_that_fails_leaves_the_results_as_they_were(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    write_json(out, {"runs": ["earlier"]})
    with pytest.raises(RuntimeError), updating_json(out) as data:
        data["runs"].append("half done")
        raise RuntimeError("killed")
    assert json.loads(out.read_text()) == {"runs": ["earlier"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".results.json.lock", "results.json"]


def test_figures_are_added_to_the_runs_own_record_and_never_computed_for_a_run_not_evaluated(
    tmp_path: Path,
) -> None:
    out = tmp_path / "backflip.json"
    write_json(out, {"runs": [{"run_dir": "runs/a", "seed": 0}, {"run_dir": "runs/b", "seed": 1}]})
    backflip.add_to_record(backflip.Args(run_dir=Path("runs/b"), out=out), "extra", lambda: {"share": 0.5})
    assert json.loads(out.read_text())["runs"] == [
        {"run_dir": "runs/a", "seed": 0},
        {"run_dir": "runs/b", "seed": 1, "extra": {"share": 0.5}},
    ]

    def never() -> dict[str, Any]:
        raise AssertionError("figures computed for a run the results do not hold")

    with pytest.raises(SystemExit, match="holds no run of runs/c"):
        backflip.add_to_record(backflip.Args(run_dir=Path("runs/c"), out=out), "extra", never)


def test_label_coverage_reads_heights_speeds_and_reward_weights_of_a_planar_walker() -> None:
    from benchmarks.label_coverage import Layout, agent_coverage, label_coverage, layout_of
    from prefrl.segments import Segment

    walker = layout_of("prefrl/Walker2d-v0")
    assert walker == Layout(height_qpos=1, nq=9, fall_height=0.8)
    assert (walker.height_obs, walker.speed_obs) == (0, 8)  # qpos[1:] then qvel: z first, qvel[0] at nq - 1
    with pytest.raises(SystemExit, match="planar walkers"):
        layout_of("prefrl/HalfCheetah-v0")

    rng = np.random.default_rng(0)

    def clip(height: float) -> Segment:
        obs = rng.normal(size=(50, 17)).astype(np.float32)
        obs[:, 0] = height + 0.05 * rng.normal(size=50)
        true = obs[:, 8] + (obs[:, 0] - 0.8)  # Walker2d-v0's reward: forward speed + height above the fall
        return Segment(obs, np.zeros((50, 6), np.float32), true.astype(np.float32))

    pairs = [(clip(0.2), clip(0.2)) for _ in range(6)] + [(clip(1.2), clip(0.2)) for _ in range(2)]
    speed_only = np.concatenate([s.obs[:, 8] for pair in pairs for s in pair])
    shown = label_coverage(pairs, speed_only, walker)
    assert shown["pairs"] == 8 and shown["steps"] == 800
    assert shown["share_below_fall_height"] == pytest.approx(14 / 16, abs=0.01)
    assert shown["share_of_pairs_both_below_90pct"] == 0.75
    assert shown["true_reward_fit"]["height_per_speed"] == pytest.approx(1.0, abs=0.01)
    assert shown["true_reward_fit"]["r2"] == pytest.approx(1.0, abs=1e-3)
    assert abs(shown["learned_reward_fit"]["height_per_speed"]) < 0.05  # a reward blind to height

    # the agent: on the floor at first, then upright and moving forward
    floor, upright = np.zeros((100, 17)), np.zeros((100, 17))
    floor[:, 0], upright[:, 0], upright[:, 8] = 0.2, 1.2, 1.5
    parts = agent_coverage(np.concatenate([floor, upright]), walker, quarters=2)
    assert parts == [
        {"share_below_fall_height": 1.0, "mean_forward_speed": 0.0},
        {"share_below_fall_height": 0.0, "mean_forward_speed": 1.5},
    ]


def test_query_coverage_rebuilds_the_runs_pool_and_counts_upright_clips(monkeypatch) -> None:
    from benchmarks import query_coverage
    from benchmarks.label_coverage import layout_of
    from prefrl.segments import Segment

    # Three 10-step episodes, segments of 4: two per episode (the last 2 steps of each left out, as the run
    # cuts them); a pool of 4 keeps the newest four.
    steps = np.arange(30, dtype=np.float32)
    buffer = {"observations": steps[:, None, None].repeat(17, axis=2), "actions": np.zeros((30, 1, 6))}
    monkeypatch.setattr(query_coverage, "POOL_CAPACITY", 4)
    pool = query_coverage.pool_at(buffer, segment_length=4, horizon=10)
    assert [int(pool[i].obs[0, 0]) for i in range(len(pool))] == [10, 14, 20, 24]
    assert all(len(pool[i]) == 4 for i in range(len(pool)))

    walker = layout_of("prefrl/Walker2d-v0")

    def clip(height: float) -> Segment:
        obs = np.zeros((10, 17), np.float32)
        obs[:, 0] = height
        return Segment(obs, np.zeros((10, 6), np.float32), np.zeros(10))

    shown = query_coverage.shown([(clip(1.2), clip(0.2)), (clip(0.2), clip(0.3))], walker)
    assert shown == {"share_of_steps_upright": 0.25, "share_of_pairs_both_below_90pct": 0.5}
