"""End to end: a live ``prefrl train --teacher human`` run taught through the labeling server's HTTP API.

The trainer runs in its own process; the server (with its clip worker) in this one; a scripted labeler
answers from the oracle over HTTP, as a person's browser would, and then stops. Only the first answers block
the trainer; it finishes on its own with queries left unanswered, and its reward model, fitted on labels that
only ever travelled through the GUI's path, ranks held-out pairs far better than the untrained one.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from prefrl.checkpoint import latest_checkpoint
from prefrl.label_store import LabelStore
from prefrl.labeling_gui.scripted import ScriptedLabeler, oracle_choice
from prefrl.labeling_gui.server import ServerSettings, create_app
from prefrl.metrics import read_metrics
from prefrl.reward_model import RewardEnsemble
from tests.labeling_helpers import env_segments, serve

ENV = "prefrl/HalfCheetah-v0"  # dense true reward (forward speed): every pair is decided
ANSWERS = 60  # the scripted labeler stops here; the budget is 100


def held_out_accuracy(ensemble: RewardEnsemble, n_pairs: int = 150) -> float:
    """Share of fresh random-policy pairs (unequal true returns) the ensemble orders like the oracle."""
    segments = env_segments(ENV, 2 * n_pairs, 30, seed=123)
    left, right = segments[::2], segments[1::2]
    obs = np.stack([np.stack([a.obs, b.obs]) for a, b in zip(left, right, strict=True)])
    acts = np.stack([np.stack([a.acts, b.acts]) for a, b in zip(left, right, strict=True)])
    truth = np.array([a.true_return - b.true_return for a, b in zip(left, right, strict=True)])
    predicted = ensemble.preference_probs(obs, acts).mean(0) - 0.5
    decided = truth != 0
    return float(np.mean(np.sign(predicted[decided]) == np.sign(truth[decided])))


def test_scripted_labeler_teaches_a_live_run_through_http(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    app = create_app(ServerSettings(run_dir=run_dir, clip_size=(64, 48)))
    train = [
        sys.executable, "-m", "prefrl", "train", "--env", ENV, "--algo", "ppo", "--teacher", "human",
        "--labels", "100", "--initial-labels", "40", "--wait-for-labels", "30", "--steps", "8192",
        "--reward-update-interval", "1024", "--seed", "0", "--run-dir", str(run_dir), "--no-progress-bar",
    ]  # fmt: skip
    with serve(app) as url:
        trainer = subprocess.Popen(train, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        labeler = ScriptedLabeler(
            url, run_dir / "labels.sqlite", oracle_choice, name="oracle-script", seconds=0.5
        )
        stop = threading.Event()
        thread = threading.Thread(target=labeler.run, args=(stop,), kwargs={"max_answers": ANSWERS})
        thread.start()
        try:
            output, _ = trainer.communicate(timeout=170)
        finally:
            stop.set()
            thread.join(30)
            if trainer.poll() is None:
                trainer.kill()
    assert trainer.returncode == 0, output
    assert "done: 8192 steps" in output

    with LabelStore(run_dir / "labels.sqlite") as store:
        records = store.answer_records()
        pending = len(store.pending_query_ids())
        queries = store.num_queries()
    # The labeler stops at ANSWERS, or earlier if RL ends first (a loaded machine renders clips slower);
    # either way answers kept arriving after the 40 initial queries, while RL ran.
    answered = labeler.answered
    assert len(records) == answered and 40 < answered <= ANSWERS
    assert {r["labeler"] for r in records} == {"oracle-script"} and all(r["seconds"] == 0.5 for r in records)
    assert queries > answered and pending == queries - answered  # RL went on with questions left unanswered
    assert (run_dir / "clips").is_dir() and len(list((run_dir / "clips").glob("*.mp4"))) >= 2 * answered

    metrics = read_metrics(run_dir / "metrics.csv")
    assert len(metrics["step"]) > 0 and metrics["labels"].max() >= 30
    assert np.nanmax(metrics["val_accuracy"]) > 0.6

    env = gym.make(ENV)
    torch.manual_seed(0)
    untrained = RewardEnsemble.for_spaces(env.observation_space, env.action_space)
    trained = RewardEnsemble.for_spaces(env.observation_space, env.action_space)
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None
    trained.load(checkpoint / "reward_model.pt")
    before, after = held_out_accuracy(untrained), held_out_accuracy(trained)
    assert after >= 0.8 and after > before + 0.2, (before, after)
