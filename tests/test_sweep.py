import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tests.toy_envs  # noqa: F401  (registers prefrl-test/LinearReward-v0)
from prefrl.cli import main
from prefrl.config import TrainConfig
from prefrl.metrics import read_metrics
from prefrl.sweep import load_spec, run_name
from tests.helpers import child_env

TOY = "prefrl-test/LinearReward-v0"


def write_spec(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\nimports = ["tests.toy_envs"]\n' + body)
    return path


def test_the_grid_expands_to_one_run_per_combination_and_seed(tmp_path):
    spec = write_spec(
        tmp_path,
        f"""
steps = 1024
seeds = [0, 1]
[grid]
env = ["{TOY}"]
teacher = ["true-reward", "oracle"]
labels = [20, 40]
[settings]
segment-length = 10
[[override]]
match = {{ labels = 40 }}
steps = 2048
n-envs = 2
""",
    )
    sweep = load_spec(spec)
    names = [run.name for run in sweep.runs]
    assert len(names) == len(set(names)) == 2 + 2 * 2  # true-reward ignores the label budgets
    forty = [run for run in sweep.runs if "-oracle-40-" in run.name]
    assert len(forty) == 2 and all(run.steps == 2048 for run in forty)
    assert all("--n-envs" in run.args and "2" in run.args for run in forty)  # named by their labels only
    assert all("n-envs" not in run.name for run in sweep.runs)
    assert all(
        "--segment-length" in run.args and run.run_dir.parent == tmp_path / "runs" for run in sweep.runs
    )


def test_a_yaml_spec_gives_the_same_runs_as_toml(tmp_path):
    toml = write_spec(
        tmp_path,
        f"""
steps = 1024
seeds = [0, 1]
[grid]
env = ["{TOY}"]
teacher = ["true-reward", "oracle"]
labels = [20]
[settings]
segment-length = 10
""",
    )
    yaml = tmp_path / "sweep.yaml"
    yaml.write_text(
        f"""
out: {tmp_path / "runs"}
imports: [tests.toy_envs]
steps: 1024
seeds: [0, 1]
grid:
  env: ["{TOY}"]
  teacher: [true-reward, oracle]
  labels: [20]
settings:
  segment-length: 10
"""
    )
    assert [(r.name, r.args) for r in load_spec(yaml).runs] == [
        (r.name, r.args) for r in load_spec(toml).runs
    ]


def test_a_run_begun_with_other_settings_is_an_error_before_anything_starts(tmp_path, capsys):
    spec = write_spec(tmp_path, f'steps = 1024\n[grid]\nenv = ["{TOY}"]\n[settings]\nsegment-length = 10\n')
    (run,) = load_spec(spec).runs
    run.run_dir.mkdir(parents=True)
    earlier = TrainConfig(env=TOY, steps=512, segment_length=10, run_dir=run.run_dir)
    earlier.save(run.run_dir / "config.json")
    assert main(["sweep", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run with steps = 512, the spec now says 1024" in err and "\n" not in err
    assert sorted(p.name for p in run.run_dir.iterdir()) == ["config.json"]


def test_a_kept_record_of_a_setting_since_taken_out_of_the_spec_is_an_error(tmp_path, capsys):
    keep = tmp_path / "kept"
    spec = write_spec(tmp_path, f'steps = 1024\nkeep = "{keep}"\n[grid]\nenv = ["{TOY}"]\n')
    (run,) = load_spec(spec).runs
    assert run.record_dir is not None
    run.record_dir.mkdir(parents=True)
    earlier = TrainConfig(env=TOY, steps=1024, segment_length=10, run_dir=run.run_dir)  # the spec set it then
    earlier.save(run.record_dir / "config.json")
    assert main(["sweep", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds a run with segment-length = 10, the spec now says None" in err and "\n" not in err
    assert not run.run_dir.exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ("[grid\n", "is not valid TOML"),
        ("steps = 10\n", "needs `out` (a directory) and a [grid] table"),
        (f'colour = 1\n[grid]\nenv = ["{TOY}"]\n', "unknown keys colour"),
        (f'keep = 3\n[grid]\nenv = ["{TOY}"]\n', "keep must be a directory's path"),
        (f'[grid]\nenv = ["{TOY}"]\nlabels = [-5]\n', "--labels must be >= 0"),
        (f'[grid]\nenv = ["{TOY}"]\nalgo = "ppo"\n', "algo must be a non-empty list"),
        ('[grid]\nenv = ["Nope-v9"]\n', "unknown env id 'Nope-v9'"),
        (f'[grid]\nenv = ["{TOY}"]\n[settings]\nquery-selection = "clever"\n', "invalid choice 'clever'"),
    ],
)
def test_a_bad_spec_is_a_one_line_error_before_anything_starts(tmp_path, capsys, body, message):
    spec = write_spec(tmp_path, body)
    assert main(["sweep", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prefrl: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "runs").exists()


# Two sweeps of 4 runs on 2 cores, beside another test worker: 145 s measured; 330 s with two SAC benchmark
# runs on the same cores, where the 240 s that the first sweep was given ran out before any run finished.
@pytest.mark.timeout(900)
def test_a_killed_sweep_run_again_skips_finished_runs_and_resumes_the_rest(tmp_path):
    spec = write_spec(
        tmp_path,
        f"""
steps = 3072
seeds = [0, 1]
runs_per_core = 2   # all four at once on two cores
[grid]
env = ["{TOY}"]
teacher = ["true-reward", "oracle"]
labels = [20]
[settings]
segment-length = 10
reward-update-interval = 512
checkpoint-interval = 512
[[override]]
match = {{ teacher = "oracle" }}
steps = 6144
""",
    )
    runs = load_spec(spec).runs
    env = child_env()
    command = [sys.executable, "-m", "prefrl", "sweep", str(spec)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 480
    while time.time() < deadline and not (
        any(run.finished for run in runs) and any(0 < run.steps_done() < run.steps for run in runs)
    ):
        time.sleep(0.5)
    # Part way (a short run is done, a long one has a checkpoint), `kill` it: SIGTERM, which Ray's own handler
    # would turn into an exit without checkpoints (Ctrl-C's SIGINT takes the same path as SIGTERM here).
    first.send_signal(signal.SIGTERM)
    _, stopped = first.communicate(timeout=120)  # after its runs wrote their checkpoints and exited
    finished_first = {run.name for run in runs if run.finished}
    checkpointed = {run.name: run.steps_done() for run in runs if 0 < run.steps_done() < run.steps}
    assert first.returncode == 130 and "run the same command again" in stopped
    assert finished_first and checkpointed, {run.name: run.steps_done() for run in runs}

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert all(run.finished for run in runs)
    for run in runs:
        expected = "skipped (finished earlier)" if run.name in finished_first else "finished"
        assert f"{run.name}: {expected}" in again.stdout
        if run.name in checkpointed:  # resumed from its checkpoint, not begun again
            assert (run.run_dir / "logs" / "session-1").exists()
            assert f"prefrl resume {run.run_dir}" in (run.run_dir / "train.log").read_text()
            steps = read_metrics(run.run_dir / "metrics.csv")["step"]
            assert (np.diff(steps) > 0).all() and steps[-1] >= run.steps


def test_a_failed_run_is_reported_and_the_others_finish_and_are_kept(tmp_path):
    spec = write_spec(
        tmp_path,
        f"""
steps = 1024
keep = "{tmp_path / "kept"}"
[grid]
env = ["{TOY}"]
teacher = ["true-reward", "oracle"]
labels = [20]
[settings]
segment-length = 10
""",
    )
    runs = load_spec(spec).runs
    broken = next(run for run in runs if "oracle" in run.name)
    broken.run_dir.mkdir(parents=True)
    (broken.run_dir / "config.json").write_text("{ not json")  # resuming it fails at once
    env = child_env()
    done = subprocess.run(
        [sys.executable, "-m", "prefrl", "sweep", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert (
        f"{broken.name}: failed (exit 2)" in done.stdout and "not valid JSON" in done.stdout
    )  # its log's tail
    assert all(run.finished for run in runs if run is not broken)

    # The finished runs' records are kept: with their directories gone they still count as finished
    # (a later sitting goes on from what is committed) and `prefrl report` reads them.
    good = [run for run in runs if run is not broken]
    assert not (tmp_path / "kept" / broken.name).exists()
    for run in good:
        assert sorted(p.name for p in run.record_dir.iterdir()) == [
            "config.json",
            "metrics.csv",
            "record.json",
            "spec.json",
        ]
        shutil.rmtree(run.run_dir)
    assert all(run.finished for run in load_spec(spec).runs if run.name != broken.name)
    assert main(["report", str(tmp_path / "kept"), "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report.json").exists()


def test_a_local_sweep_uses_only_the_cores_it_may_run_on(monkeypatch):
    from prefrl import sweep

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert sweep.local_cpus() == 1  # `taskset -c 3`: Ray alone would count 16
    assert sweep.local_cpus(4) == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert sweep.local_cpus() is None  # every core: Ray's own count (container quotas included)


@pytest.mark.parametrize(
    "flags, message",
    [(["--cpus", "0"], "--cpus must be >= 1"), (["--cpus", "2", "--address", "auto"], "local Ray")],
)
def test_bad_sweep_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    spec = write_spec(tmp_path, f'[grid]\nenv = ["{TOY}"]\n')
    assert main(["sweep", str(spec), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "runs").exists()


def test_off_a_terminal_progress_is_a_line_per_change_and_one_every_few_minutes(tmp_path, capsys):
    from prefrl.sweep import _LiveTable

    sweep = load_spec(
        write_spec(tmp_path, f'steps = 1024\n[grid]\nenv = ["{TOY}"]\nteacher = ["true-reward"]\n')
    )
    status: dict[str, str] = {}
    table = _LiveTable(sweep, status, time.time())
    table.show(sweep.runs)
    table.show(sweep.runs)  # nothing changed, and too soon for another line
    assert len(capsys.readouterr().err.splitlines()) == 1
    table.LINE_EVERY_S = 0.0
    table.show(sweep.runs)  # nothing changed, but the interval has passed
    status[sweep.runs[0].name] = "finished"
    table.LINE_EVERY_S = 300.0
    table.show([])  # a run ended
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[1].startswith("1 done, 0 running")
    table.close()


def test_runs_that_ask_for_no_labels_are_named_without_a_label_budget():
    for teacher in ("true-reward", "frozen"):
        name = run_name({"env": TOY, "teacher": teacher, "labels": 700, "seed": 1}, {"env", "teacher"})
        assert name == f"{TOY.replace('/', '_')}-ppo-{teacher}-s1"
    assert run_name({"env": TOY, "teacher": "oracle", "seed": 1}, {"env"}).endswith("-oracle-700-s1")
