"""One run, fully resolved: :func:`resolve` turns the user's settings and the env into a frozen
:class:`RunSpec`.

Every default lives in :data:`DEFAULTS`, one row per env family with a row per agent inside it, so that a
reader finds in one place what a MuJoCo PPO run or an Atari A2C run gets (Christiano et al. 2017, App. A.1
and A.2; RL Zoo for what the paper does not say). A value the user sets is never replaced; every check runs
here, before the run directory is touched, and a bad value is a :class:`~prefrl.config.ConfigError` whose
message says what to do.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import torch
from stable_baselines3.common.utils import LinearSchedule

from prefrl.cnn_reward import is_frame_stack_space
from prefrl.config import NO_LABELS, OFF_POLICY, ConfigError, TrainConfig
from prefrl.environment import EnvFamily, check_env_id, env_dt, env_family, make_env
from prefrl.reward_model import VALIDATION_SHARE
from prefrl.schedule import LabelSchedule
from prefrl.segments import DEFAULT_SEGMENT_SECONDS, default_segment_length

ObservationKindName = Literal["vector", "frame-stack"]

HUMAN_CLIP_SECONDS = DEFAULT_SEGMENT_SECONDS
"""Runs labelled by people get segments of the paper's 1.5 s of env time whatever the step length: App. B
shows people 1-2 s clips, and the 15-60 step clamp of App. A.1 makes a Hopper segment 0.48 s."""


@dataclass(frozen=True)
class AgentDefaults:
    """An agent's defaults within one env family."""

    n_envs: int
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the SB3 class."""


@dataclass(frozen=True)
class FamilyDefaults:
    """The reward-learning defaults of one env family, and its agents' (App. A.1: MuJoCo; App. A.2: Atari)."""

    initial_share: float | None
    """Share of the label budget asked about a random policy before RL (None: ``initial_labels``)."""
    initial_labels: int | None
    rate_constant: float
    output_std: float
    segment_length: int | None
    """None: 1.5 s of env time clamped to 15-60 steps (App. A.1)."""
    pretrain_epochs: int
    max_labels_kept: int | None
    reward_pairs_per_step: float
    dropout: float
    unsupervised_steps: int
    """Off-policy agents only: PEBBLE's state-entropy exploration before the first queries."""
    agents: Mapping[str, AgentDefaults]


_ON_POLICY_SMALL = {  # classic control and test envs: short rollouts, so that a few thousand steps learn
    "ppo": AgentDefaults(2, {"n_steps": 256, "batch_size": 64}),
    "trpo": AgentDefaults(2, {"n_steps": 256, "batch_size": 64}),
    "a2c": AgentDefaults(2),
    # Off-policy on small tasks: RL Zoo's Pendulum learning rate (1e-3) and a small network.
    "sac": AgentDefaults(
        1, {"learning_starts": 200, "learning_rate": 1e-3, "policy_kwargs": {"net_arch": [64, 64]}}
    ),
    "td3": AgentDefaults(
        1, {"learning_starts": 200, "learning_rate": 1e-3, "policy_kwargs": {"net_arch": [64, 64]}}
    ),
}

