"""Building a run's parts from its :class:`~prefrl.spec.RunSpec`: env, reward swap, agent, labels, updater.

:func:`build_parts` is the one place where a run is assembled; the loop in :mod:`prefrl.trainer` receives
the result and never asks what kind of observation or teacher it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import configure
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from prefrl import algos
from prefrl.checkpoint import latest_checkpoint
from prefrl.config import NO_LABELS
from prefrl.environment import make_vec_env
from prefrl.label_store import LabelStore, StoreTeacher
from prefrl.observations import ObservationKind, observation_kind
from prefrl.off_policy import restore_replay_buffer
from prefrl.preference_dataset import PreferenceDataset, preference_to_mu
from prefrl.reward_model import RewardEnsemble, RewardFn, UncertaintyBonus
from prefrl.reward_updates import RewardUpdater
from prefrl.spec import RunSpec
from prefrl.teachers import Preference, Query, Teacher, make_synthetic_teacher
from prefrl.wrappers import LearnedRewardVecEnv

REPLAY_BUFFER_FILE = "replay_buffer.npz"
"""In a checkpoint of an off-policy run: the buffer's filled rows."""


@dataclass
class RunParts:
    """Everything the loop works with.

    Attributes:
        kind: the observation kind that built the pool, dataset, ensemble and reward swap.
        reward_env: the learned-reward wrapper (raw observations; its ``pool`` holds recent segments).
        venv: what the agent steps (``reward_env``, under ``VecNormalize`` for on-policy MuJoCo agents).
        agent: the SB3 agent.
        ensemble: the live reward ensemble the agent's reward comes from.
        reward_fn: what the agent is paid: ``ensemble``, or with ``--exploration-bonus`` RUNE's
            :class:`~prefrl.reward_model.UncertaintyBonus` over it.
        dataset: the labelled pairs the ensemble is fitted on.
        store: the label store (SQLite): every query and answer, as they happen.
        teacher: who answers queries.
        outstanding: queries asked and not yet answered, by id.
        updater: runs reward-model updates (in the background or inline).
    """

    kind: ObservationKind
    reward_env: LearnedRewardVecEnv
    venv: VecEnv
    agent: BaseAlgorithm
    ensemble: RewardEnsemble
    reward_fn: RewardFn
    dataset: PreferenceDataset
    store: LabelStore
    teacher: Teacher
    outstanding: dict[int, Query]
    updater: RewardUpdater


def build_parts(
    spec: RunSpec,
    *,
    checkpoint: Path | None,
    env_seed: int,
    rng: np.random.Generator,
    log_dir: Path,
    teacher: Teacher | None = None,
) -> RunParts:
    """The parts of ``spec``'s run, new or (``checkpoint``) as they were saved.

    Args:
        env_seed: seed of the vectorised env (a resumed run reseeds, so it does not replay the same episodes).
        rng: the run's generator (synthetic teachers draw from it; the updater gets a child of it).
        log_dir: where the agent's SB3 logger writes (csv and tensorboard).
        teacher: overrides the spec's teacher (e.g. a scripted labeller).
    """
    kind = observation_kind(spec)
    base = make_vec_env(spec.env, spec.n_envs, env_seed, dict(spec.env_kwargs))
    ensemble = kind.ensemble(base)
    reward_fn: RewardFn = ensemble
    if spec.exploration_bonus:
        reward_fn = UncertaintyBonus(ensemble, spec.exploration_bonus, spec.exploration_decay)
    reward_env = kind.reward_env(base, reward_fn if spec.scores_learned_reward else None)
    venv: VecEnv = reward_env
    if spec.normalize_observations:
        if checkpoint is not None:
            venv = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), venv)
        else:
            venv = VecNormalize(venv, gamma=spec.agent_hyperparams.get("gamma", 0.99))
    if checkpoint is not None:
        agent = algos.load_agent(spec.algo, checkpoint / "agent.zip", venv, device=spec.device)
        if spec.scores_learned_reward:
            ensemble.load(checkpoint / "reward_model.pt")
        if spec.off_policy:
            assert isinstance(agent, OffPolicyAlgorithm) and agent.replay_buffer is not None
            restore_replay_buffer(agent.replay_buffer, checkpoint / REPLAY_BUFFER_FILE)
    else:
        agent = algos.make_agent(spec, venv)
        if spec.reward_from is not None:  # --teacher frozen: the other run's final reward model, kept as is
            source = latest_checkpoint(spec.reward_from)
            assert source is not None  # (checked by resolve)
            ensemble.load(source / "reward_model.pt")
    agent.set_logger(configure(str(log_dir), ["csv", "tensorboard"]))

    store = LabelStore(spec.run_dir / "labels.sqlite")
    if spec.instructions:
        store.set_meta("instructions", spec.instructions)
    store.set_meta("env_id", spec.env)  # the labeling server renders the queries' clips in this env
    dataset = kind.dataset(reward_env)
    for query, preference in store.answered_pairs():
        if preference != Preference.SKIP:
            dataset.add(query.left, query.right, preference_to_mu(preference))
    teacher = teacher if teacher is not None else _make_teacher(spec, store, rng)
    pending = [store.query(i) for i in store.pending_query_ids()]
    if pending and not teacher.stores_answers:
        teacher.post(pending)  # asked before a kill, never answered
    updater = RewardUpdater(
        ensemble,
        dataset,
        query_selection=spec.query_selection,
        oversample=spec.oversample,
        rng=rng.spawn(1)[0],
        fit_threads=spec.fit_threads,
        background=spec.reward_updates == "async",
        process=kind.updates_in_process,
    )
    return RunParts(
        kind=kind,
        reward_env=reward_env,
        venv=venv,
        agent=agent,
        ensemble=ensemble,
        reward_fn=reward_fn,
        dataset=dataset,
        store=store,
        teacher=teacher,
        outstanding={q.query_id: q for q in pending},
        updater=updater,
    )


def _make_teacher(spec: RunSpec, store: LabelStore, rng: np.random.Generator) -> Teacher:
    if spec.teacher == "human":
        return StoreTeacher(store)
    if spec.teacher in NO_LABELS:
        return make_synthetic_teacher("oracle", rng)  # never asked: no labels
    return make_synthetic_teacher(spec.teacher, rng)
