import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import tests.toy_envs  # noqa: F401  (registers prefrl-test/LinearReward-v0)
from prefrl.config import TrainConfig
from prefrl.metrics import read_metrics
from prefrl.reward_model import UncertaintyBonus
from prefrl.trainer import PreferenceTrainer
from tests.helpers import CUDA, child_env

TOY = "prefrl-test/LinearReward-v0"
BOOT = "import sys, tests.toy_envs; from prefrl.cli import main; sys.exit(main(sys.argv[1:]))"


def start_cli(args: list[str], **popen: object) -> subprocess.Popen:
    """``prefrl ARGS`` in a subprocess that knows the toy env."""
    env = child_env()
    return subprocess.Popen([sys.executable, "-c", BOOT, *args], env=env, **popen)  # type: ignore[call-overload]


def toy_config(tmp_path, **overrides):
    settings = dict(
        env=TOY,
        algo="ppo",
        teacher="oracle",
        labels=120,
        steps=12_288,
        seed=0,
        run_dir=tmp_path / "run",
        segment_length=10,
        reward_update_interval=2_048,
        checkpoint_interval=4_096,
        pretrain_epochs=30,
        progress_bar=False,
        n_envs=2,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.mark.parametrize("device", ["cpu", CUDA])  # on CUDA the fitter's worker process uses the GPU too
def test_true_return_rises_under_the_learned_reward(tmp_path, device):
    stats = PreferenceTrainer(toy_config(tmp_path, device=device)).train()
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    first, last = m["true_return"][:3].mean(), m["true_return"][-3:].mean()
    # A random policy scores about 0 (w · a random walk); the optimum pushes every coordinate to ±5.
    assert last > first + 50, (first, last)
    # The whole budget is asked two updates before the end, so the last update fits the last answers.
    assert stats.labels == 120 and m["labels"][-1] == 120
    assert np.nanmax(m["val_accuracy"]) > 0.8
    assert (tmp_path / "run" / "labels.sqlite").exists()
    assert any((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))


def test_labels_by_asks_the_whole_budget_by_then(tmp_path):
    pacing = dict(labels=60, steps=8_192, reward_update_interval=1_024, labels_by=4_096)
    PreferenceTrainer(toy_config(tmp_path, reward_updates="sync", **pacing)).train()
    m = read_metrics(tmp_path / "run" / "metrics.csv")
    # Asked by the update at step 4,096 and fitted at a later one. Spread over the whole run (the default),
    # the budget is due only at 6,144, and the run holds 45 labels there.
    fitted_by = 4_096 + 2 * 1_024
    before, after = m["labels"][m["step"] < 4_096], m["labels"][m["step"] >= fitted_by]
    assert before.max() < 60 and len(after) and after.min() == 60, (m["step"], m["labels"])


@pytest.mark.parametrize("algo", ["a2c", "trpo", "sac", "td3"])
def test_other_algorithms_run(tmp_path, algo):
    steps = 600 if algo in ("sac", "td3") else 2_048
    cfg = toy_config(tmp_path, algo=algo, labels=20, steps=steps, reward_update_interval=300, n_envs=None)
    stats = PreferenceTrainer(cfg).train()
    assert stats.steps >= steps and stats.labels >= 5


def test_env_kwargs_reach_every_env_and_survive_a_resume(tmp_path):
    trainer = PreferenceTrainer(
        toy_config(tmp_path, teacher="true-reward", steps=256, env_kwargs=["obs_dim=6"])
    )
    trainer.train()
    assert [space.shape for space in trainer.parts.venv.get_attr("observation_space")] == [(6,), (6,)]
    saved = TrainConfig.load(tmp_path / "run" / "config.json")
    assert saved.make_kwargs() == {"obs_dim": 6}
    assert PreferenceTrainer(saved, resume=True).spec.env_kwargs == {"obs_dim": 6}


def test_true_reward_baseline_asks_no_labels(tmp_path):
    stats = PreferenceTrainer(toy_config(tmp_path, teacher="true-reward", steps=2_048)).train()
    assert stats.labels == 0
    assert not (tmp_path / "run" / "checkpoints" / "LATEST").read_text().strip() == ""


def count_answers(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def test_resume_after_sigkill_loses_no_labels(tmp_path):
    run_dir = tmp_path / "run"
    args = f"train --env {TOY} --labels 200 --steps 16000 --segment-length 10 --reward-update-interval 1024 "
    args += f"--checkpoint-interval 2048 --run-dir {run_dir} --no-progress-bar"
    proc = start_cli(args.split())
    deadline = time.time() + 120
    while time.time() < deadline:
        latest = run_dir / "checkpoints" / "LATEST"
        if latest.exists() and int(latest.read_text().split("-")[1]) >= 6000:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    answers_before = count_answers(run_dir / "labels.sqlite")
    rows_before = len(read_metrics(run_dir / "metrics.csv")["step"])
    assert answers_before > 50 and rows_before > 0

    resume = start_cli(["resume", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = resume.communicate(timeout=300)  # (wait() could block on a full pipe)
    assert resume.returncode == 0, err[-2000:]
    assert "done: 16" in out
    assert count_answers(run_dir / "labels.sqlite") >= answers_before
    m = read_metrics(run_dir / "metrics.csv")
    assert np.all(np.diff(m["step"]) > 0)  # the curve continues from the checkpoint, no duplicates
    assert m["step"][-1] >= 16_000 and m["labels"][-1] >= answers_before - 5


def has_a_row(metrics_csv) -> bool:
    try:
        return len(read_metrics(metrics_csv)["step"]) > 0
    except (OSError, ValueError):  # not written yet, or a row half written
        return False


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_save_a_checkpoint_before_exiting(tmp_path, stop):
    run_dir = tmp_path / "run"
    args = f"train --env {TOY} --teacher true-reward --steps 1000000 --checkpoint-interval 10000000 "
    args += f"--run-dir {run_dir} --no-progress-bar"
    # SIGINT ignored, as in a job started with `&` from a script: prefrl must still stop on it.
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    proc = start_cli(args.split(), stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    deadline = time.time() + 120
    while time.time() < deadline and not has_a_row(run_dir / "metrics.csv"):
        time.sleep(0.2)  # the file's header is written before training starts; a row, after an episode
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "prefrl resume" in err
    step = int((run_dir / "checkpoints" / "LATEST").read_text().split("-")[1])
    assert step > 0  # periodic checkpoints were out of reach: this one came from the interrupt


def test_ctrl_c_in_a_terminal_stops_the_run_and_its_fitter_quietly_with_a_checkpoint(tmp_path):
    """Ctrl-C reaches the terminal's whole foreground process group: the run and the worker process that
    fits its reward model. The run writes its checkpoint; neither prints a traceback."""
    run_dir = tmp_path / "run"
    args = f"train --env {TOY} --labels 200 --steps 1000000 --segment-length 10 "
    args += "--reward-update-interval 1024 --checkpoint-interval 10000000 "
    args += f"--run-dir {run_dir} --no-progress-bar"
    proc = start_cli(args.split(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (
        has_a_row(run_dir / "metrics.csv") and read_metrics(run_dir / "metrics.csv")["step"][-1] >= 4_096
    ):
        time.sleep(0.2)  # by then updates have gone to the worker process
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "prefrl resume" in err
    assert "Traceback" not in err, err[-2000:]
    assert int((run_dir / "checkpoints" / "LATEST").read_text().split("-")[1]) >= 4_096


def test_a_second_stop_signal_while_the_checkpoint_is_written_leaves_it_whole(tmp_path, monkeypatch):
    """`kill -TERM -- -PGID` on a benchmark: the run gets SIGTERM and, while it writes its checkpoint, the
    script driving it passes the stop on as SIGINT. The run must still keep its progress."""
    from prefrl.cli import stop_signals_checkpoint

    trainer = PreferenceTrainer(
        toy_config(tmp_path, teacher="true-reward", steps=1_000_000, checkpoint_interval=10**9)
    )
    after_rollout, checkpoint, stopped_at = trainer._after_rollout, trainer._checkpoint, []

    def stop_after_a_few_rollouts(step):
        after_rollout(step)
        if step >= 4_096 and not stopped_at:
            stopped_at.append(step)
            os.kill(os.getpid(), signal.SIGTERM)

    def checkpoint_with_a_second_signal():
        if stopped_at:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs here
        checkpoint()

    monkeypatch.setattr(trainer, "_after_rollout", stop_after_a_few_rollouts)
    monkeypatch.setattr(trainer, "_checkpoint", checkpoint_with_a_second_signal)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), stop_signals_checkpoint():
        trainer.train()
    step = int((tmp_path / "run" / "checkpoints" / "LATEST").read_text().split("-")[1])
    assert step >= stopped_at[0]


def test_a_checkpoint_follows_pretraining(tmp_path, monkeypatch):
    trainer = PreferenceTrainer(toy_config(tmp_path, steps=512, checkpoint_interval=10**9))
    steps_at_checkpoint = []
    original = trainer._checkpoint
    monkeypatch.setattr(
        trainer,
        "_checkpoint",
        lambda: steps_at_checkpoint.append(trainer.parts.agent.num_timesteps) or original(),
    )
    trainer.train()
    assert steps_at_checkpoint[0] == 0  # right after the reward model's pre-training, before any RL step


def test_pretraining_goes_on_from_where_a_kill_stopped_it(tmp_path, monkeypatch):
    """Atari pre-trains for hours on a CPU: an interrupted pre-training is resumed, not redone."""
    import prefrl.trainer as trainer_module
    from prefrl.reward_model import RewardEnsemble

    monkeypatch.setattr(trainer_module, "PRETRAIN_SAVE_S", 0.0)
    fit, starts = RewardEnsemble.fit, []

    def fit_killed_after_25_epochs(self, data, *, epochs, rng, progress=None, on_epoch=None, **kwargs):
        def stop(progress):
            on_epoch(progress)
            if sum(progress.epochs_done) == 25:
                raise KeyboardInterrupt

        return fit(self, data, epochs=epochs, rng=rng, progress=progress, on_epoch=stop, **kwargs)

    def fit_recording_its_start(self, data, *, epochs, rng, progress=None, **kwargs):
        starts.append(None if progress is None else list(progress.epochs_done))
        return fit(self, data, epochs=epochs, rng=rng, progress=progress, **kwargs)

    run_dir = tmp_path / "run"
    monkeypatch.setattr(RewardEnsemble, "fit", fit_killed_after_25_epochs)
    with pytest.raises(KeyboardInterrupt):
        PreferenceTrainer(toy_config(tmp_path, steps=512, pretrain_epochs=20)).train()
    assert (run_dir / "pretraining.pt").exists() and not (run_dir / "checkpoints" / "LATEST").exists()

    monkeypatch.setattr(RewardEnsemble, "fit", fit_recording_its_start)
    stats = PreferenceTrainer(TrainConfig.load(run_dir / "config.json"), resume=True).train()
    assert starts[0] == [20, 5, 0]  # member 0 done, member 1 five epochs in: only the rest is fitted
    assert stats.steps >= 512
    assert not (run_dir / "pretraining.pt").exists()  # the post-pretraining checkpoint supersedes it


def test_the_reward_model_is_fitted_on_fit_threads_and_the_agent_keeps_one(tmp_path, monkeypatch):

    from prefrl.reward_model import RewardEnsemble

    fit, threads_in_fit = RewardEnsemble.fit, []

    def fit_recording_threads(self, *args, **kwargs):
        threads_in_fit.append(torch.get_num_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(RewardEnsemble, "fit", fit_recording_threads)
    # Synchronous updates fit in this process, where the recording is (background ones fit in a worker
    # process, tested in test_reward_updates).
    trainer = PreferenceTrainer(toy_config(tmp_path, steps=4_096, fit_threads=2, reward_updates="sync"))
    trainer.train()
    assert len(threads_in_fit) >= 2 and set(threads_in_fit) == {2}  # pre-training and a refit
    assert torch.get_num_threads() == 1  # back to one thread for the agent after each fit


def record_updates(monkeypatch) -> list[tuple[int, int, int | None]]:
    """(step, epochs, sample_size) of every reward-model update submitted from now on."""
    from prefrl.reward_updates import RewardUpdater

    submit, calls = RewardUpdater.submit, []

    def submit_recording(self, request):
        calls.append((request.step, request.epochs, request.sample_size))
        return submit(self, request)

    monkeypatch.setattr(RewardUpdater, "submit", submit_recording)
    return calls


def test_reward_pairs_per_step_sets_each_refits_sample(tmp_path, monkeypatch):
    calls = record_updates(monkeypatch)
    config = toy_config(tmp_path, steps=8_192, reward_pairs_per_step=0.3, reward_updates="sync")
    PreferenceTrainer(config).train()
    fits = [(step, epochs, size) for step, epochs, size in calls if epochs]
    # Each refit: one pass over 0.3 pairs per step since the last fit, shared by 3 members. The first
    # update after pre-training has no answers yet (its queries are asked when it ends), so the first
    # refit covers two intervals and the later ones one each. The budget is all asked by 4,096 (two
    # updates before the end), so the last update has nothing new to fit.
    assert [(step, epochs) for step, epochs, _ in fits] == [(4_096, 1), (6_144, 1)]
    assert [size for _, _, size in fits] == [round(0.3 * 4_096 / 3), round(0.3 * 2_048 / 3)]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_fit_when_answered_fits_each_batch_as_soon_as_it_is_answered(tmp_path, monkeypatch, mode):
    calls = record_updates(monkeypatch)
    config = toy_config(tmp_path, steps=8_192, fit_when_answered=True, reward_updates=mode)
    PreferenceTrainer(config).train()
    # The oracle answers an update's queries at once, and the fit follows at the next rollout instead of
    # at the next update, one interval (2,048 steps) later: every update on the interval finds no answers
    # left to fit (epochs 0) and asks; each batch's fit falls between two of them.
    asks = [step for step, epochs, _ in calls if not epochs]
    fits = [step for step, epochs, _ in calls if epochs]
    if mode == "sync":
        assert asks == [2_048, 4_096, 6_144, 8_192], calls
    else:  # an update that falls due while a background fit still runs (a busy machine) waits for its end
        assert asks[:1] == [2_048] and all(b - a >= 2_048 for a, b in zip(asks, asks[1:])), calls
        assert all(step % 512 == 0 for step in asks) and len(asks) >= 3, calls
    assert [sum(a < fit < a + 2_048 for fit in fits) for a in asks[:2]] == [1, 1], calls
    assert count_answers(config.run_dir / "labels.sqlite") == config.labels


def test_without_fit_when_answered_answers_wait_for_the_next_update(tmp_path, monkeypatch):
    calls = record_updates(monkeypatch)
    PreferenceTrainer(toy_config(tmp_path, steps=8_192, reward_updates="sync")).train()
    assert [step for step, _, _ in calls] == [2_048, 4_096, 6_144, 8_192][: len(calls)], calls
    assert [epochs > 0 for _, epochs, _ in calls][:2] == [False, True], calls


class SlowLabeller:
    """An oracle that, like a person labelling slower than the agent runs, hands its answers over only on
    every sixth poll (polls come once per 512-step rollout)."""

    stores_answers = False

    def __init__(self):
        from prefrl.teachers import SyntheticTeacher

        self.oracle, self.held, self.polls = SyntheticTeacher(), [], 0

    def post(self, queries):
        self.oracle.post(queries)
        self.held += self.oracle.poll()

    def poll(self):
        self.polls += 1
        if self.polls % 6 and self.polls > 1:  # (the first poll, before pre-training, answers at once)
            return []
        answers, self.held = self.held, []
        return answers

    def pending(self):
        return len(self.held)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refit_after_skipped_updates_covers_every_step_since_the_last(tmp_path, monkeypatch, mode):
    calls = record_updates(monkeypatch)
    config = toy_config(tmp_path, steps=12_288, reward_pairs_per_step=0.3, reward_updates=mode)
    PreferenceTrainer(config, teacher=SlowLabeller()).train()
    fit_steps = [0] + [step for step, epochs, _ in calls if epochs]
    sizes = [size for _, epochs, size in calls if epochs]
    # Updates are due every 2,048 steps but answers come every 3,072: a refit after one without answers
    # trains on 0.3 pairs per step for all the steps since the previous refit.
    expected = [round(0.3 * (b - a) / 3) for a, b in zip(fit_steps[:-1], fit_steps[1:])]
    assert len(sizes) >= 2 and sizes == expected
    assert any(size > round(0.3 * 2_048 / 3) for size in sizes), sizes


@pytest.mark.parametrize("backend", ["process", "thread"])
def test_the_agent_keeps_stepping_while_the_reward_model_is_fitted(tmp_path, monkeypatch, backend):
    """Asynchronous updates: rollouts go on while an update (here a long fit) is in flight."""
    from prefrl.observations import VectorObservations
    from prefrl.reward_updates import RewardUpdater

    monkeypatch.setattr(VectorObservations, "updates_in_process", backend == "process")
    take, rollouts_during_updates = RewardUpdater.take, []

    def take_recording(self, *, wait=False):
        result = take(self, wait=wait)
        if not wait and self.busy:  # still fitting at this rollout's end: the agent did not wait
            rollouts_during_updates.append(trainer.parts.agent.num_timesteps)
        return result

    monkeypatch.setattr(RewardUpdater, "take", take_recording)
    trainer = PreferenceTrainer(toy_config(tmp_path, steps=8_192, reward_epochs=300))
    trainer.train()
    # A 300-epoch fit takes seconds; a 512-step rollout of the toy env a fraction of one.
    assert len(rollouts_during_updates) >= 4, rollouts_during_updates


def test_the_reward_model_changes_only_between_rollouts(tmp_path, monkeypatch):
    from prefrl.reward_model import RewardEnsemble

    reward, seen = RewardEnsemble.reward, []
    trainer = PreferenceTrainer(toy_config(tmp_path, steps=8_192))

    def reward_recording(self, obs, acts):
        if self is trainer.parts.ensemble and trainer.parts.agent.num_timesteps > 0:
            seen.append((trainer.parts.agent.num_timesteps, self.num_fits, float(self.out_mean.sum())))
        return reward(self, obs, acts)

    monkeypatch.setattr(RewardEnsemble, "reward", reward_recording)
    monkeypatch.setattr(RewardEnsemble, "__call__", reward_recording)
    trainer.train()
    rollout = 256 * 2  # n_steps × n_envs of the toy PPO
    models_by_rollout: dict[int, set] = {}
    for step, fits, mean in seen:
        models_by_rollout.setdefault(step // rollout, set()).add((fits, mean))
    assert all(len(models) == 1 for models in models_by_rollout.values())  # one model (and scale) per rollout
    assert len({m for models in models_by_rollout.values() for m in models}) >= 3  # and it did change


def test_sync_updates_reproduce_a_fixed_seed_run(tmp_path):
    runs = []
    for name in ("a", "b"):
        config = toy_config(tmp_path, steps=4_096, reward_updates="sync", run_dir=tmp_path / name)
        PreferenceTrainer(config).train()
        metrics = read_metrics(tmp_path / name / "metrics.csv")
        with sqlite3.connect(tmp_path / name / "labels.sqlite") as con:
            answers = con.execute("SELECT query_id, choice FROM answers ORDER BY id").fetchall()
        runs.append(({k: v for k, v in metrics.items() if k != "wall_s"}, answers))
    (metrics_a, answers_a), (metrics_b, answers_b) = runs
    assert answers_a == answers_b and len(answers_a) > 30
    assert metrics_a.keys() == metrics_b.keys()
    for key in metrics_a:
        np.testing.assert_array_equal(metrics_a[key], metrics_b[key])


# A refit in the background that never ends: the process is killed while it is in flight. (The update runs
# in a thread here, so that the patch reaches it; what is checkpointed does not depend on where it runs.)
STUCK_FIT = """
import pathlib, sys, threading, time
import tests.toy_envs
from prefrl.observations import VectorObservations
from prefrl.reward_model import RewardEnsemble
from prefrl.cli import main
VectorObservations.updates_in_process = False
fit = RewardEnsemble.fit
def stuck(self, *args, **kwargs):
    if threading.current_thread() is not threading.main_thread():
        pathlib.Path(sys.argv[1]).write_text("in flight")
        time.sleep(3600)
    return fit(self, *args, **kwargs)
RewardEnsemble.fit = stuck
sys.exit(main(sys.argv[2:]))
"""


def test_kill_during_a_background_fit_then_resume_loses_no_label(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "fit-started"
    args = f"train --env {TOY} --labels 120 --steps 8192 --segment-length 10 --reward-update-interval 1024 "
    args += f"--checkpoint-interval 1024 --run-dir {run_dir} --no-progress-bar"
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-c", STUCK_FIT, str(marker), *args.split()], env=env)
    latest, deadline = run_dir / "checkpoints" / "LATEST", time.time() + 120
    while time.time() < deadline and not marker.exists():
        time.sleep(0.1)
    step_at_fit = int(latest.read_text().split("-")[1])
    while time.time() < deadline and int(latest.read_text().split("-")[1]) <= step_at_fit:
        time.sleep(0.1)  # a checkpoint taken while the fit is in flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists() and int(latest.read_text().split("-")[1]) > step_at_fit
    answers_before = count_answers(run_dir / "labels.sqlite")

    resume = start_cli(["resume", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err[-2000:]
    with sqlite3.connect(run_dir / "labels.sqlite") as con:
        answered_twice = con.execute(
            "SELECT query_id FROM answers GROUP BY query_id HAVING COUNT(*) > 1"
        ).fetchall()
        queries = con.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
    answers_after = count_answers(run_dir / "labels.sqlite")
    assert answered_twice == [] and answers_after >= answers_before > 0
    assert queries <= 120  # no query asked twice over the budget
    labels_used = int(out.split(" labels,")[0].split()[-1])
    assert labels_used == answers_after  # every stored answer is in the final preference set, once


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_the_uncertainty_bonus_pays_the_agent_and_fades(tmp_path, algo):
    steps = 600 if algo == "sac" else 4_096
    cfg = toy_config(
        tmp_path,
        algo=algo,
        labels=20,
        steps=steps,
        reward_update_interval=300,
        n_envs=None,
        exploration_bonus=1.0,
        exploration_decay=1e-3,
    )
    trainer = PreferenceTrainer(cfg)
    trainer.train()
    bonus = trainer.parts.reward_fn
    assert isinstance(bonus, UncertaintyBonus) and bonus.step >= steps - 300
    assert bonus.beta_now == pytest.approx((1 - 1e-3) ** bonus.step)
    logged = [row for row in csv.DictReader(open(tmp_path / "run" / "logs" / "session-0" / "progress.csv"))]
    betas = [
        float(row["reward_model/exploration_beta"]) for row in logged if row["reward_model/exploration_beta"]
    ]
    assert len(betas) >= 2 and betas == sorted(betas, reverse=True) and betas[-1] < betas[0]
    if algo == "sac":  # the replay buffer is relabelled with the bonus too, at the weight of its last update
        buffer = trainer.parts.agent.replay_buffer
        n = buffer.size()
        obs, acts = (
            buffer.observations[:n, 0],
            trainer.parts.agent.policy.unscale_action(buffer.actions[:n, 0]),
        )
        reward, spread = trainer.parts.ensemble.reward_and_spread(obs, acts)
        weight = float(np.dot(buffer.rewards[:n, 0] - reward, spread) / np.dot(spread, spread))
        assert bonus.beta_now - 1e-6 <= weight <= 1.0
        np.testing.assert_allclose(buffer.rewards[:n, 0], reward + weight * spread, rtol=1e-4, atol=1e-4)
