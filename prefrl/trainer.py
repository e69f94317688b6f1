"""The Christiano et al. 2017 loop (§2.2), around any SB3 agent.

    random-policy segments → initial labels → fit the reward ensemble            (pre-training)
    then, while the agent trains on the learned reward, every ``reward_update_interval`` steps:
    pool of recent segments → choose pairs → ask the teacher → store answers → refit → renormalise

The agent runs one uninterrupted ``learn`` call (so learning-rate schedules stay intact); the loop's
work happens in a callback at the end of each rollout. Labels go to SQLite as they arrive and the run
is checkpointed atomically, so ``prefrl resume`` continues a killed run with no label lost.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from prefrl import algos
from prefrl.atari import FrameSharingRewardVecEnv
from prefrl.checkpoint import latest_checkpoint, read_state, write_checkpoint
from prefrl.cnn_reward import cnn_ensemble, is_frame_stack_space
from prefrl.config import ConfigError, TrainConfig
from prefrl.environment import check_env_id, env_dt, env_family, make_env, make_vec_env, random_actions
from prefrl.frame_storage import FramePreferenceDataset, FrameSegmentPool
from prefrl.label_store import LabelStore, StoreTeacher
from prefrl.metrics import MetricsLog, final_true_return
from prefrl.preference_dataset import PreferenceDataset, preference_to_mu
from prefrl.query_selection import RandomSelector, make_selector
from prefrl.reward_model import FitProgress, FitStats, RewardEnsemble
from prefrl.schedule import LabelSchedule
from prefrl.segments import SegmentPool, default_segment_length
from prefrl.teachers import Preference, Query, Teacher, make_synthetic_teacher
from prefrl.wrappers import LearnedRewardVecEnv

PRETRAIN_SAVE_S = 60.0
"""Seconds between saves of the reward model's pre-training progress (``pretraining.pt``)."""

# Per-family defaults (Christiano et al. 2017, App. A.1 / A.2).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "mujoco": {"initial_fraction": 0.25, "rate_constant": 2e6, "output_std": 1.0},
    "atari": {
        "initial_fraction": None,
        "initial_labels": 500,
        "rate_constant": 5e6,
        "output_std": 0.05,
        "segment_length": 25,
        "pretrain_epochs": 200,
        "max_labels_kept": 3000,
        "reward_pairs_per_step": 0.1,
    },
    "other": {"initial_fraction": 0.25, "rate_constant": 2e6, "output_std": 1.0},
}


@dataclass
class TrainStats:
    steps: int
    labels: int
    final_true_return: float | None
    wall_s: float
    run_dir: Path


