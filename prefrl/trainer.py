"""The Christiano et al. 2017 loop (§2.2), around any SB3 agent.

    random-policy segments → initial labels → fit the reward ensemble            (pre-training)
    then, while the agent trains on the learned reward, after every rollout:
        answers → label store;  a finished reward update → swapped in, its queries asked
        every ``reward_update_interval`` steps: new labels → start an update (fit, renormalise, score)

The agent runs one uninterrupted ``learn`` call (so learning-rate schedules stay intact); the loop's work
happens in a callback at the end of each rollout. Reward updates run beside the agent by default
(:mod:`prefrl.reward_updates`) and the new model takes over between rollouts. Labels go to SQLite as they
arrive and the run is checkpointed atomically, so ``prefrl resume`` continues a killed run with no label
lost.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecNormalize

from prefrl.checkpoint import latest_checkpoint, read_state, write_checkpoint
from prefrl.config import TrainConfig
from prefrl.environment import random_actions
from prefrl.metrics import MetricsLog, final_true_return
from prefrl.observations import POOL_CAPACITY
from prefrl.off_policy import (
    RESET_UPDATES,
    StateEntropyReplayBuffer,
    checkpoint_replay_buffer,
    relabel_replay_buffer,
    reset_critic,
)
from prefrl.preference_dataset import preference_to_mu
from prefrl.reward_model import FitProgress, FitStats, UncertaintyBonus
from prefrl.reward_updates import UpdateRequest, UpdateResult
from prefrl.run_parts import REPLAY_BUFFER_FILE, RunParts, build_parts
from prefrl.segments import Pair
from prefrl.spec import RunSpec, check_run_dir, resolve
from prefrl.teachers import Preference, Query, Teacher

PRETRAIN_SAVE_S = 60.0
"""Seconds between saves of the reward model's pre-training progress (``pretraining.pt``)."""


@dataclass
class TrainStats:
    steps: int
    labels: int
    final_true_return: float | None
    wall_s: float
    run_dir: Path


