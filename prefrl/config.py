"""The settings of one training run as the user gives them: the typed dataclass behind ``prefrl train``.

Settings left unset (None) take the defaults of the env's family and the algorithm;
:func:`prefrl.spec.resolve` fills them in from one table and checks every value before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

Algo = Literal["a2c", "ppo", "trpo", "sac", "td3"]
TeacherName = Literal[
    "oracle", "stochastic", "myopic", "mistake", "skip", "equal", "true-reward", "human", "frozen"
]
QuerySelection = Literal[
    "random", "disagreement", "entropy", "kcenter", "kcenter-disagreement", "kcenter-entropy"
]
RewardUpdates = Literal["async", "sync"]
RewardInputs = Literal["observations-actions", "observations"]
RewardActivation = Literal["leaky-relu", "tanh"]

ALGOS: tuple[str, ...] = get_args(Algo)
TEACHERS: tuple[str, ...] = get_args(TeacherName)
QUERY_SELECTIONS: tuple[str, ...] = get_args(QuerySelection)
REWARD_INPUTS: tuple[str, ...] = get_args(RewardInputs)
REWARD_ACTIVATIONS: tuple[str, ...] = get_args(RewardActivation)
NO_LABELS = ("true-reward", "frozen")
"""Teachers that ask for no labels: the agent learns from the env's reward, or from a finished run's."""
OFF_POLICY = ("sac", "td3")
"""Agents with a replay buffer (PEBBLE relabels it after every reward-model update)."""

CONFIG_FORMAT = 4
"""Version of ``config.json``. Format 1 stored family defaults as plain values (e.g. ``pretrain_epochs: 50``
meant "the family's default"); :meth:`TrainConfig.from_json` reads those as unset. ``policy_aligned_steps``
left unset meant no QPA up to format 2, QPA's 10,000 steps for off-policy agents learning a reward in format
3, and since format 4 is stored as a number (0: off, the default again); :func:`in_current_format` reads an
unset window as what the run did."""


RETIRED_SETTINGS: dict[str, Any] = {"pseudo_label_threshold": None, "crop_steps": 0}
"""Settings that earlier versions had, at their "off" values: SURF's pseudo-labels and temporal cropping
(Park et al. 2022), removed after issue 11's ablation found they did not pay (on the reward model,
``benchmarks/results/surf_offline.json``; on SAC, ``offpolicy_feedback.json``). A run saved with them off
reads as today's; one that used them names the last commit that had them."""
RETIRED_AT = "eb81b34"
"""The last commit with the retired settings' code."""

QPA_POLICY_ALIGNED_STEPS = 10_000
"""The QPA window that format-3 off-policy runs took by default: queries from the newest 10,000 steps, ten
episodes of a 1,000-step MuJoCo variant (our choice). It was the default from 2026-11-25, after QPA at this
value beat plain PEBBLE on each of 4 seeds of issue 11's ablation (Walker2d, 200 labels: mean normalised
score 1.03 against 0.44). Rerun after the reward members' validation pairs were fixed (2026-11-26) it scored
0.03 against PEBBLE's 0.26 (``benchmarks/results/offpolicy_feedback.json``), so QPA is off by default again
(format 4); ``--policy-aligned-steps 10000`` turns it on."""


class ConfigError(ValueError):
    """A bad setting, with a message that says what to do instead."""