class PreferenceTrainer:
    """Train ``config.algo`` on ``config.env`` from the teacher's preferences.

    Args:
        config: the run's settings; unset ones take the env family's defaults.
        teacher: overrides the teacher named in the config (e.g. a scripted teacher in tests).
        resume: continue the run in ``config.run_dir`` from its latest checkpoint.
    """

    _last_fit: FitStats | None
    _next_update: int
    _next_checkpoint: int
    _last_fit_step: int  # the RL step of the last reward-model update (0: pre-training)
    _fit_progress: FitProgress | None  # of the reward-model fit under way, if any

    def __init__(self, config: TrainConfig, *, teacher: Teacher | None = None, resume: bool = False) -> None:
        config.validate()
        self.config, self.resume, self._custom_teacher = config, resume, teacher
        self.run_dir = Path(config.run_dir)
        self.spec = check_env_id(config.env)
        self.env_kwargs = config.make_kwargs()
        probe = make_env(config.env, self.env_kwargs)
        self.family = env_family(probe)
        dt, action_space = env_dt(probe), probe.action_space
        self.stores_frames = is_frame_stack_space(probe.observation_space)  # each frame once (App. A.2)
        probe.close()
        algos.check_action_space(config.algo, action_space)

        defaults = FAMILY_DEFAULTS[self.family]
        horizon = self.spec.max_episode_steps
        self.segment_length = (
            config.segment_length
            or defaults.get("segment_length")  # Atari: 25 steps (App. A.2)
            or min(default_segment_length(dt), horizon or 10**9)
        )
        if horizon is not None and self.segment_length > horizon:
            raise ConfigError(
                f"--segment-length {self.segment_length} is longer than the env horizon ({horizon}); "
                f"use at most {horizon}"
            )
        if config.initial_labels is not None:
            initial = config.initial_labels
        elif defaults["initial_fraction"] is not None:
            initial = round(defaults["initial_fraction"] * config.labels)
        else:
            initial = min(defaults["initial_labels"], config.labels)
        try:
            self.schedule = LabelSchedule(
                config.labels, initial, config.steps, config.rate_constant or defaults["rate_constant"]
            )
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.wait_for_labels = min(config.wait_for_labels or initial, initial)
        self.output_std = config.output_std or defaults["output_std"]
        self.n_envs = config.n_envs or algos.default_n_envs(config.algo, self.family)
        # Settings left at their defaults take the family's where it has its own (Atari: App. A.2).
        self.pretrain_epochs = _family_default(config, "pretrain_epochs", defaults)
        self.max_labels_kept = _family_default(config, "max_labels_kept", defaults)
        self.reward_pairs_per_step = _family_default(config, "reward_pairs_per_step", defaults)
        # The agent waits while the reward model is fitted; the CNN can use every core meanwhile.
        self.fit_threads = config.fit_threads or ((os.cpu_count() or 1) if self.stores_frames else 1)
        self._check_run_dir()

    # ------------------------------------------------------------------------------------ the loop
    def train(self) -> TrainStats:
        checkpoint = latest_checkpoint(self.run_dir) if self.resume else None
        self._build(checkpoint)
        if self.config.learns_reward and checkpoint is None:
            self._pretrain_reward_model()
            self._checkpoint()  # hours of pre-training on Atari: never redo them after a kill
            (self.run_dir / "pretraining.pt").unlink(missing_ok=True)  # the checkpoint supersedes it
        remaining = self.config.steps - self.agent.num_timesteps
        if remaining > 0:
            try:
                self.agent.learn(
                    remaining,
                    callback=_LoopCallback(self),
                    reset_num_timesteps=checkpoint is None,
                    progress_bar=self.config.progress_bar,
                )
            except KeyboardInterrupt:  # Ctrl-C / SIGINT: keep the progress, `prefrl resume` continues
                self._checkpoint()
                self.store.close()
                raise
        self._after_rollout(self.agent.num_timesteps, final=True)
        self._checkpoint()
        self.store.close()
        try:
            final = final_true_return(self.metrics.path, self.config.steps)
        except ValueError:
            final = None
        return TrainStats(self.agent.num_timesteps, len(self.dataset), final, self._wall_s(), self.run_dir)

    def _pretrain_reward_model(self) -> None:
        """Initial labels on segments of a random policy, then a longer first fit (App. A).

        The fit's progress is saved to ``pretraining.pt`` at most every :data:`PRETRAIN_SAVE_S` seconds
        and on Ctrl-C, so that a killed run goes on from there: Atari's 200 epochs take hours on a CPU.
        """
        missing = self.schedule.initial_labels - self.labels_requested
        if missing > 0:
            self._collect_random_segments(min(self.pool_capacity, 4 * missing))
            self._ask(RandomSelector().select(self.pool, missing, self.rng))
        self._collect_answers()
        # Only these first answers block; "pending() == 0" ends the wait when "can't tell" answers
        # leave the dataset short of the target.
        while len(self.dataset) < self.wait_for_labels and self.teacher.pending() > 0:
            time.sleep(0.5)  # people are labeling in the GUI
            self._collect_answers()
        if len(self.dataset) == 0:
            raise RuntimeError(
                "no usable initial labels (every answer was 'can't tell'); cannot fit a reward"
            )
        progress = self._load_pretraining()
        last_save = time.monotonic()

        def save_now_and_then(progress: FitProgress) -> None:
            nonlocal last_save
            if time.monotonic() - last_save >= PRETRAIN_SAVE_S:
                self._save_pretraining(progress)
                last_save = time.monotonic()

        try:
            self._fit(self.pretrain_epochs, progress=progress, on_epoch=save_now_and_then)
        except KeyboardInterrupt:
            if self._fit_progress is not None:
                self._save_pretraining(self._fit_progress)
            self.store.close()
            raise

    def _save_pretraining(self, progress: FitProgress) -> None:
        state = {"ensemble": self.ensemble.state(), "progress": progress, "rng": self.rng.bit_generator.state}
        tmp = self.run_dir / ".pretraining.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / "pretraining.pt")

    def _load_pretraining(self) -> FitProgress | None:
        """The saved progress of an interrupted pre-training (and its model and RNG), if there is one."""
        path = self.run_dir / "pretraining.pt"
        if not self.resume or not path.exists():
            return None
        state = torch.load(path, map_location=self.config.device, weights_only=False)
        self.ensemble.restore(state["ensemble"])
        self.rng.bit_generator.state = state["rng"]
        return cast(FitProgress, state["progress"])

    def _after_rollout(self, step: int, final: bool = False) -> None:
        """Runs after each rollout of the agent: log, update the reward model when due, checkpoint."""
        self._log_episodes(step)
        if self.config.learns_reward and step >= self._next_update and not final:
            self._next_update = step + self.config.reward_update_interval
            self._ask(self._select_queries(step))
            if self._collect_answers() > 0:
                self._refit(step)
            elif len(self.pool):
                self._renormalize()
        if step >= self._next_checkpoint and not final:
            self._next_checkpoint = step + self.config.checkpoint_interval
            self._checkpoint()

    # ------------------------------------------------------------------------- the loop's steps
    def _select_queries(self, step: int) -> list[tuple[Any, Any]]:
        due = self.schedule.labels_due(step) - self.labels_requested
        return self.selector.select(self.pool, due, self.rng) if due > 0 else []

    def _ask(self, pairs: list[tuple[Any, Any]]) -> None:
        if not pairs:
            return
        if self.config.teacher == "human" and isinstance(self.reward_env, FrameSharingRewardVecEnv):
            pairs = self.reward_env.with_clips(pairs)  # colour clips only for pairs shown to people
        queries = self.store.add_queries(pairs)
        self._outstanding.update({q.query_id: q for q in queries})
        self.labels_requested += len(queries)
        self.teacher.post(queries)

    def _collect_answers(self) -> int:
        """Store new answers and add the usable ones to the dataset; returns how many were added."""
        answers = self.teacher.poll()
        if answers and not getattr(self.teacher, "answers_persisted", False):
            self.store.add_answers(answers)
        added = 0
        for answer in answers:
            query = self._outstanding.pop(answer.query_id, None)
            if query is None:
                continue  # a repeat shown to measure agreement, or a query from an earlier process
            if answer.preference != Preference.SKIP:
                self.dataset.add(query.left, query.right, preference_to_mu(answer.preference))
                added += 1
        return added

    def _refit(self, step: int) -> None:
        """The reward-model update after new labels: ``reward_epochs`` epochs over the preference set, or
        (``reward_pairs_per_step``) a fixed number of pairs per RL step since the last update, shared by the
        members. Counting from the last update, not the last update's due step, keeps the ratio when updates
        were skipped for want of new answers (a person labelling slower than the agent runs)."""
        since, self._last_fit_step = step - self._last_fit_step, step
        if not self.reward_pairs_per_step:
            self._fit(self.config.reward_epochs)
            return
        pairs = self.reward_pairs_per_step * since
        self._fit(1, sample_size=max(1, round(pairs / self.ensemble.ensemble_size)))

    def _fit(
        self,
        epochs: int,
        progress: FitProgress | None = None,
        on_epoch: Callable[[FitProgress], None] | None = None,
        sample_size: int | None = None,
    ) -> None:
        def track(progress: FitProgress) -> None:
            self._fit_progress = progress
            if on_epoch is not None:
                on_epoch(progress)

        self._fit_progress = progress
        agent_threads = torch.get_num_threads()
        torch.set_num_threads(self.fit_threads)
        try:
            stats = self.ensemble.fit(
                self.dataset,
                epochs=epochs,
                rng=self.rng,
                progress=progress,
                on_epoch=track,
                sample_size=sample_size,
            )
            self._fit_progress = None
            self._renormalize()
        finally:
            torch.set_num_threads(agent_threads)
        self._last_fit = stats
        self._record_fit(stats)

    def _renormalize(self) -> None:
        # Scoring 20,000 stacks with a 3-member CNN takes several seconds on a CPU, after every update;
        # 5,000 random steps of the pool still fix the scale to about 1 %.
        steps = 5_000 if self.stores_frames else 20_000
        if len(self.pool):
            obs, acts = self.pool.observations(steps, self.rng)
        else:
            obs, acts = self.dataset.all_steps(steps, self.rng)
        self.ensemble.normalize(obs, acts)

    def _collect_random_segments(self, n_segments: int) -> None:
        self.venv.reset()
        while len(self.pool) < n_segments:
            self.venv.step(random_actions(self.venv, self.rng))

    # ---------------------------------------------------------------------------------- building
    def _check_run_dir(self) -> None:
        config_path = self.run_dir / "config.json"
        if self.resume:
            if not config_path.exists():
                raise ConfigError(f"{self.run_dir} holds no run to resume (no config.json)")
            return
        if config_path.exists():
            saved = json.loads(config_path.read_text())
            if saved != self.config.to_json():
                raise ConfigError(
                    f"{self.run_dir} already holds a different run; choose another --run-dir "
                    f"or continue that one with `prefrl resume {self.run_dir}`"
                )
            raise ConfigError(
                f"{self.run_dir} already holds this run; continue it with `prefrl resume {self.run_dir}`"
            )

    def _build(self, checkpoint: Path | None) -> None:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            cfg.save(self.run_dir / "config.json")
        torch.set_num_threads(cfg.threads)
        state = read_state(checkpoint) if checkpoint else {}
        set_random_seed(cfg.seed + state.get("resumes", 0))
        self.rng = np.random.default_rng(cfg.seed)
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
        self.resumes = state.get("resumes", -1) + 1
        self._wall_start, self._wall_before = time.time(), state.get("wall_s", 0.0)
        self._build_env_and_agent(checkpoint)
        self._build_labels()
        self.selector = make_selector(cfg.query_selection, self.ensemble, oversample=cfg.oversample)
        self._last_fit = None
        self._fit_progress = None
        self.metrics = MetricsLog(self.run_dir / "metrics.csv")
        self.metrics.truncate_after(state.get("step", 0))
        self._next_update = state.get("next_update", cfg.reward_update_interval)
        # Checkpoints from before this field: take the last update as one interval before the next.
        last_due = max(0, self._next_update - cfg.reward_update_interval)
        self._last_fit_step = state.get("last_fit_step", last_due)
        self._next_checkpoint = state.get("next_checkpoint", cfg.checkpoint_interval)

    def _build_env_and_agent(self, checkpoint: Path | None) -> None:
        """env → learned-reward wrapper (sees raw observations) → VecNormalize → agent."""
        cfg = self.config
        self.pool_capacity = 2_000
        self.pool = (FrameSegmentPool if self.stores_frames else SegmentPool)(self.pool_capacity)
        base = make_vec_env(cfg.env, self.n_envs, cfg.seed + 1000 * self.resumes, self.env_kwargs)
        self.ensemble = self._make_ensemble(base)
        self.reward_env = (FrameSharingRewardVecEnv if self.stores_frames else LearnedRewardVecEnv)(
            base,
            self.ensemble if cfg.learns_reward else None,
            segment_length=self.segment_length if cfg.learns_reward else None,
            pool=self.pool,
        )
        venv: VecEnv = self.reward_env
        if algos.normalizes_observations(cfg.algo, self.family):
            if checkpoint:
                venv = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), venv)
            else:
                venv = VecNormalize(
                    venv, gamma=algos.HYPERPARAMS.get((self.family, cfg.algo), {}).get("gamma", 0.99)
                )
        self.venv = venv
        if checkpoint:
            self.agent: BaseAlgorithm = algos.ALGO_CLASSES[cfg.algo].load(
                checkpoint / "agent.zip", env=venv, device=cfg.device
            )
            if cfg.learns_reward:
                self.ensemble.load(checkpoint / "reward_model.pt")
        else:
            self.agent = algos.make_agent(cfg.algo, self.family, venv, seed=cfg.seed, device=cfg.device)
        self.agent.set_logger(
            configure(str(self.run_dir / "logs" / f"session-{self.resumes}"), ["csv", "tensorboard"])
        )

    def _build_labels(self) -> None:
        """The label store, the dataset rebuilt from its answers, the teacher, and unanswered queries."""
        cfg = self.config
        self.store = LabelStore(self.run_dir / "labels.sqlite")
        if cfg.instructions:
            self.store.set_meta("instructions", cfg.instructions)
        self.store.set_meta("env_id", cfg.env)  # the labeling server renders the queries' clips in this env
        if isinstance(self.reward_env, FrameSharingRewardVecEnv):
            store = self.reward_env.frame_store  # shared with the pool's segments
            self.dataset: Any = FramePreferenceDataset(self.max_labels_kept, store=store)
        else:
            self.dataset = PreferenceDataset(self.max_labels_kept)
        for query, preference in self.store.answered_pairs():
            if preference != Preference.SKIP:
                self.dataset.add(query.left, query.right, preference_to_mu(preference))
        self.teacher = self._make_teacher()
        self._outstanding: dict[int, Query] = {}
        pending = [self.store.query(i) for i in self.store.pending_query_ids()]
        self._outstanding.update({q.query_id: q for q in pending})
        if pending and not getattr(self.teacher, "answers_persisted", False):
            self.teacher.post(pending)  # asked before a kill, never answered
        self.labels_requested = self.store.num_queries(repeats=False)

    def _make_ensemble(self, venv: VecEnv) -> RewardEnsemble:
        """The reward model for this env family (MLP for vector observations, App. A.1; CNN for stacked
        frames, App. A.2)."""
        if is_frame_stack_space(venv.observation_space):
            return cnn_ensemble(
                venv.observation_space,
                venv.action_space,
                ensemble_size=self.config.ensemble_size,
                dropout=self.config.dropout or 0.5,
                output_std=self.output_std,
                device=self.config.device,
            )
        return RewardEnsemble.for_spaces(
            venv.observation_space,
            venv.action_space,
            ensemble_size=self.config.ensemble_size,
            dropout=self.config.dropout,
            output_std=self.output_std,
            device=self.config.device,
        )

    def _make_teacher(self) -> Teacher:
        if self._custom_teacher is not None:
            return self._custom_teacher
        if self.config.teacher == "human":
            return StoreTeacher(self.store)
        if self.config.teacher == "true-reward":
            return make_synthetic_teacher("oracle", self.rng)  # never asked: no reward is learned
        return make_synthetic_teacher(self.config.teacher, self.rng)

    # ----------------------------------------------------------------------------- bookkeeping
    def _wall_s(self) -> float:
        return self._wall_before + time.time() - self._wall_start

    def _log_episodes(self, step: int) -> None:
        episodes = self.reward_env.drain_episodes()
        if not episodes:
            return
        true_return = float(np.mean([e["r"] for e in episodes]))
        learned_return = float(np.mean([e["learned_r"] for e in episodes]))
        val_acc = self._last_fit.val_accuracy if self._last_fit else float("nan")
        self.metrics.append(
            step=step,
            wall_s=round(self._wall_s(), 2),
            episodes=len(episodes),
            true_return=true_return,
            learned_return=learned_return,
            labels=len(self.dataset),
            val_accuracy=val_acc,
        )
        log = self.agent.logger
        log.record("rollout/true_ep_return", true_return)
        log.record("rollout/learned_ep_return", learned_return)
        log.record("labels/total", len(self.dataset))
        log.record("labels/requested", self.labels_requested)

    def _record_fit(self, stats: FitStats) -> None:
        log = self.agent.logger
        log.record("reward_model/train_loss", stats.train_loss)
        log.record("reward_model/val_loss", stats.val_loss)
        log.record("reward_model/val_accuracy", stats.val_accuracy)
        log.record("reward_model/l2_coef", stats.l2_coef)

    def _checkpoint(self) -> None:
        def write(path: Path) -> None:
            self.agent.save(path / "agent.zip")
            if isinstance(self.venv, VecNormalize):
                self.venv.save(str(path / "vecnormalize.pkl"))
            if self.config.learns_reward:
                self.ensemble.save(path / "reward_model.pt")

        state = {
            "step": int(self.agent.num_timesteps),
            "next_update": self._next_update,
            "last_fit_step": self._last_fit_step,
            "next_checkpoint": self._next_checkpoint,
            "wall_s": self._wall_s(),
            "resumes": self.resumes,
            "rng": self.rng.bit_generator.state,
            "labels": len(self.dataset),
        }
        write_checkpoint(self.run_dir, int(self.agent.num_timesteps), state, write)


def _family_default(config: TrainConfig, name: str, defaults: dict[str, Any]) -> Any:
    """``config.<name>``, or the family's default when the user left the setting at TrainConfig's default."""
    value = getattr(config, name)
    if name in defaults and value == TrainConfig.__dataclass_fields__[name].default:
        return defaults[name]
    return value


class _LoopCallback(BaseCallback):
    def __init__(self, trainer: PreferenceTrainer) -> None:
        super().__init__()
        self.trainer = trainer

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.trainer._after_rollout(self.num_timesteps)
