"""The whole Atari path on Pong with tiny budgets: `prefrl train`, resume and plot (App. A.2)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecNormalize

from prefrl.atari import FrameSharingRewardVecEnv
from prefrl.cli import main
from prefrl.cnn_reward import CNNReward
from prefrl.config import TrainConfig
from prefrl.frame_storage import FramePreferenceDataset
from prefrl.metrics import read_metrics
from prefrl.trainer import PreferenceTrainer

PONG = "prefrl/PongNoScore-v0"
TINY = [
    "--labels",
    "12",
    "--initial-labels",
    "8",
    "--pretrain-epochs",
    "1",
    "--reward-epochs",
    "1",
    "--no-progress-bar",
]


def count(db, table):
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


@pytest.mark.parametrize(
    "algo, n_envs, steps, device",
    [
        ("a2c", 16, 960, "cpu"),  # A2C with the paper's 16 workers
        ("ppo", 2, 1024, "cpu"),
        ("trpo", 2, 512, "cpu"),
        pytest.param(
            "a2c",
            16,
            960,
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ),
    ],
)
def test_whole_path_on_pong(tmp_path, capsys, algo, n_envs, steps, device):
    run_dir = tmp_path / algo
    code = main(
        [
            "train",
            "--env",
            PONG,
            "--algo",
            algo,
            "--steps",
            str(steps),
            "--n-envs",
            str(n_envs),
            "--reward-update-interval",
            "256",
            "--checkpoint-interval",
            "512",
            "--run-dir",
            str(run_dir),
            "--device",
            device,
            *TINY,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert f"done: {steps} steps" in capsys.readouterr().out
    assert count(run_dir / "labels.sqlite", "answers") > 8  # the 8 initial labels, then more during RL
    assert (run_dir / "checkpoints" / "LATEST").exists()


def test_trainer_builds_the_frame_sharing_parts(tmp_path):
    cfg = TrainConfig(
        env=PONG,
        algo="ppo",
        n_envs=2,
        steps=256,
        run_dir=tmp_path / "run",
        labels=6,
        initial_labels=4,
        pretrain_epochs=1,
        reward_update_interval=256,
        progress_bar=False,
    )
    trainer = PreferenceTrainer(cfg)
    trainer.train()
    parts = trainer.parts
    assert isinstance(parts.reward_env, FrameSharingRewardVecEnv)
    assert isinstance(parts.dataset, FramePreferenceDataset)
    assert parts.dataset.store is parts.reward_env.frame_store  # the pool and the dataset share frames
    assert all(isinstance(m, CNNReward) for m in parts.ensemble.members)
    assert not isinstance(parts.venv, VecNormalize)  # uint8 frames go to the CNN policy as they are
    segment = parts.reward_env.pool[0]
    assert len(segment) == 25 and segment.obs.shape == (25, 4, 84, 84) and segment.frames is None


def test_interrupted_run_resumes_and_plots(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    # One env, so that episodes of random Pong (~900 steps) end within the budget and the curve has points.
    args = [
        "train",
        "--env",
        PONG,
        "--algo",
        "ppo",
        "--steps",
        "2048",
        "--n-envs",
        "1",
        "--reward-update-interval",
        "512",
        "--checkpoint-interval",
        "512",
        "--run-dir",
        str(run_dir),
        *TINY,
    ]
    after_rollout = PreferenceTrainer._after_rollout

    def killed_at_1024(self, step):
        after_rollout(self, step)
        if step >= 1024:
            raise KeyboardInterrupt  # as if the process were stopped right after a checkpoint

    monkeypatch.setattr(PreferenceTrainer, "_after_rollout", killed_at_1024)
    assert main(args) == 130
    answers = count(run_dir / "labels.sqlite", "answers")
    assert answers >= 8
    monkeypatch.undo()

    assert main(["resume", str(run_dir)]) == 0, capsys.readouterr().err
    assert "done: 2048 steps" in capsys.readouterr().out
    assert count(run_dir / "labels.sqlite", "answers") >= answers  # no label lost, none asked twice
    m = read_metrics(run_dir / "metrics.csv")
    assert len(m["step"]) and np.all(np.diff(m["step"]) > 0) and m["step"][-1] <= 2048
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "curve.png")]) == 0
    assert (tmp_path / "curve.png").stat().st_size > 1000