class PreferenceTrainer:
    """Train ``spec.algo`` on ``spec.env`` from the teacher's preferences.

    Args:
        config: the run's settings (resolved here) or its resolved :class:`~prefrl.spec.RunSpec`.
        teacher: overrides the teacher named in the settings (e.g. a scripted labeller).
        resume: continue the run in the run directory from its latest checkpoint.

    Raises:
        ConfigError: for a bad setting or run directory, before anything is written.
    """

    parts: RunParts
    rng: np.random.Generator
    metrics: MetricsLog
    resumes: int
    labels_requested: int
    _unfitted: list[tuple[Query, Preference]]  # answers stored since the last update, not yet in the dataset
    _last_fit: FitStats | None
    _fit_progress: FitProgress | None  # of the pre-training fit under way, if any
    _next_update: int
    _last_fit_step: int  # the RL step of the last reward-model fit (0: pre-training)
    _next_checkpoint: int
    _pretrained: bool  # the reward model has had its first fit

    def __init__(
        self, config: TrainConfig | RunSpec, *, teacher: Teacher | None = None, resume: bool = False
    ) -> None:
        self.spec = config if isinstance(config, RunSpec) else resolve(config)
        self.run_dir, self.resume, self._custom_teacher = self.spec.run_dir, resume, teacher
        check_run_dir(self.run_dir, self.spec.config, resume=resume)

    # ------------------------------------------------------------------------------------ the loop
    def train(self) -> TrainStats:
        checkpoint = latest_checkpoint(self.run_dir) if self.resume else None
        self._build(checkpoint)
        if self.spec.learns_reward and not self._pretrained and self.spec.unsupervised_steps == 0:
            self._pretrain_reward_model(collect_random=True)
            self._checkpoint()  # hours of pre-training on Atari: never redo them after a kill
            (self.run_dir / "pretraining.pt").unlink(missing_ok=True)  # the checkpoint supersedes it
        self.parts.updater.reset_from_live()
        self._move_bonus_along(self.parts.agent.num_timesteps)
        remaining = self.spec.steps - self.parts.agent.num_timesteps
        try:
            if remaining > 0:
                self.parts.agent.learn(
                    remaining,
                    callback=_LoopCallback(self),
                    reset_num_timesteps=checkpoint is None,
                    progress_bar=self.spec.progress_bar,
                )
            self._log_episodes(self.parts.agent.num_timesteps)
            self._apply(self.parts.updater.take(wait=True), ask=False)  # the last update's model is kept
            self._store_answers()
            self._add_unfitted()  # the last answers count among the run's labels, though no fit saw them
        except KeyboardInterrupt:  # Ctrl-C / SIGINT / SIGTERM: keep the progress, `prefrl resume` continues
            self._checkpoint()
            self._close()
            raise
        self._checkpoint()
        self._close()
        try:
            final = final_true_return(self.metrics.path, self.spec.steps)
        except ValueError:
            final = None
        steps = self.parts.agent.num_timesteps
        return TrainStats(steps, len(self.parts.dataset), final, self._wall_s(), self.run_dir)

    def _after_rollout(self, step: int) -> None:
        """After each rollout of the agent: log, move labels along, update the reward model, checkpoint."""
        self._log_episodes(step)
        self._move_bonus_along(step)
        if self.spec.learns_reward and not self._pretrained and step >= self.spec.unsupervised_steps:
            if len(self.parts.reward_env.pool) >= 2:  # (a run resumed late in exploration refills its pool)
                self._end_unsupervised_exploration(step)
        if self.spec.learns_reward and self._pretrained:
            self._store_answers()
            self._apply(self.parts.updater.take())
            if step >= self._next_update and not self.parts.updater.busy:
                self._next_update = step + self.spec.reward_update_interval
                self.parts.updater.submit(self._update_request(step))
                self._apply(self.parts.updater.take())  # inline updates are done already
            elif self._all_answered() and not self.parts.updater.busy:
                self.parts.updater.submit(self._update_request(step, ask=False))
                self._apply(self.parts.updater.take())
        if step >= self._next_checkpoint:
            self._next_checkpoint = step + self.spec.checkpoint_interval
            self._checkpoint()

    # ------------------------------------------------------------------------- the loop's steps
    def _store_answers(self) -> None:
        """New answers go to the label store at once and wait for the next update to join the dataset."""
        answers = self.parts.teacher.poll()
        if answers and not self.parts.teacher.stores_answers:
            self.parts.store.add_answers(answers)
        for answer in answers:
            query = self.parts.outstanding.pop(answer.query_id, None)
            if query is not None:  # (else a repeat shown to measure agreement, or an earlier process's)
                self._unfitted.append((query, answer.preference))

    def _all_answered(self) -> bool:
        """--fit-when-answered: answers wait to be fitted and no query asked is still open."""
        return self.spec.fit_when_answered and bool(self._unfitted) and not self.parts.outstanding

    def _close(self) -> None:
        self.parts.store.close()
        self.parts.updater.close()

    def _update_request(self, step: int, *, ask: bool = True) -> UpdateRequest:
        """The next update: a fit if labels came in, then renormalisation and (``ask``) the scoring of
        candidates for the queries now due. The fit takes ``reward_epochs`` epochs or, with
        ``reward_pairs_per_step``, one pass over that many pairs per RL step since the last fit, shared by
        the members. Counting from the last fit keeps the ratio when updates went by without new answers (a
        person labelling slower than the agent runs). ``ask=False``: the fit alone (--fit-when-answered),
        between two updates that ask."""
        added = self._add_unfitted()
        epochs, sample_size = 0, None
        if added:
            epochs = self.spec.reward_epochs
            if self.spec.reward_pairs_per_step:
                pairs = self.spec.reward_pairs_per_step * (step - self._last_fit_step)
                epochs, sample_size = 1, max(1, round(pairs / self.parts.ensemble.ensemble_size))
        due = self.spec.schedule.labels_due(step) - self.labels_requested if ask else 0
        norm_obs, norm_acts = self._normalization_sample()
        selector = self.parts.updater.selector
        newest = None  # QPA: only the current policy's segments (segments of one env do not overlap)
        if self.spec.policy_aligned_steps:
            newest = max(2, self.spec.policy_aligned_steps // self.spec.segment_length)
        pool = self.parts.reward_env.pool
        candidates = pool.sample_pairs(due * selector.oversample, self.rng, newest=newest) if due > 0 else []
        return UpdateRequest(step, epochs, sample_size, norm_obs, norm_acts, candidates, max(due, 0))

    def _apply(self, result: UpdateResult | None, *, ask: bool = True) -> None:
        """A finished update is live now (the updater swapped it in): record it and ask its queries."""
        if result is None:
            return
        if result.stats is not None:
            self._last_fit, self._last_fit_step = result.stats, result.request.step
            self._record_fit(result.stats, result.seconds)
        self._relabel_replay_buffer()
        if ask:
            self._ask(result.queries)

    def _ask(self, pairs: list[Pair]) -> None:
        if not pairs:
            return
        if self.spec.teacher == "human":
            pairs = self.parts.kind.for_people(self.parts.reward_env, pairs)
        queries = self.parts.store.add_queries(pairs)
        self.parts.outstanding.update({q.query_id: q for q in queries})
        self.labels_requested += len(queries)
        self.parts.teacher.post(queries)

    def _add_unfitted(self) -> int:
        """Answers stored since the last update join the dataset (never while an update reads it)."""
        added = 0
        for query, preference in self._unfitted:
            if preference != Preference.SKIP:
                self.parts.dataset.add(query.left, query.right, preference_to_mu(preference))
                added += 1
        self._unfitted = []
        return added

    def _normalization_sample(self) -> tuple[np.ndarray, np.ndarray]:
        steps = self.parts.kind.renormalize_steps
        if len(self.parts.reward_env.pool):
            return self.parts.reward_env.pool.observations(steps, self.rng)
        return self.parts.dataset.all_steps(steps, self.rng)

    # ------------------------------------------------------------------------------ pre-training
    def _end_unsupervised_exploration(self, step: int) -> None:
        """PEBBLE (Lee et al. 2021, §4.1): after ``unsupervised_steps`` of state-entropy exploration the
        initial labels come from the segments it produced; then every stored reward is the learned one, and
        the critic, which learnt the bonus's values, starts again on them (B-Pref's reset)."""
        self._pretrain_reward_model(collect_random=False)
        buffer = self._replay_buffer()
        if isinstance(buffer, StateEntropyReplayBuffer):
            buffer.intrinsic = False
        self._relabel_replay_buffer()
        agent = self.parts.agent
        if isinstance(agent, OffPolicyAlgorithm):
            reset_critic(agent)
            agent.train(gradient_steps=RESET_UPDATES, batch_size=agent.batch_size)
        self.parts.updater.reset_from_live()
        self._next_update = step + self.spec.reward_update_interval
        self._last_fit_step = step
        self._checkpoint()

    def _pretrain_reward_model(self, *, collect_random: bool) -> None:
        """Initial labels on segments of a random policy (or, ``collect_random=False``, on the segments in the
        pool), then a longer first fit (App. A).

        The fit's progress is saved to ``pretraining.pt`` at most every :data:`PRETRAIN_SAVE_S` seconds
        and on Ctrl-C, so that a killed run goes on from there: Atari's 200 epochs take hours on a CPU.
        """
        parts = self.parts
        missing = self.spec.initial_labels - self.labels_requested
        if missing > 0:
            if collect_random:  # two segments per query, each labelled once (SegmentPool.disjoint_pairs)
                self._collect_random_segments(min(POOL_CAPACITY, 2 * missing))
            self._ask(parts.reward_env.pool.disjoint_pairs(missing, self.rng))
        self._store_answers()
        self._add_unfitted()
        # Only these first answers block; "pending() == 0" ends the wait when "can't tell" answers
        # leave the dataset short of the target.
        while len(parts.dataset) < self.spec.wait_for_labels and parts.teacher.pending() > 0:
            time.sleep(0.5)  # people are labeling in the GUI
            self._store_answers()
            self._add_unfitted()
        if len(parts.dataset) == 0:
            raise RuntimeError(
                "no usable initial labels (every answer was 'can't tell'); cannot fit a reward"
            )
        progress = self._load_pretraining()
        last_save = time.monotonic()

        def save_now_and_then(progress: FitProgress) -> None:
            nonlocal last_save
            self._fit_progress = progress
            if time.monotonic() - last_save >= PRETRAIN_SAVE_S:
                self._save_pretraining(progress)
                last_save = time.monotonic()

        self._fit_progress = progress
        torch.set_num_threads(self.spec.fit_threads)  # nothing else runs yet
        try:
            stats = parts.ensemble.fit(
                parts.dataset,
                epochs=self.spec.pretrain_epochs,
                rng=self.rng,
                progress=progress,
                on_epoch=save_now_and_then,
            )
        except KeyboardInterrupt:
            if self._fit_progress is not None:
                self._save_pretraining(self._fit_progress)
            self._close()
            raise
        finally:
            torch.set_num_threads(self.spec.threads)
        parts.ensemble.normalize(*self._normalization_sample())
        self._last_fit = stats
        self._record_fit(stats, None)
        self._pretrained = True

    def _move_bonus_along(self, step: int) -> None:
        """RUNE's weight follows the env steps (between rollouts, as the model does)."""
        bonus = self.parts.reward_fn
        if isinstance(bonus, UncertaintyBonus):
            bonus.step = step
            self.parts.agent.logger.record("reward_model/exploration_beta", bonus.beta_now)

    def _replay_buffer(self) -> ReplayBuffer | None:
        agent = self.parts.agent
        return agent.replay_buffer if isinstance(agent, OffPolicyAlgorithm) else None

    def _relabel_replay_buffer(self) -> None:
        """Off-policy agents: every stored reward from the live reward model (PEBBLE §4.2)."""
        buffer = self._replay_buffer()
        if buffer is None or not self.spec.learns_reward:
            return
        start = time.perf_counter()
        unscale = self.parts.agent.policy.unscale_action
        relabel_replay_buffer(buffer, self.parts.reward_fn, to_env_actions=unscale)
        self.parts.agent.logger.record("reward_model/relabel_s", time.perf_counter() - start)

    def _save_pretraining(self, progress: FitProgress) -> None:
        state = {
            "ensemble": self.parts.ensemble.state(),
            "progress": progress,
            "rng": self.rng.bit_generator.state,
        }
        tmp = self.run_dir / ".pretraining.pt.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.run_dir / "pretraining.pt")

    def _load_pretraining(self) -> FitProgress | None:
        """The saved progress of an interrupted pre-training (and its model and RNG), if there is one."""
        path = self.run_dir / "pretraining.pt"
        if not self.resume or not path.exists():
            return None
        state = torch.load(path, map_location=self.spec.device, weights_only=False)
        self.parts.ensemble.restore(state["ensemble"])
        self.rng.bit_generator.state = state["rng"]
        return cast(FitProgress, state["progress"])

    def _collect_random_segments(self, n_segments: int) -> None:
        self.parts.venv.reset()
        while len(self.parts.reward_env.pool) < n_segments:
            self.parts.venv.step(random_actions(self.parts.venv, self.rng))

    # ---------------------------------------------------------------------------------- building
    def _build(self, checkpoint: Path | None) -> None:
        spec = self.spec
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            spec.config.save(self.run_dir / "config.json")
        (self.run_dir / "spec.json").write_text(json.dumps(spec.summary(), indent=2) + "\n")
        torch.set_num_threads(spec.threads)
        state = read_state(checkpoint) if checkpoint else {}
        set_random_seed(spec.seed + state.get("resumes", 0))
        self.rng = np.random.default_rng(spec.seed)
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
        self.resumes = state.get("resumes", -1) + 1
        self._wall_start, self._wall_before = time.time(), state.get("wall_s", 0.0)
        self.parts = build_parts(
            spec,
            checkpoint=checkpoint,
            env_seed=spec.seed + 1000 * self.resumes,
            rng=self.rng,
            log_dir=self.run_dir / "logs" / f"session-{self.resumes}",
            teacher=self._custom_teacher,
        )
        self.labels_requested = self.parts.store.num_queries(repeats=False)
        self._unfitted = []
        self._last_fit: FitStats | None = None
        self._fit_progress: FitProgress | None = None
        self.metrics = MetricsLog(self.run_dir / "metrics.csv")
        self.metrics.truncate_after(state.get("step", 0))
        self._next_update = state.get("next_update", spec.reward_update_interval)
        # Checkpoints from before this field: take the last update as one interval before the next.
        last_due = max(0, self._next_update - spec.reward_update_interval)
        self._last_fit_step = state.get("last_fit_step", last_due)
        self._next_checkpoint = state.get("next_checkpoint", spec.checkpoint_interval)
        # Runs from before unsupervised exploration had always pre-trained by their first checkpoint.
        self._pretrained = state.get("pretrained", checkpoint is not None)

    # ----------------------------------------------------------------------------- bookkeeping
    def _wall_s(self) -> float:
        return self._wall_before + time.time() - self._wall_start

    def _log_episodes(self, step: int) -> None:
        episodes = self.parts.reward_env.drain_episodes()
        if not episodes:
            return
        true_return = float(np.mean([e["r"] for e in episodes]))
        learned_return = float(np.mean([e["learned_r"] for e in episodes]))
        fit = self._last_fit
        self.metrics.append(
            step=step,
            wall_s=round(self._wall_s(), 2),
            episodes=len(episodes),
            true_return=true_return,
            learned_return=learned_return,
            labels=len(self.parts.dataset),
            val_accuracy=fit.val_accuracy if fit else math.nan,
            fresh_accuracy=fit.fresh_accuracy if fit else math.nan,
        )
        log = self.parts.agent.logger
        log.record("rollout/true_ep_return", true_return)
        log.record("rollout/learned_ep_return", learned_return)
        log.record("labels/total", len(self.parts.dataset))
        log.record("labels/requested", self.labels_requested)

    def _record_fit(self, stats: FitStats, seconds: float | None) -> None:
        log = self.parts.agent.logger
        log.record("reward_model/train_loss", stats.train_loss)
        log.record("reward_model/val_loss", stats.val_loss)
        log.record("reward_model/val_accuracy", stats.val_accuracy)
        log.record("reward_model/fresh_accuracy", stats.fresh_accuracy)
        log.record("reward_model/l2_coef", stats.l2_coef)
        if seconds is not None:
            log.record("reward_model/update_s", seconds)

    def _checkpoint(self) -> None:
        """Save the agent and the live ensemble. An update still running is not in it: its labels are in the
        store, and a resumed run starts that update again at once."""
        parts = self.parts

        def write(path: Path) -> None:
            parts.agent.save(path / "agent.zip")
            if isinstance(parts.venv, VecNormalize):
                parts.venv.save(str(path / "vecnormalize.pkl"))
            if self.spec.scores_learned_reward:
                parts.ensemble.save(path / "reward_model.pt")
            buffer = self._replay_buffer()
            if buffer is not None:
                checkpoint_replay_buffer(buffer, path / REPLAY_BUFFER_FILE)

        in_flight = parts.updater.in_flight
        state = {
            "step": int(parts.agent.num_timesteps),
            "next_update": in_flight.step if in_flight is not None else self._next_update,
            "last_fit_step": self._last_fit_step,
            "next_checkpoint": self._next_checkpoint,
            "wall_s": self._wall_s(),
            "resumes": self.resumes,
            "rng": self.rng.bit_generator.state,
            "labels": len(parts.dataset) + len(self._unfitted),
            "pretrained": self._pretrained,
        }
        write_checkpoint(self.run_dir, int(parts.agent.num_timesteps), state, write)


class _LoopCallback(BaseCallback):
    def __init__(self, trainer: PreferenceTrainer) -> None:
        super().__init__()
        self.trainer = trainer

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.trainer._after_rollout(self.num_timesteps)
