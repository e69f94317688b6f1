import json

import numpy as np
import pytest

from prefrl.cli import main
from prefrl.metrics import MetricsLog
from prefrl.report import find_runs, write_report

TASKS = ("prefrl/Hopper-v0", "prefrl/Walker2d-v0", "prefrl/Swimmer-v0")


def fake_run(root, env, teacher, seed, final, steps=1000, start=0.0, **settings):
    """A run directory whose true return climbs linearly from ``start`` (its first episodes, at step 100)
    to ``final`` at step 800 and stays there: its final true return (last 10 % of steps) is ``final``."""
    labels = 0 if teacher == "true-reward" else 700
    name = "".join(f"-{k}={v}" for k, v in settings.items())
    run_dir = root / f"{env.replace('/', '_')}-{teacher}{name}-s{seed}"
    run_dir.mkdir(parents=True)
    config = {"env": env, "algo": "ppo", "teacher": teacher, "labels": labels, "seed": seed, "steps": steps}
    (run_dir / "config.json").write_text(json.dumps({**config, **settings}))
    log = MetricsLog(run_dir / "metrics.csv")
    for step in range(100, steps + 1, 100):
        value = start + (final - start) * min(1.0, (step - 100) / 700)
        log.append(step=step, wall_s=step / 10, episodes=1, true_return=value, learned_return=0, labels=0,
                   val_accuracy=float("nan"), fresh_accuracy=float("nan"))  # fmt: skip
    return run_dir


def test_the_report_normalises_by_the_true_reward_arm_and_takes_the_iqm(tmp_path):
    # Normalised scores per task: 0.5, 0.9, 1.3 (the same for every seed); the IQM of a 3 × 3 matrix of
    # those is the mean of the middle 50 %: 0.9.
    for task, ratio in zip(TASKS, (0.5, 0.9, 1.3)):
        for seed in range(3):
            fake_run(tmp_path / "runs", task, "true-reward", seed, 200.0)
            fake_run(tmp_path / "runs", task, "oracle", seed, 200.0 * ratio)
    data = write_report([tmp_path / "runs"], tmp_path / "out" / "table")
    summary = data["summary"]["ppo oracle 700"]
    assert summary["iqm"] == pytest.approx(0.9, abs=1e-6)
    assert summary["ci95"][0] <= 0.9 <= summary["ci95"][1]
    assert summary["mean"] == pytest.approx(0.9) and summary["mean_ci95"][0] <= 0.9 <= summary["mean_ci95"][1]
    assert summary["per_task"]["prefrl/Swimmer-v0"] == pytest.approx(1.3, rel=1e-6)
    profile = summary["performance_profile"]  # a third of the runs score above 1.0, none above 1.3
    assert profile["fraction"][profile["tau"].index(1.0)] == pytest.approx(1 / 3)
    assert profile["fraction"][-1] == 0.0 and profile["tau"][-1] == 1.5
    assert len(data["runs"]) == 18
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert (
        "| prefrl/Hopper-v0 | ppo oracle 700 | 3/3 |" in markdown and "| ppo oracle 700 | 0.90 |" in markdown
    )
    assert (tmp_path / "out" / "table.png").read_bytes()[:4] == b"\x89PNG"


def test_a_task_with_fewer_finished_seeds_is_left_out_of_the_iqm_instead_of_shrinking_it(tmp_path):
    # Hopper and Walker2d have three seeds of each arm, Swimmer's preference arm only one so far. The IQM
    # covers 2 tasks × 3 seeds (6 runs) rather than 3 tasks × 1 seed (3 runs) and names Swimmer.
    for task, ratio in zip(TASKS[:2], (0.6, 1.0)):
        for seed in range(3):
            fake_run(tmp_path, task, "true-reward", seed, 200.0)
            fake_run(tmp_path, task, "oracle", seed, 200.0 * ratio * (1 + 0.1 * (seed - 1)))
    for seed in range(3):
        fake_run(tmp_path, TASKS[2], "true-reward", seed, 200.0)
    fake_run(tmp_path, TASKS[2], "oracle", 0, 20.0)
    summary = write_report([tmp_path], tmp_path / "out")["summary"]["ppo oracle 700"]
    assert (summary["tasks"], summary["runs_per_task"]) == (2, 3)
    assert summary["tasks_left_out"] == ["prefrl/Swimmer-v0"]
    assert summary["per_task"]["prefrl/Swimmer-v0"] == pytest.approx(0.1)  # listed, not aggregated
    assert summary["ci95"][1] > summary["ci95"][0]  # three seeds: a real interval
    assert summary["mean"] == pytest.approx(0.8)
    assert "prefrl/Swimmer-v0 left out of the IQM" in (tmp_path / "out.md").read_text()


