import subprocess
import sys

import pytest

import tests.toy_envs  # noqa: F401
from prefrl.cli import main

TOY = "prefrl-test/LinearReward-v0"


def run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
        (["--env", TOY, "--algo", "dqn"], "unknown algo 'dqn'; choose one of: a2c, ppo, trpo, sac"),
        (["--env", TOY, "--teacher", "psychic"], "unknown teacher 'psychic'"),
        (["--env", TOY, "--segment-length", "60"], "is longer than the env horizon (50)"),
        (["--env", TOY, "--fit-threads", "0"], "--fit-threads must be >= 1; got 0"),
        (["--env", TOY, "--labels", "10", "--initial-labels", "20"], "smaller than the initial share"),
        (["--env", "CartPole-v1", "--algo", "sac"], "sac needs a continuous (Box) action space"),
        (["--env", TOY, "--env-kwargs", "obs_dim"], "--env-kwargs takes KEY=VALUE items"),
        (["--env", TOY, "--env-kwargs", "colour=red"], "does not accept --env-kwargs colour='red'"),
        (["--env", "prefrl/Hopper-v0", "--env-kwargs", "upright=alive"], "unknown upright term 'alive'"),
    ],
)
def test_train_errors_are_one_line(capsys, tmp_path, args, message):
    code, err = run_cli(capsys, "train", *args, "--run-dir", str(tmp_path / "run"))
    assert code == 2
    assert err.startswith("prefrl: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists()  # nothing written for a rejected run


def test_run_dir_holding_a_different_run_is_refused(capsys, tmp_path):
    run_dir = tmp_path / "run"
    base = [
        "train",
        "--env",
        TOY,
        "--teacher",
        "true-reward",
        "--steps",
        "256",
        "--run-dir",
        str(run_dir),
        "--no-progress-bar",
        "--n-envs",
        "1",
    ]
    assert main(base) == 0
    capsys.readouterr()
    code, err = run_cli(capsys, *base[:-2], "--seed", "1", "--n-envs", "1")
    assert code == 2 and "already holds a different run" in err and "prefrl resume" in err
    code, err = run_cli(capsys, *base)
    assert code == 2 and "already holds this run" in err


def test_resume_and_plot_need_a_run(capsys, tmp_path):
    code, err = run_cli(capsys, "resume", str(tmp_path))
    assert code == 2 and "holds no prefrl run" in err
    code, err = run_cli(capsys, "plot", str(tmp_path), "--out", str(tmp_path / "x.png"))
    assert code == 2 and "no metrics.csv" in err


def test_plot_writes_a_png(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--env",
                TOY,
                "--labels",
                "20",
                "--steps",
                "1024",
                "--segment-length",
                "10",
                "--reward-update-interval",
                "256",
                "--run-dir",
                str(run_dir),
                "--no-progress-bar",
            ]
        )
        == 0
    )
    assert "done: 1024 steps" in capsys.readouterr().out
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "curve.png")]) == 0
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_command_and_real_entry_point_exit_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "prefrl", "train", "--env", "Nope-v0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("prefrl: error: unknown env id")
    proc = subprocess.run([sys.executable, "-m", "prefrl", "fly"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown command 'fly'" in proc.stderr


def test_resume_may_change_how_a_run_is_computed_but_not_what(capsys, tmp_path, monkeypatch):
    import prefrl.trainer
    from prefrl.config import TrainConfig

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    TrainConfig(env=TOY, run_dir=run_dir, labels=50).save(run_dir / "config.json")
    resumed = []

    class Recorder:
        def __init__(self, config, resume):
            resumed.append(config)
            raise KeyboardInterrupt  # stop before training

    monkeypatch.setattr(prefrl.trainer, "PreferenceTrainer", Recorder)
    assert main(["resume", str(run_dir), "--threads", "2", "--fit-threads", "2"]) == 130
    assert (resumed[0].threads, resumed[0].fit_threads, resumed[0].labels) == (2, 2, 50)
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["resume", str(run_dir), "--labels", "80"])
    assert refused.value.code == 2 and "--labels" in capsys.readouterr().err  # the experiment is fixed