DEFAULTS: dict[EnvFamily, FamilyDefaults] = {
    "mujoco": FamilyDefaults(
        initial_share=0.25,  # App. A.1
        initial_labels=None,
        rate_constant=2e6,  # App. A.1: rate ∝ 2·10⁶ / (T + 2·10⁶)
        output_std=1.0,
        segment_length=None,
        pretrain_epochs=50,
        max_labels_kept=None,
        reward_pairs_per_step=0.0,
        dropout=0.0,
        unsupervised_steps=9_000,  # B-Pref's PEBBLE scripts
        agents={
            # PPO: the PPO paper's MuJoCo settings (SB3's defaults, as RL Zoo).
            "ppo": AgentDefaults(
                2, {"n_steps": 1024, "batch_size": 64, "n_epochs": 10, "gae_lambda": 0.95, "gamma": 0.99}
            ),
            "a2c": AgentDefaults(
                4, {"n_steps": 8, "gae_lambda": 0.9, "vf_coef": 0.4, "ent_coef": 0.0, "use_rms_prop": True}
            ),
            # TRPO: the paper's agent, γ = 0.995, λ = 0.97 (App. A.1).
            "trpo": AgentDefaults(
                2, {"n_steps": 1024, "batch_size": 128, "gamma": 0.995, "gae_lambda": 0.97}
            ),
            "sac": AgentDefaults(1, {"learning_starts": 1_000}),
            # TD3: RL Zoo's MuJoCo settings (Gaussian exploration noise 0.1, added by algos.make_agent).
            "td3": AgentDefaults(1, {"learning_starts": 10_000}),
        },
    ),
    "atari": FamilyDefaults(
        initial_share=None,
        initial_labels=500,  # App. A.2
        rate_constant=5e6,  # App. A.2
        output_std=0.05,  # App. A
        segment_length=25,  # App. A.2 (about 1.7 s)
        pretrain_epochs=200,  # App. A.2
        max_labels_kept=3000,  # App. A.2: the newest 3,000 labels
        reward_pairs_per_step=0.1,  # App. A.2: "1 label per 10 RL timesteps"
        dropout=0.5,  # App. A.2: dropout on the conv layers
        unsupervised_steps=0,
        agents={
            # A2C as in the paper: 16 workers, n = 5, lr 7e-4 decaying linearly, entropy 0.01, RMSProp
            # α = 0.99, ε = 1e-5 (App. A.2).
            "a2c": AgentDefaults(
                16,
                {
                    "n_steps": 5,
                    "learning_rate": LinearSchedule(7e-4, 0.0, 1.0),
                    "ent_coef": 0.01,
                    "vf_coef": 0.5,
                    "gamma": 0.99,
                    "gae_lambda": 1.0,
                    "max_grad_norm": 0.5,
                    "use_rms_prop": True,
                    "rms_prop_eps": 1e-5,
                },
            ),
            # PPO: RL Zoo's Atari settings.
            "ppo": AgentDefaults(
                8,
                {
                    "n_steps": 128,
                    "n_epochs": 4,
                    "batch_size": 256,
                    "learning_rate": LinearSchedule(2.5e-4, 0.0, 1.0),
                    "clip_range": LinearSchedule(0.1, 0.0, 1.0),
                    "ent_coef": 0.01,
                    "vf_coef": 0.5,
                },
            ),
            "trpo": AgentDefaults(8, {"n_steps": 128, "batch_size": 256}),  # untuned
        },
    ),
    "other": FamilyDefaults(
        initial_share=0.25,
        initial_labels=None,
        rate_constant=2e6,
        output_std=1.0,
        segment_length=None,
        pretrain_epochs=50,
        max_labels_kept=None,
        reward_pairs_per_step=0.0,
        dropout=0.0,
        unsupervised_steps=0,
        agents=_ON_POLICY_SMALL,
    ),
}