def test_scores_run_from_the_untrained_policy_to_the_true_reward_arm_even_below_zero(tmp_path):
    # Reacher-like: returns are negative. The untrained policy gets -40, the true-reward arm -5 and the
    # preference arm -10: 30/35 of the way, where a plain ratio (-10 / -5 = 2) would call it twice as good.
    for seed in range(2):
        fake_run(tmp_path, "prefrl/Reacher-v0", "true-reward", seed, -5.0, start=-40.0)
        fake_run(tmp_path, "prefrl/Reacher-v0", "oracle", seed, -10.0, start=-40.0)
    data = write_report([tmp_path], tmp_path / "out")
    assert data["summary"]["ppo oracle 700"]["iqm"] == pytest.approx(30 / 35)
    oracle = [r for r in data["runs"] if r["teacher"] == "oracle"]
    assert [r["normalized_score"] for r in oracle] == pytest.approx([30 / 35] * 2)


def test_a_setting_that_differs_between_preference_runs_of_a_task_makes_its_own_arm(tmp_path):
    for seed in range(2):  # segment_length: a per-task setting, the same for every run of the task
        fake_run(tmp_path, TASKS[0], "true-reward", seed, 100.0, segment_length=20)
        fake_run(tmp_path, TASKS[0], "oracle", seed, 50.0, query_selection="uniform", segment_length=20)
        fake_run(tmp_path, TASKS[0], "oracle", seed, 80.0, query_selection="disagreement", segment_length=20)
    summary = write_report([tmp_path], tmp_path / "out")["summary"]
    assert summary["ppo oracle 700 query_selection=uniform"]["iqm"] == pytest.approx(0.5)
    assert summary["ppo oracle 700"]["iqm"] == pytest.approx(0.8)  # prefrl train's default is not named
    assert len(summary) == 2


def test_a_lone_preference_arm_away_from_the_defaults_is_named_by_what_it_changes(tmp_path):
    # One preference arm, so nothing differs between the task's preference runs: its reward settings still
    # name it (it is not prefrl's default arm); the agent's learning rate, shared with the true-reward
    # runs, does not.
    for seed in range(2):
        fake_run(tmp_path, TASKS[0], "true-reward", seed, 100.0, learning_rate=1e-3)
        fake_run(tmp_path, TASKS[0], "oracle", seed, 90.0, learning_rate=1e-3, reward_l2=0.0)
    summary = write_report([tmp_path], tmp_path / "out")["summary"]
    assert sorted(summary) == ["ppo oracle 700 reward_l2=0.0"]
    # Without the true-reward runs nothing tells the reward setting from a per-task one: neither names it.
    alone = [run.arm for run in find_runs(sorted(tmp_path.glob("*oracle*")))]
    assert alone == ["ppo oracle 700", "ppo oracle 700"]


def test_an_ablation_grid_names_only_the_settings_each_arm_changes(tmp_path):
    # PEBBLE and its QPA and SURF arms, as benchmarks/results/offpolicy_runs records them: every setting
    # varies between the task's preference runs, but each arm is named by what it sets away from the
    # default; SURF's settings are retired, and the PEBBLE arm's "off" values are not named either.
    for seed in range(2):
        fake_run(tmp_path, TASKS[0], "true-reward", seed, 100.0)
    fake_run(tmp_path, TASKS[0], "oracle", 0, 50.0, crop_steps=0, policy_aligned_steps=None)
    fake_run(tmp_path, TASKS[0], "oracle", 0, 60.0, crop_steps=0, policy_aligned_steps=10000)
    fake_run(tmp_path, TASKS[0], "oracle", 0, 70.0, crop_steps=5, pseudo_label_threshold=0.99)
    fake_run(tmp_path, TASKS[0], "oracle", 1, 55.0)  # saved after SURF went: neither setting in its config
    summary = write_report([tmp_path], tmp_path / "out")["summary"]
    assert sorted(summary) == [
        "ppo oracle 700",
        "ppo oracle 700 crop_steps=5 pseudo_label_threshold=0.99",
        "ppo oracle 700 policy_aligned_steps=10000",
    ]
    assert summary["ppo oracle 700"]["runs_per_task"] == 2  # the run saved without SURF's keys joins PEBBLE