@dataclass
class TrainConfig:
    """Train an agent from preferences (Christiano et al. 2017). Unset settings take the defaults of the
    env's family and the algorithm (MuJoCo: App. A.1; Atari: App. A.2; agents: RL Zoo)."""

    env: str
    """Gymnasium env id, e.g. prefrl/Hopper-v0 (fixed-horizon variant) or Hopper-v5."""
    env_kwargs: list[str] = dataclasses.field(default_factory=list)
    """KEY=VALUE settings passed to gym.make (values read as JSON, else as text), e.g. height_weight=3 or
    upright=penalty for prefrl/Hopper-v0."""
    algo: Algo = "ppo"
    """RL algorithm (sac and td3 learn off-policy and need continuous actions)."""
    agent_kwargs: list[str] = dataclasses.field(default_factory=list)
    """KEY=VALUE keyword arguments of the SB3 algorithm (values read as JSON, else as text), each replacing
    the family default of that key, e.g. gamma=0.98 n_steps=512 'policy_kwargs={"net_arch": [256, 256],
    "activation_fn": "relu"}' (RL Zoo's per-task settings; activation_fn by name)."""
    teacher: TeacherName = "oracle"
    """Who labels: the BPref synthetic teachers, human (people in the labeling GUI), true-reward (no
    preferences: train on the env's reward) or frozen (no labels: train a new agent on the learned reward
    of the run named by --reward-from, as it was when that run ended)."""
    reward_from: Path | None = None
    """With --teacher frozen: a run that learned from preferences (its directory) whose final reward model
    scores every step of this run, unchanged; on the same env."""
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
    """Steps per segment (default: 1.5 s of env time, clamped to 15-60 steps, App. A.1; Atari: 25; runs
    labelled by people: at least 1 s, so that clips can be judged, App. B)."""
    query_selection: QuerySelection = "disagreement"
    """random, disagreement (ensemble variance, the paper's), entropy (BPref), or BPref's k-center greedy
    choice of the candidates least like the pairs already labelled: kcenter, kcenter-disagreement,
    kcenter-entropy (k-center among the more uncertain half). k-center: vector observations only."""
    oversample: int = 10
    """Candidate pairs drawn per query for disagreement/entropy selection (paper: 10)."""
    policy_aligned_steps: int = 0
    """QPA (Hu et al. 2024): draw query candidates only from the segments of the newest N env steps (the
    current policy's behaviour) instead of the whole pool; off-policy agents also take
    --hybrid-replay-share of each replay batch from those steps (hybrid experience replay). 0: off (the
    default: in issue 11's ablation, rerun with honest validation, 10,000 scored below PEBBLE alone)."""
    hybrid_replay_share: float | None = None
    """With --policy-aligned-steps and an off-policy agent: the share of each replay batch drawn from the
    newest --policy-aligned-steps transitions (QPA's hybrid experience replay; default 0.5)."""
    exploration_bonus: float = 0.0
    """RUNE (Liang et al. 2022): add beta_t times the spread of the ensemble's members (the std of their
    normalised rewards) to the agent's reward, so that it tries what the reward model is unsure of, where
    the next queries can settle it; beta_t = --exploration-bonus * (1 - --exploration-decay)^t over env
    steps t. 0: off. Vector observations only. The learned return in metrics.csv includes the bonus."""
    exploration_decay: float = 1e-6
    """RUNE's decay of --exploration-bonus per env step (1e-6: down to 37 % after 1M steps)."""
    ensemble_size: int = 3
    """Reward predictors in the ensemble (App. A: 3)."""
    reward_epochs: int = 10
    """Epochs over the preference set at each reward-model update (unless --reward-pairs-per-step is set)."""
    reward_pairs_per_step: float | None = None
    """Instead of --reward-epochs: at each update the ensemble trains on this many pairs per RL step since
    the last one (shared by the members, one pass each over a bootstrap sample), so the update's cost stays
    fixed as labels pile up. Default: 0.1 for Atari (App. A.2: the predictor "typically processes 1 label
    per 10 RL timesteps"); off (0) for MuJoCo."""
    pretrain_epochs: int | None = None
    """Epochs on the initial labels before RL (default 50; Atari 200, App. A.2)."""
    unsupervised_steps: int | None = None
    """Off-policy agents (sac, td3): steps of unsupervised exploration on PEBBLE's state-entropy bonus
    before the first queries (Lee et al. 2021 §4.1; default 9,000 for MuJoCo as B-Pref's scripts, 0
    elsewhere). With 0, the first labels come from a random policy as in the paper."""
    reward_update_interval: int = 10_000
    """Env steps between label requests and reward-model updates."""
    fit_when_answered: bool = False
    """Fit the reward model as soon as every query asked so far is answered (a synthetic teacher: one
    rollout after they are asked; a person: when the batch in the GUI is done), instead of at the next
    update, one --reward-update-interval later. PEBBLE's order (ask, label, fit, relabel); the fits are the
    same ones, only sooner. Off by default until issue 11's ablation says whether it pays."""
    reward_updates: RewardUpdates = "async"
    """async: reward-model updates (fit, renormalisation, query scoring) run in the background (a worker
    process for vector observations, a thread for frame stacks) while the agent goes on, and the new model
    is swapped in between rollouts (the paper's asynchronous predictor, §2.2). sync: the agent waits for
    each update, for exact reproducibility."""
    rate_constant: float | None = None
    """c in the label rate c/(T+c) (default 2e6 for MuJoCo, App. A.1; 5e6 for Atari, App. A.2)."""
    labels_by: int | None = None
    """Env step by which the whole label budget is asked for (default: the run's end, less two reward-model
    updates, so that the last answers are fitted); the rate c/(T+c) shapes the requests before it, and none
    come after it. PEBBLE's scripts spend the budget early: a batch every num_interact = 20,000 steps until
    max_feedback is reached, for walker-walk 500 labels in 10 batches of 50, all asked by about step 190,000
    of 500,000 (rll-research/BPref, scripts/walker_walk/500/oracle/run_PEBBLE.sh); ``--labels-by 200000``
    paces a 500k run alike."""
    max_labels_kept: int | None = None
    """Keep only the newest N labels (default: all; Atari: 3,000, App. A.2)."""
    dropout: float | None = None
    """Dropout in the reward predictors (default 0; Atari's CNN 0.5, App. A.2); 0 turns it off."""
    reward_l2: float = 1e-4
    """Initial L2 coefficient of each reward predictor, adapted after every epoch so that validation loss
    stays between 1.1x and 1.5x training loss (App. A; Ibarz et al. 2018 start at 1e-4). 0 turns the L2
    penalty off (it then stays 0), as B-Pref's reward models train without one (Lee et al. 2021)."""
    reward_validation_share: float | None = None
    """Share of the labelled pairs each reward predictor holds out for validation, the same pairs at every
    fit (default 1/e, App. A). 0 holds none out, as B-Pref trains (Lee et al. 2021): every predictor learns
    from all labels, and the L2 coefficient, with no validation loss to follow, stays at --reward-l2."""
    reward_inputs: RewardInputs | None = None
    """What the reward predictors see of each step: observations-actions, r̂(o, a) as in App. A.1 (the
    default for vector observations), or observations, r̂(o), a reward for what the agent does to the
    world, which it cannot earn by its actions alone (imitation's ``use_action=False``). Atari's CNN sees
    frames only (App. A.2)."""
    reward_activation: RewardActivation = "leaky-relu"
    """The hidden units of the MLP reward predictors (vector observations): leaky-relu, leaky ReLU with slope
    0.01 (App. A.1), or tanh. Replayed on the answers of our runs (benchmarks/reward_fit_replay.py), tanh
    predicted more new answers where the reward is a smooth function of the state (Walker2d's oracle) and
    fewer of a person's backflip answers; see the README's off-policy section. Atari's CNN keeps its own
    (App. A.2)."""
    threads: int = 1
    """Torch threads for the agent and the per-step reward (1 suits runs that share the cores, as the
    benchmarks' do; more speeds up a lone Atari run)."""
    fit_threads: int | None = None
    """Torch threads for reward-model fits. Default: 1 for the small MLPs (MuJoCo), which more threads
    only slow; for the CNN (Atari) the cores the agent leaves free (async updates) or every core (sync, as
    the agent waits meanwhile)."""
    output_std: float | None = None
    """Std of each normalised ensemble member (default 1 for MuJoCo, 0.05 for Atari, App. A)."""
    n_envs: int | None = None
    """Parallel envs (default by algo and env family)."""
    checkpoint_interval: int = 50_000
    """Env steps between checkpoints."""
    instructions: str | None = None
    """Text shown to people labeling (default: the task's own)."""
    device: str = "cpu"
    """Torch device for the agent and the reward model: cpu, cuda or cuda:N."""
    progress_bar: bool = True

    def make_kwargs(self) -> dict[str, Any]:
        """``--env-kwargs`` as a dict for ``gym.make``."""
        return key_values(self.env_kwargs, "--env-kwargs", "height_weight=3")

    def algo_kwargs(self) -> dict[str, Any]:
        """``--agent-kwargs`` as a dict (checked against the algorithm in :func:`prefrl.spec.resolve`)."""
        return key_values(self.agent_kwargs, "--agent-kwargs", "gamma=0.98")

    @property
    def learns_reward(self) -> bool:
        """Labels are asked and the reward model is fitted on them."""
        return self.teacher not in NO_LABELS

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["run_dir"] = str(self.run_dir)
        data["reward_from"] = None if self.reward_from is None else str(self.reward_from)
        data["format"] = CONFIG_FORMAT
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        data = in_current_format(data)
        data.pop("format")
        for name, off in RETIRED_SETTINGS.items():
            if name in data and data.pop(name) != off:
                raise ConfigError(
                    f"this run sets --{name.replace('_', '-')}, SURF's option, which prefrl no longer has "
                    f"(it did not pay; README, off-policy); run it with prefrl at commit {RETIRED_AT}"
                )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown settings in the run's config.json: {', '.join(sorted(unknown))}")
        data["run_dir"] = Path(data["run_dir"])
        if data.get("reward_from") is not None:
            data["reward_from"] = Path(data["reward_from"])
        return cls(**data)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); restore it from a backup") from None
        return cls.from_json(data)


