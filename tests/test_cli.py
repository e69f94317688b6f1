import os
import signal
import subprocess
import sys
import time

import pytest

import tests.toy_envs  # noqa: F401
from prefrl.cli import main, stop_signals_checkpoint

TOY = "prefrl-test/LinearReward-v0"


def run_cli(capsys, *args):
    code = main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
        (["--env", TOY, "--algo", "dqn"], "invalid choice 'dqn' for argument '--algo'"),
        (["--env", TOY, "--teacher", "psychic"], "invalid choice 'psychic' for argument '--teacher'"),
        (
            ["--env", TOY, "--query-selection", "bogus"],
            "invalid choice 'bogus' for argument '--query-selection'",
        ),
        (["--env", TOY, "--reward-updates", "later"], "invalid choice 'later'"),
        (["--env", TOY, "--steps", "many"], "Error parsing --steps"),
        (["--env", TOY, "--ensemble-size", "0"], "--ensemble-size must be >= 1; got 0"),
        (["--env", TOY, "--oversample", "0"], "--oversample must be >= 1; got 0"),
        (["--env", TOY, "--dropout", "1.5"], "--dropout is a probability in [0, 1); got 1.5"),
        (["--env", TOY, "--n-envs", "0"], "--n-envs must be >= 1; got 0"),
        (["--env", TOY, "--pretrain-epochs", "0"], "--pretrain-epochs must be >= 1"),
        (["--env", TOY, "--reward-update-interval", "0"], "--reward-update-interval must be >= 1"),
        (["--env", TOY, "--checkpoint-interval", "0"], "--checkpoint-interval must be >= 1"),
        (["--env", TOY, "--max-labels-kept", "1"], "--max-labels-kept must be >= 2"),
        (["--env", TOY, "--rate-constant", "0"], "--rate-constant must be a positive number"),
        (["--env", TOY, "--output-std", "-1"], "--output-std must be a positive number"),
        (["--env", TOY, "--reward-pairs-per-step", "-1"], "--reward-pairs-per-step must be >= 0"),
        (["--env", TOY, "--seed", "-1"], "--seed must be >= 0"),
        (["--env", TOY, "--steps", "0"], "--steps must be >= 1"),
        (["--env", TOY, "--labels", "1"], "needs --labels >= 2"),
        (["--env", TOY, "--initial-labels", "0"], "needs initial labels"),
        (["--env", TOY, "--device", "tpu"], "--device 'tpu' is not a torch device"),
        (["--env", TOY, "--device", "cuda:7"], "--device cuda:7"),
        (["--env", TOY, "--segment-length", "60"], "is longer than the env horizon (50)"),
        (["--env", TOY, "--fit-threads", "0"], "--fit-threads must be >= 1; got 0"),
        (["--env", TOY, "--labels", "10", "--initial-labels", "20"], "smaller than the initial share"),
        (["--env", "CartPole-v1", "--algo", "sac"], "sac needs a continuous (Box) action space"),
        (["--env", "CartPole-v1", "--algo", "td3"], "td3 needs a continuous (Box) action space"),
        (["--env", TOY, "--unsupervised-steps", "100"], "--unsupervised-steps is PEBBLE's exploration"),
        (["--env", TOY, "--algo", "sac", "--steps", "500", "--unsupervised-steps", "500"], "leaves no steps"),
        (["--env", TOY, "--env-kwargs", "obs_dim"], "--env-kwargs takes KEY=VALUE items"),
        (["--env", TOY, "--env-kwargs", "colour=red"], "does not accept --env-kwargs colour='red'"),
        (["--env", "prefrl/Hopper-v0", "--env-kwargs", "upright=alive"], "unknown upright term 'alive'"),
        (["--env", TOY, "--agent-kwargs", "gamma"], "--agent-kwargs takes KEY=VALUE items"),
        (["--env", TOY, "--policy-aligned-steps", "15"], "holds fewer than two segments of 30 steps"),
        (["--env", TOY, "--hybrid-replay-share", "0.5"], "--hybrid-replay-share is QPA's replay"),
        (
            ["--env", TOY, "--teacher", "true-reward", "--policy-aligned-steps", "1000"],
            "--policy-aligned-steps chooses queries (QPA)",
        ),
        (["--env", TOY, "--teacher", "frozen"], "--teacher frozen trains on another run's reward"),
        (
            ["--env", TOY, "--teacher", "true-reward", "--fit-when-answered"],
            "--fit-when-answered fits the reward model on new answers; a --teacher true-reward run",
        ),
        (
            ["--env", TOY, "--teacher", "true-reward", "--labels-by", "100"],
            "--labels-by paces the label requests; a --teacher true-reward run asks for none",
        ),
        (["--env", TOY, "--steps", "1000", "--labels-by", "2000"], "--labels-by 2000 is past the run's end"),
        (["--env", TOY, "--exploration-bonus", "-1"], "--exploration-bonus must be a number >= 0"),
        (["--env", TOY, "--reward-l2", "-0.1"], "--reward-l2 must be a number >= 0 (0: no L2 penalty)"),
        (["--env", TOY, "--reward-validation-share", "1"], "--reward-validation-share is a share in [0, 1)"),
        (["--env", TOY, "--exploration-decay", "1"], "--exploration-decay is a rate per env step in [0, 1)"),
        (
            ["--env", TOY, "--teacher", "true-reward", "--exploration-bonus", "0.1"],
            "a --teacher true-reward run has no reward model",
        ),
        (
            ["--env", "prefrl/PongNoScore-v0", "--exploration-bonus", "0.1"],
            "--exploration-bonus is for vector observations",
        ),
        (
            ["--env", "prefrl/PongNoScore-v0", "--query-selection", "kcenter-disagreement"],
            "--query-selection kcenter-disagreement compares vector observations",
        ),
        (["--env", TOY, "--query-selection", "kcentre"], "invalid choice 'kcentre'"),
        (["--env", TOY, "--reward-inputs", "actions"], "invalid choice 'actions'"),
        (
            ["--env", "prefrl/PongNoScore-v0", "--reward-inputs", "observations-actions"],
            "the reward CNN for frame stacks sees the frames only",
        ),
        (["--env", TOY, "--reward-activation", "relu"], "invalid choice 'relu'"),
        (
            ["--env", "prefrl/PongNoScore-v0", "--reward-activation", "tanh"],
            "the reward CNN for frame stacks keeps its own",
        ),
        (["--env", TOY, "--reward-from", "runs/x"], "--reward-from is for --teacher frozen"),
        (["--env", TOY, "--teacher", "frozen", "--reward-from", "no/such/run"], "holds no learned reward"),
        (["--env", TOY, "--agent-kwargs", "n_step=512"], "--agent-kwargs n_step: PPO takes no such argument"),
        (["--env", TOY, "--agent-kwargs", "seed=3"], "--agent-kwargs seed: set by prefrl (use --seed)"),
        (["--env", TOY, "--agent-kwargs", "policy_kwargs=[64]"], "policy_kwargs must be a JSON object"),
        (
            ["--env", TOY, "--agent-kwargs", 'policy_kwargs={"activation_fn": "nn.ReLU"}'],
            "activation_fn 'nn.ReLU': choose one of tanh, relu",
        ),
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