def test_off_policy_arms_are_named_by_the_qpa_window_they_took_whatever_the_default_was(tmp_path):
    # Format 2: an unset window was plain PEBBLE. Format 3 (QPA on by default for off-policy agents): unset
    # is QPA's window. Format 4: PEBBLE alone is the default again, so QPA's arm is the one named.
    for seed in range(2):
        fake_run(tmp_path, TASKS[0], "true-reward", seed, 100.0, algo="sac")
    fake_run(tmp_path, TASKS[0], "oracle", 0, 40.0, algo="sac", policy_aligned_steps=None, format=2)
    fake_run(tmp_path, TASKS[0], "oracle", 1, 60.0, algo="sac", policy_aligned_steps=10000, format=2)
    fake_run(tmp_path, TASKS[0], "oracle", 2, 80.0, algo="sac", policy_aligned_steps=None, format=3)
    fake_run(tmp_path, TASKS[0], "oracle", 3, 20.0, algo="sac", policy_aligned_steps=0, format=3)
    fake_run(tmp_path, TASKS[0], "oracle", 4, 30.0, algo="sac", policy_aligned_steps=0, format=4)
    fake_run(tmp_path, TASKS[0], "oracle", 5, 70.0, algo="sac", policy_aligned_steps=10000, format=4)
    arms = {run.seed: run.arm for run in find_runs([tmp_path]) if run.teacher == "oracle"}
    qpa = "sac oracle 700 policy_aligned_steps=10000"
    assert arms == {0: "sac oracle 700", 1: qpa, 2: qpa, 3: "sac oracle 700", 4: "sac oracle 700", 5: qpa}


def test_an_arm_keeps_one_colour_in_every_panel(tmp_path, monkeypatch):
    # Hopper has a 350-label arm that Walker2d lacks, so the true-reward arm is the third curve on Hopper
    # and the second on Walker2d: it must still be drawn in the same colour, in the profile panel too.
    for seed in range(2):
        for task in TASKS[:2]:
            fake_run(tmp_path, task, "true-reward", seed, 100.0)
            fake_run(tmp_path, task, "oracle", seed, 80.0, labels=700)
        fake_run(tmp_path, TASKS[0], "oracle", seed, 60.0, labels=350)
    drawn: list[dict[str, tuple]] = []

    def record_colours(fig, *args, **kwargs):
        for ax in fig.axes:
            drawn.append({line.get_label().split(" (")[0]: line.get_color() for line in ax.get_lines()})

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", record_colours)
    write_report([tmp_path], tmp_path / "out")
    hopper, walker, profile = drawn[:3]
    assert len(hopper) == 3 and len(walker) == 2 and len(profile) == 2
    assert hopper["ppo true-reward"] == walker["ppo true-reward"]
    assert hopper["ppo oracle 700"] == walker["ppo oracle 700"] == profile["ppo oracle 700"]
    assert len(set(hopper.values())) == 3


def test_unfinished_runs_are_listed_not_scored(tmp_path, capsys):
    fake_run(tmp_path, TASKS[0], "true-reward", 0, 100.0)
    short = fake_run(tmp_path, TASKS[0], "oracle", 0, 80.0)
    config = json.loads((short / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "steps": 10_000}))  # far from done
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["summary"] == {} and any(r["final_true_return"] is None for r in data["runs"])
    assert "not finished" in capsys.readouterr().out
    assert np.isfinite([r["final_true_return"] for r in data["runs"] if r["teacher"] == "true-reward"]).all()


def test_a_path_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no prefrl runs" in capsys.readouterr().err
