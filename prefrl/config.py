"""The configuration of one training run: the single typed dataclass behind ``prefrl train``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALGOS = ("a2c", "ppo", "trpo", "sac")
TEACHERS = ("oracle", "stochastic", "myopic", "mistake", "skip", "equal", "true-reward", "human")


class ConfigError(ValueError):
    """A bad setting, with a message that says what to do instead."""


@dataclass
class TrainConfig:
    """Train an agent from preferences (Christiano et al. 2017). Unset (None) settings take the
    defaults of the env's family (MuJoCo: App. A.1; Atari: App. A.2)."""

    env: str
    """Gymnasium env id, e.g. prefrl/Hopper-v0 (fixed-horizon variant) or Hopper-v5."""
    env_kwargs: list[str] = dataclasses.field(default_factory=list)
    """KEY=VALUE settings passed to gym.make (values read as JSON, else as text), e.g. height_weight=3 or
    upright=penalty for prefrl/Hopper-v0."""
    algo: str = "ppo"
    """RL algorithm: a2c, ppo, trpo or sac."""
    teacher: str = "oracle"
    """Who labels: oracle, stochastic, myopic, mistake, skip, equal (BPref synthetic teachers), human
    (people in the labeling GUI), or true-reward (no preferences: train on the env's reward)."""
    labels: int = 700
    """Total label budget (queries asked)."""
    steps: int = 1_000_000
    """Env steps of RL."""
    seed: int = 0
    run_dir: Path = Path("runs/latest")
    """Directory for labels, checkpoints, logs and metrics."""
    initial_labels: int | None = None
    """Labels from a random policy before RL (default: 25 % of --labels for MuJoCo, App. A.1; 500 for
    Atari, App. A.2)."""
    wait_for_labels: int | None = None
    """Answers needed before RL starts (default: all initial labels; e.g. 50 with people labeling)."""
    segment_length: int | None = None
    """Steps per segment (default: 1.5 s of env time, clamped to 15-60 steps, App. A.1; Atari: 25)."""
    query_selection: str = "disagreement"
    """random, disagreement (ensemble variance, the paper's) or entropy."""
    oversample: int = 10
    """Candidate pairs drawn per query for disagreement/entropy selection (paper: 10)."""
    ensemble_size: int = 3
    reward_epochs: int = 10
    """Epochs over the preference set at each reward-model update (unless --reward-pairs-per-step is set)."""
    reward_pairs_per_step: float | None = None
    """Instead of --reward-epochs: at each update the ensemble trains on this many pairs per RL step since
    the last one (shared by the members, one pass each over a bootstrap sample), so the update's cost stays
    fixed as labels pile up. Default: 0.1 for Atari (App. A.2: the predictor "typically processes 1 label
    per 10 RL timesteps"); unset for MuJoCo. 0 turns it off."""
    pretrain_epochs: int = 50
    """Epochs on the initial labels before RL (left at 50, Atari runs take the paper's 200, App. A.2)."""
    reward_update_interval: int = 10_000
    """Env steps between label requests and reward-model updates."""
    rate_constant: float | None = None
    """c in the label rate c/(T+c) (default 2e6 for MuJoCo, App. A.1; 5e6 for Atari, App. A.2)."""
    max_labels_kept: int | None = None
    """Keep only the newest N labels (default: all; Atari: 3,000, App. A.2)."""
    dropout: float = 0.0
    """Dropout in the reward predictors."""
    threads: int = 1
    """Torch threads for the agent and the per-step reward (1 suits runs that share the cores, as the
    benchmarks' do; more speeds up a lone Atari run)."""
    fit_threads: int | None = None
    """Torch threads while the reward model is fitted (the agent waits meanwhile; it runs on one). Default:
    every core for the CNN reward (Atari), 1 for the small MLPs (MuJoCo), which more threads only slow."""
    output_std: float | None = None
    """Std of each normalised ensemble member (default 1 for MuJoCo, 0.05 for Atari, App. A)."""
    n_envs: int | None = None
    """Parallel envs (default by algo and env family)."""
    checkpoint_interval: int = 50_000
    """Env steps between checkpoints."""
    instructions: str | None = None
    """Text shown to people labeling (default: the task's own)."""
    device: str = "cpu"
    progress_bar: bool = True

    def validate(self) -> None:
        """Checks that need no env; env-dependent ones live in the trainer."""
        if self.algo not in ALGOS:
            raise ConfigError(f"unknown algo {self.algo!r}; choose one of: {', '.join(ALGOS)}")
        if self.teacher not in TEACHERS:
            raise ConfigError(f"unknown teacher {self.teacher!r}; choose one of: {', '.join(TEACHERS)}")
        if self.steps <= 0:
            raise ConfigError(f"--steps must be > 0; got {self.steps}")
        if self.labels < 0:
            raise ConfigError(f"--labels must be >= 0; got {self.labels}")
        if self.initial_labels is not None and self.initial_labels > self.labels:
            raise ConfigError(
                f"the label budget (--labels {self.labels}) is smaller than the initial share "
                f"(--initial-labels {self.initial_labels}); raise --labels or lower --initial-labels"
            )
        if self.teacher != "true-reward" and self.labels < 2:
            raise ConfigError("learning from preferences needs --labels >= 2 (or use --teacher true-reward)")
        if self.reward_pairs_per_step is not None and self.reward_pairs_per_step < 0:
            raise ConfigError(f"--reward-pairs-per-step must be >= 0; got {self.reward_pairs_per_step}")
        if self.threads < 1:
            raise ConfigError(f"--threads must be >= 1; got {self.threads}")
        if self.fit_threads is not None and self.fit_threads < 1:
            raise ConfigError(f"--fit-threads must be >= 1; got {self.fit_threads}")
        if self.segment_length is not None and self.segment_length < 2:
            raise ConfigError(f"--segment-length must be >= 2; got {self.segment_length}")
        self.make_kwargs()

    def make_kwargs(self) -> dict[str, Any]:
        """``--env-kwargs`` as a dict for ``gym.make``."""
        kwargs: dict[str, Any] = {}
        for item in self.env_kwargs:
            key, sep, text = item.partition("=")
            if not sep or not key.isidentifier():
                raise ConfigError(f"--env-kwargs takes KEY=VALUE items, e.g. height_weight=3; got {item!r}")
            try:
                kwargs[key] = json.loads(text)
            except json.JSONDecodeError:
                kwargs[key] = text
        return kwargs

    @property
    def learns_reward(self) -> bool:
        return self.teacher != "true-reward"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown settings in the run's config.json: {', '.join(sorted(unknown))}")
        return cls(**{**data, "run_dir": Path(data["run_dir"])})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_json(json.loads(path.read_text()))