def test_help_lists_every_command_with_its_summary(capsys):
    assert main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines if line.startswith("  ")}
    assert set(listed) == {"train", "resume", "plot", "sweep", "report", "envs", "label", "labels"}
    assert "labeling GUI" in listed["label"] and "compare" in listed["labels"]
    assert main([]) == 2  # no command: the same list, as an error


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
    assert main(["resume", str(run_dir), "--threads", "2", "--fit-threads", "2", "--no-progress-bar"]) == 130
    assert (resumed[0].threads, resumed[0].fit_threads, resumed[0].labels) == (2, 2, 50)
    assert resumed[0].progress_bar is False
    capsys.readouterr()
    code, err = run_cli(capsys, "resume", str(run_dir), "--labels", "80")
    assert code == 2 and "--labels" in err and "\n" not in err  # the experiment is fixed


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_stop_signals_interrupt_even_where_sigint_is_ignored(stop):
    """A script started with `&` inherits SIGINT ignored; inside the context both stop signals interrupt it
    (so a benchmark's runs write their checkpoints), and the old handlers come back afterwards."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    term_before = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(KeyboardInterrupt, match=stop.name):
            with stop_signals_checkpoint():
                os.kill(os.getpid(), stop)
                time.sleep(5)  # the handler interrupts this sleep
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is term_before
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_second_stop_signal_does_not_cut_short_the_first_ones_checkpoint():
    """`kill` of a process group reaches a run and the script driving it, which passes the stop on as SIGINT:
    the signal that comes while the checkpoint is being written must leave it to finish."""
    int_before, term_before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    written = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with stop_signals_checkpoint():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:  # as the trainer does: write the checkpoint, then go on stopping
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)  # a handler that raised would interrupt this "checkpoint"
                written.append(True)
                raise
    assert written == [True]
    assert signal.getsignal(signal.SIGINT) is int_before and signal.getsignal(signal.SIGTERM) is term_before


def test_a_frozen_run_trains_a_new_agent_on_another_runs_final_reward_without_labels(capsys, tmp_path):
    import torch

    from prefrl.checkpoint import latest_checkpoint
    from prefrl.label_store import LabelStore

    taught, true_reward, frozen = tmp_path / "taught", tmp_path / "true", tmp_path / "frozen"
    common = ["--env", TOY, "--steps", "512", "--n-envs", "1", "--no-progress-bar"]
    assert main(["train", *common, "--labels", "20", "--segment-length", "10", "--run-dir", str(taught)]) == 0
    assert main(["train", *common, "--teacher", "true-reward", "--run-dir", str(true_reward)]) == 0
    capsys.readouterr()
    code, err = run_cli(capsys, "train", *common, "--teacher", "frozen", "--reward-from", str(true_reward),
                        "--run-dir", str(frozen))  # fmt: skip
    assert code == 2 and "holds no learned reward" in err and not frozen.exists()
    code, err = run_cli(capsys, "train", "--env", "prefrl/Hopper-v0", "--teacher", "frozen",
                        "--reward-from", str(taught), "--run-dir", str(frozen))  # fmt: skip
    assert code == 2 and f"learned on {TOY}; use --env {TOY}" in err and not frozen.exists()
    code, err = run_cli(capsys, "train", *common, "--teacher", "frozen", "--reward-from", str(taught),
                        "--reward-activation", "tanh", "--run-dir", str(frozen))  # fmt: skip
    assert code == 2 and "with --reward-activation leaky-relu; give the same" in err and not frozen.exists()

    frozen_args = [
        "--teacher",
        "frozen",
        "--reward-from",
        str(taught),
        "--run-dir",
        str(frozen),
        "--seed",
        "1",
    ]
    assert main(["train", *common, *frozen_args]) == 0
    with LabelStore(frozen / "labels.sqlite") as store:
        assert store.answer_records() == []  # nothing asked

    source = torch.load(latest_checkpoint(taught) / "reward_model.pt")["model"]
    used = torch.load(latest_checkpoint(frozen) / "reward_model.pt")["model"]
    assert source and source.keys() == used.keys()
    for key in source:  # the same members and normalisation, unchanged by the run
        assert torch.equal(source[key], used[key]), key
    rows = (frozen / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    learned = [float(row.split(",")[header.index("learned_return")]) for row in rows[1:]]
    assert learned and any(value != 0.0 for value in learned)  # the agent was paid the learned reward
    taught.rename(tmp_path / "moved")  # its checkpoints hold their own copy of the reward
    assert main(["resume", str(frozen), "--no-progress-bar"]) == 0  # finished: resumes to nothing