# Format 1 kept these at a plain default and replaced that default by the family's (Atari) at run time.
_FORMAT_1_FAMILY_DEFAULTS = {"pretrain_epochs": 50, "dropout": 0.0}


def in_current_format(data: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json``'s settings (any format) as :data:`CONFIG_FORMAT` states the same run: what an
    earlier format left unset and meant something else by is set to what that run did."""
    data = dict(data)
    if data.get("format", 1) < 2:
        for name, old_default in _FORMAT_1_FAMILY_DEFAULTS.items():
            if data.get(name) == old_default:
                data[name] = None
        data.setdefault("reward_updates", "sync")  # what those runs did
    if data.get("format", 1) < 4 and data.get("policy_aligned_steps") is None:
        qpa_by_default = data.get("format", 1) == 3 and data.get("algo", "ppo") in OFF_POLICY
        qpa_by_default = qpa_by_default and data.get("teacher", "oracle") not in NO_LABELS
        data["policy_aligned_steps"] = QPA_POLICY_ALIGNED_STEPS if qpa_by_default else 0
    data["format"] = CONFIG_FORMAT
    return data


def key_values(items: list[str], option: str, example: str) -> dict[str, Any]:
    """KEY=VALUE items as a dict, each value read as JSON where it parses, else kept as text."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"{option} takes KEY=VALUE items, e.g. {example}; got {item!r}")
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError:
            kwargs[key] = text
    return kwargs