@dataclass(frozen=True)
class RunSpec:
    """Every setting of a run, resolved: what the trainer builds from. Made by :func:`resolve`."""

    config: TrainConfig
    """The settings as the user gave them (saved as ``config.json``; ``prefrl resume`` resolves them
    again)."""
    env: str
    env_kwargs: Mapping[str, Any]
    family: EnvFamily
    observations: ObservationKindName
    horizon: int | None
    algo: str
    teacher: str
    reward_from: Path | None
    labels: int
    steps: int
    seed: int
    run_dir: Path
    segment_length: int
    initial_labels: int
    wait_for_labels: int
    rate_constant: float
    labels_by: int | None  # None: the run's end, less two updates
    query_selection: str
    oversample: int
    ensemble_size: int
    reward_epochs: int
    reward_pairs_per_step: float
    pretrain_epochs: int
    reward_update_interval: int
    fit_when_answered: bool
    reward_updates: str
    max_labels_kept: int | None
    dropout: float
    reward_l2: float
    reward_validation_share: float
    reward_inputs: str
    reward_activation: str
    unsupervised_steps: int
    policy_aligned_steps: int  # 0: no QPA
    hybrid_replay_share: float
    exploration_bonus: float  # 0: no RUNE bonus
    exploration_decay: float
    output_std: float
    n_envs: int
    agent_hyperparams: Mapping[str, Any]
    normalize_observations: bool
    threads: int
    fit_threads: int
    checkpoint_interval: int
    instructions: str | None
    device: str
    progress_bar: bool

    @property
    def learns_reward(self) -> bool:
        """Labels are asked and the reward model is fitted on them."""
        return self.teacher not in NO_LABELS

    @property
    def scores_learned_reward(self) -> bool:
        """The agent learns from a reward model (fitted in this run, or frozen from another)."""
        return self.teacher != "true-reward"

    @property
    def off_policy(self) -> bool:
        return self.algo in OFF_POLICY

    @property
    def schedule(self) -> LabelSchedule:
        """The labels due by each step. The whole budget is due by ``--labels-by``, or else two reward-model
        updates before the run's end, so that the last update still fits the last answers: due at the last
        step, a run asked for 700 labels ended having asked 697 and fitted 692."""
        if self.labels_by is not None:
            horizon = self.labels_by
        else:
            horizon = self.steps - 2 * self.reward_update_interval
            horizon = horizon if horizon > 0 else self.steps
        return LabelSchedule(self.labels, self.initial_labels, horizon, self.rate_constant)

    def summary(self) -> dict[str, Any]:
        """The resolved settings as JSON-ready values (written to the run's ``spec.json``)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}
        data["run_dir"] = str(self.run_dir)
        data["reward_from"] = None if self.reward_from is None else str(self.reward_from)
        data["env_kwargs"] = dict(self.env_kwargs)
        data["agent_hyperparams"] = {k: _json_value(v) for k, v in self.agent_hyperparams.items()}
        return data


def resolve(config: TrainConfig) -> RunSpec:
    """The run's :class:`RunSpec`: ``config`` with every unset value taken from :data:`DEFAULTS`, checked.

    Builds the env once to learn its family, step length and spaces; writes nothing.

    Raises:
        ConfigError: for any bad setting, with what to do instead.
    """
    _check_ranges(config)
    env_spec = check_env_id(config.env)
    _check_reward_from(config)
    env_kwargs = config.make_kwargs()
    probe = make_env(config.env, env_kwargs)
    try:
        family, dt = env_family(probe), env_dt(probe)
        observation_space, action_space = probe.observation_space, probe.action_space
    finally:
        probe.close()
    observations = _observation_kind(observation_space)
    _check_action_space(config.algo, action_space)
    table = DEFAULTS[family]
    agent = table.agents.get(config.algo)
    if agent is None:
        raise ConfigError(
            f"--algo {config.algo} is not set up for {family} envs; choose one of: {', '.join(table.agents)}"
        )
    horizon = env_spec.max_episode_steps
    segment_length = config.segment_length or _default_segment_length(table, dt, horizon, config.teacher)
    if horizon is not None and segment_length > horizon:
        raise ConfigError(
            f"--segment-length {segment_length} is longer than the env horizon ({horizon}); "
            f"use at most {horizon}"
        )
    if config.initial_labels is not None:
        initial = config.initial_labels
    elif table.initial_share is not None:
        initial = round(table.initial_share * config.labels)
    else:
        initial = min(table.initial_labels or 0, config.labels)
    if config.learns_reward and initial < 1:
        raise ConfigError(
            f"the reward model needs initial labels to start from; got {initial} "
            "(raise --labels or set --initial-labels >= 1)"
        )
    wait_for = initial if config.wait_for_labels is None else min(config.wait_for_labels, initial)
    unsupervised_steps = 0
    if config.algo in OFF_POLICY and config.learns_reward:
        unsupervised_steps = _given(config.unsupervised_steps, table.unsupervised_steps)
    elif config.unsupervised_steps:
        raise ConfigError(
            "--unsupervised-steps is PEBBLE's exploration for off-policy agents learning from preferences; "
            "use --algo sac or td3, or leave it unset"
        )
    if unsupervised_steps >= config.steps:
        raise ConfigError(
            f"--unsupervised-steps {unsupervised_steps} leaves no steps to learn from preferences in "
            f"--steps {config.steps}; lower it or raise --steps"
        )
    policy_aligned_steps = config.policy_aligned_steps
    hybrid_replay_share = 0.0
    if config.hybrid_replay_share is not None:
        if not (policy_aligned_steps and config.algo in OFF_POLICY):
            raise ConfigError(
                "--hybrid-replay-share is QPA's replay for off-policy agents with --policy-aligned-steps; "
                "use --algo sac or td3 and set --policy-aligned-steps, or leave it unset"
            )
        if not 0 <= config.hybrid_replay_share <= 1:
            raise ConfigError(f"--hybrid-replay-share is a share in [0, 1]; got {config.hybrid_replay_share}")
        hybrid_replay_share = config.hybrid_replay_share
    elif policy_aligned_steps and config.algo in OFF_POLICY:
        hybrid_replay_share = QPA_HYBRID_REPLAY_SHARE
    if policy_aligned_steps and not config.learns_reward:
        raise ConfigError(
            "--policy-aligned-steps chooses queries (QPA); a --teacher true-reward run asks none: "
            "leave it unset"
        )
    if policy_aligned_steps and policy_aligned_steps < 2 * segment_length:
        raise ConfigError(
            f"--policy-aligned-steps {policy_aligned_steps} holds fewer than two segments of "
            f"{segment_length} steps; raise it to at least {2 * segment_length} (or 0 for off)"
        )
    if config.fit_when_answered and not config.learns_reward:
        raise ConfigError(
            f"--fit-when-answered fits the reward model on new answers; a --teacher {config.teacher} run "
            "asks for none: leave it unset"
        )
    if config.labels_by is not None and not config.learns_reward:
        raise ConfigError(
            f"--labels-by paces the label requests; a --teacher {config.teacher} run asks for none: "
            "leave it unset"
        )
    if config.exploration_bonus and config.teacher == "true-reward":
        raise ConfigError(
            "--exploration-bonus rewards the reward model's uncertainty; a --teacher true-reward run has "
            "no reward model: leave it unset"
        )
    if config.exploration_bonus and observations != "vector":
        raise ConfigError(
            "--exploration-bonus is for vector observations (MuJoCo) for now; leave it unset for frame stacks"
        )
    if config.query_selection.startswith("kcenter") and observations != "vector":
        raise ConfigError(
            f"--query-selection {config.query_selection} compares vector observations (MuJoCo); for frame "
            "stacks choose disagreement, entropy or random"
        )
    cores = os.cpu_count() or 1
    if observations == "vector":
        fit_threads = 1  # more threads only slow a 64×64 MLP
    elif config.reward_updates == "async":
        fit_threads = max(1, cores - config.threads)  # the fitter runs beside the agent
    else:
        fit_threads = cores  # the agent waits
    spec = RunSpec(
        config=config,
        **{name: getattr(config, name) for name in _AS_GIVEN},
        env_kwargs=env_kwargs,
        family=family,
        observations=observations,
        horizon=horizon,
        run_dir=Path(config.run_dir),
        segment_length=segment_length,
        initial_labels=initial,
        wait_for_labels=wait_for,
        rate_constant=_given(config.rate_constant, table.rate_constant),
        reward_pairs_per_step=_given(config.reward_pairs_per_step, table.reward_pairs_per_step),
        pretrain_epochs=_given(config.pretrain_epochs, table.pretrain_epochs),
        max_labels_kept=_given(config.max_labels_kept, table.max_labels_kept),
        dropout=_given(config.dropout, table.dropout),
        reward_validation_share=_given(config.reward_validation_share, VALIDATION_SHARE),
        reward_inputs=_reward_inputs(config, observations),
        unsupervised_steps=unsupervised_steps,
        policy_aligned_steps=policy_aligned_steps,
        hybrid_replay_share=hybrid_replay_share,
        output_std=_given(config.output_std, table.output_std),
        n_envs=_given(config.n_envs, agent.n_envs),
        agent_hyperparams=_agent_hyperparams(config, agent.hyperparams),
        normalize_observations=config.algo not in OFF_POLICY and family != "atari",
        fit_threads=_given(config.fit_threads, fit_threads),
    )
    try:
        spec.schedule  # noqa: B018  (checks the budget against the initial share)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return spec


def _reward_inputs(config: TrainConfig, observations: str) -> str:
    """r̂(o, a) for vector observations unless the user asks for r̂(o); frame stacks' CNN sees frames only,
    and keeps its own units."""
    if observations != "vector" and config.reward_activation != "leaky-relu":
        raise ConfigError(
            f"--reward-activation {config.reward_activation}: it sets the MLP predictors' units (vector "
            "observations); the reward CNN for frame stacks keeps its own (App. A.2)"
        )
    if observations == "vector":
        return _given(config.reward_inputs, "observations-actions")
    if config.reward_inputs == "observations-actions":
        raise ConfigError(
            "--reward-inputs observations-actions: the reward CNN for frame stacks sees the frames only "
            "(App. A.2); leave --reward-inputs unset or set it to observations"
        )
    return "observations"


QPA_HYBRID_REPLAY_SHARE = 0.5
"""Share of each replay batch from the policy-aligned transitions (QPA's hybrid experience replay)."""

AGENT_KWARGS_SET_BY_PREFRL = {
    "policy": "the policy follows the observations",
    "env": "the env is --env",
    "seed": "use --seed",
    "device": "use --device",
    "verbose": "prefrl logs the run itself",
    "tensorboard_log": "the run's logs/ holds TensorBoard's files",
    "replay_buffer_class": "PEBBLE and QPA choose the buffer (--unsupervised-steps, --hybrid-replay-share)",
}


def _agent_hyperparams(config: TrainConfig, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The family's agent defaults with ``--agent-kwargs`` over them (``policy_kwargs`` merged key by key),
    each given key checked against the SB3 class's arguments."""
    from prefrl.algos import ACTIVATIONS, ALGO_CLASSES  # (algos builds agents from a RunSpec)

    given = config.algo_kwargs()
    cls = ALGO_CLASSES[config.algo]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for key in given:
        if key in AGENT_KWARGS_SET_BY_PREFRL:
            raise ConfigError(f"--agent-kwargs {key}: set by prefrl ({AGENT_KWARGS_SET_BY_PREFRL[key]})")
        if key not in accepted:
            raise ConfigError(
                f"--agent-kwargs {key}: {cls.__name__} takes no such argument; "
                f"it takes {', '.join(sorted(accepted - set(AGENT_KWARGS_SET_BY_PREFRL)))}"
            )
    policy_kwargs = given.get("policy_kwargs", {})
    if not isinstance(policy_kwargs, dict):
        raise ConfigError(
            f"--agent-kwargs policy_kwargs must be a JSON object, e.g. '{{\"net_arch\": [256, 256]}}'; "
            f"got {policy_kwargs!r}"
        )
    activation = policy_kwargs.get("activation_fn", "tanh")
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"--agent-kwargs policy_kwargs activation_fn {activation!r}: "
            f"choose one of {', '.join(ACTIVATIONS)}"
        )
    merged = {**defaults, **given}
    if "policy_kwargs" in given:
        merged["policy_kwargs"] = {**defaults.get("policy_kwargs", {}), **policy_kwargs}
    return merged


def _check_reward_from(config: TrainConfig) -> None:
    """``--teacher frozen`` names a finished preference run on the same env, and only it takes one."""
    from prefrl.checkpoint import latest_checkpoint

    source = config.reward_from
    if config.teacher != "frozen":
        if source is not None:
            raise ConfigError("--reward-from is for --teacher frozen (train on that run's learned reward)")
        return
    if source is None:
        raise ConfigError("--teacher frozen trains on another run's reward: name it with --reward-from DIR")
    if latest_checkpoint(Path(config.run_dir)) is not None:
        return  # a run resumed: its checkpoints hold its own copy of the reward
    checkpoint = latest_checkpoint(Path(source))
    if checkpoint is None or not (checkpoint / "reward_model.pt").exists():
        raise ConfigError(
            f"--reward-from {source} holds no learned reward (no checkpoint with reward_model.pt); "
            "name the directory of a run that learned from preferences"
        )
    learned = TrainConfig.load(Path(source) / "config.json")
    if learned.env != config.env:
        raise ConfigError(f"--reward-from {source} learned on {learned.env}; use --env {learned.env}")
    if learned.reward_activation != config.reward_activation:
        raise ConfigError(
            f"--reward-from {source} learned its reward with --reward-activation "
            f"{learned.reward_activation}; give the same"
        )


def check_run_dir(run_dir: Path, config: TrainConfig, *, resume: bool) -> None:
    """A new run needs a directory that holds no run; a resumed one needs one that does."""
    config_path = Path(run_dir) / "config.json"
    if resume:
        if not config_path.exists():
            raise ConfigError(f"{run_dir} holds no run to resume (no config.json); check the path")
        return
    if config_path.exists():
        try:
            same = TrainConfig.load(config_path).to_json() == config.to_json()
        except ConfigError:
            same = False
        if not same:
            raise ConfigError(
                f"{run_dir} already holds a different run; choose another --run-dir "
                f"or continue that one with `prefrl resume {run_dir}`"
            )
        raise ConfigError(f"{run_dir} already holds this run; continue it with `prefrl resume {run_dir}`")


_AS_GIVEN = (
    "env",
    "algo",
    "teacher",
    "reward_from",
    "labels",
    "steps",
    "seed",
    "query_selection",
    "oversample",
    "ensemble_size",
    "reward_l2",
    "reward_activation",
    "exploration_bonus",
    "exploration_decay",
    "reward_epochs",
    "reward_update_interval",
    "labels_by",
    "fit_when_answered",
    "reward_updates",
    "threads",
    "checkpoint_interval",
    "instructions",
    "device",
    "progress_bar",
)
"""Settings that have no family default: the spec takes them as given."""


def _given(value: Any, default: Any) -> Any:
    """The user's value when set, else the default (a set 0 stays 0)."""
    return default if value is None else value


def _check_ranges(c: TrainConfig) -> None:
    """Checks that need no env. Choices (algo, teacher, query selection) are typed and checked by the parser;
    they are checked again here for configs built in code."""
    from prefrl.config import ALGOS, QUERY_SELECTIONS, REWARD_ACTIVATIONS, REWARD_INPUTS, TEACHERS

    for flag, choice, choices in (
        ("--algo", c.algo, ALGOS),
        ("--teacher", c.teacher, TEACHERS),
        ("--query-selection", c.query_selection, QUERY_SELECTIONS),
        ("--reward-updates", c.reward_updates, ("async", "sync")),
        ("--reward-inputs", c.reward_inputs or REWARD_INPUTS[0], REWARD_INPUTS),
        ("--reward-activation", c.reward_activation, REWARD_ACTIVATIONS),
    ):
        if choice not in choices:
            raise ConfigError(
                f"unknown {flag[2:].replace('-', ' ')} {choice!r}; choose one of: {', '.join(choices)}"
            )
    at_least = {
        "--steps": (c.steps, 1),
        "--labels": (c.labels, 0),
        "--seed": (c.seed, 0),
        "--oversample": (c.oversample, 1),
        "--ensemble-size": (c.ensemble_size, 1),
        "--reward-epochs": (c.reward_epochs, 1),
        "--reward-update-interval": (c.reward_update_interval, 1),
        "--checkpoint-interval": (c.checkpoint_interval, 1),
        "--threads": (c.threads, 1),
        "--initial-labels": (c.initial_labels, 0),
        "--wait-for-labels": (c.wait_for_labels, 0),
        "--segment-length": (c.segment_length, 2),
        "--pretrain-epochs": (c.pretrain_epochs, 1),
        "--max-labels-kept": (c.max_labels_kept, 2),
        "--fit-threads": (c.fit_threads, 1),
        "--n-envs": (c.n_envs, 1),
        "--unsupervised-steps": (c.unsupervised_steps, 0),
        "--reward-pairs-per-step": (c.reward_pairs_per_step, 0),
        "--policy-aligned-steps": (c.policy_aligned_steps, 0),
        "--labels-by": (c.labels_by, 1),
    }
    for flag, (number, low) in at_least.items():
        if number is not None and number < low:
            raise ConfigError(f"{flag} must be >= {low}; got {number}")
    for flag, positive in (("--rate-constant", c.rate_constant), ("--output-std", c.output_std)):
        if positive is not None and not (positive > 0 and math.isfinite(positive)):
            raise ConfigError(f"{flag} must be a positive number; got {positive}")
    if not (c.exploration_bonus >= 0 and math.isfinite(c.exploration_bonus)):
        raise ConfigError(f"--exploration-bonus must be a number >= 0 (0: off); got {c.exploration_bonus}")
    if not 0 <= c.exploration_decay < 1:
        raise ConfigError(f"--exploration-decay is a rate per env step in [0, 1); got {c.exploration_decay}")
    if not (c.reward_l2 >= 0 and math.isfinite(c.reward_l2)):
        raise ConfigError(f"--reward-l2 must be a number >= 0 (0: no L2 penalty); got {c.reward_l2}")
    if c.reward_validation_share is not None and not 0 <= c.reward_validation_share < 1:
        raise ConfigError(
            "--reward-validation-share is a share in [0, 1) (0: every predictor learns from all labels); "
            f"got {c.reward_validation_share}"
        )
    if c.dropout is not None and not 0 <= c.dropout < 1:
        raise ConfigError(f"--dropout is a probability in [0, 1); got {c.dropout}")
    if c.initial_labels is not None and c.initial_labels > c.labels:
        raise ConfigError(
            f"the label budget (--labels {c.labels}) is smaller than the initial share "
            f"(--initial-labels {c.initial_labels}); raise --labels or lower --initial-labels"
        )
    if c.labels_by is not None and c.labels_by > c.steps:
        raise ConfigError(
            f"--labels-by {c.labels_by} is past the run's end (--steps {c.steps}); set a step within the "
            "run, or leave it unset to spread the labels over the whole run"
        )
    if c.learns_reward and c.labels < 2:
        raise ConfigError("learning from preferences needs --labels >= 2 (or use --teacher true-reward)")
    _check_device(c.device)


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device {device!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device}: this machine has no CUDA device visible to torch; use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; use cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    elif parsed.type != "cpu":
        raise ConfigError(f"--device {device}: prefrl runs on cpu or cuda")


def _check_action_space(algo: str, space: gym.Space) -> None:
    if algo in OFF_POLICY and not isinstance(space, gym.spaces.Box):
        raise ConfigError(
            f"{algo} needs a continuous (Box) action space; this env's is {space}; "
            "use --algo ppo, a2c or trpo"
        )


def _observation_kind(space: gym.Space) -> ObservationKindName:
    if is_frame_stack_space(space):
        return "frame-stack"
    if isinstance(space, gym.spaces.Box | gym.spaces.Discrete):
        return "vector"
    raise ConfigError(
        f"prefrl learns rewards for vector or stacked-frame observations; this env's are {space} "
        "(flatten them with gymnasium.wrappers.FlattenObservation in a registered env)"
    )


def _default_segment_length(
    table: FamilyDefaults, dt: float | None, horizon: int | None, teacher: str
) -> int:
    if table.segment_length is not None:
        length = table.segment_length
    elif teacher == "human" and dt:
        length = round(HUMAN_CLIP_SECONDS / dt)
    else:
        length = default_segment_length(dt)
    return min(length, horizon) if horizon else length


def _json_value(value: Any) -> Any:
    try:
        json.dumps(value)
    except TypeError:
        return repr(value)
    return value
