"""What differs between observation kinds, in one object per kind.

Vector observations (MuJoCo, classic control) and stacked Atari frames are pooled, stored, scored and shown
to people differently: frames are stored once and shared between the segment pool and the preference
dataset, scored by a CNN, and replayed in colour for people (App. A.2, App. B); vectors are plain arrays
scored by an MLP, and their clips are rendered from the MuJoCo states kept in each segment (App. A.1). The
trainer asks the kind built from the run's spec for its parts and never tests which kind it has; a new kind
(images rendered from MuJoCo, dict observations) is a new class here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stable_baselines3.common.vec_env import VecEnv

from prefrl.atari import FrameSharingRewardVecEnv
from prefrl.cnn_reward import cnn_ensemble
from prefrl.frame_storage import FramePreferenceDataset, FrameSegmentPool
from prefrl.preference_dataset import PreferenceDataset
from prefrl.reward_model import RewardEnsemble, RewardFn
from prefrl.segments import Pair, SegmentPool
from prefrl.spec import RunSpec
from prefrl.wrappers import LearnedRewardVecEnv

POOL_CAPACITY = 2_000
"""Recent segments that queries are drawn from."""


class ObservationKind(Protocol):
    """Builds the parts of a run that depend on what an observation is."""

    renormalize_steps: int
    """Pool steps the ensemble is renormalised on after each update (App. A: zero mean, fixed std)."""
    updates_in_process: bool
    """Background reward updates run in a worker process (True) or a thread (False); see
    :class:`~prefrl.reward_updates.RewardUpdater`."""

    def ensemble(self, venv: VecEnv) -> RewardEnsemble:
        """A fresh reward ensemble for ``venv``'s spaces."""
        ...

    def reward_env(self, venv: VecEnv, reward_fn: RewardFn | None) -> LearnedRewardVecEnv:
        """``venv`` with its reward swapped for ``reward_fn``'s (None: the true reward), cutting segments
        into the kind's pool."""
        ...

    def dataset(self, reward_env: LearnedRewardVecEnv) -> PreferenceDataset:
        """An empty preference dataset that can hold this kind's segments."""
        ...

    def for_people(self, reward_env: LearnedRewardVecEnv, pairs: list[Pair]) -> list[Pair]:
        """``pairs`` as they are shown to people (with whatever their clips need)."""
        ...


class VectorObservations:
    """Flat observations: an MLP ensemble (App. A.1), segments that keep MuJoCo states for their clips."""

    renormalize_steps = 20_000
    updates_in_process = True  # an MLP fit is mostly Python: in a thread it would hold the agent's GIL
    make_ensemble: Callable[..., RewardEnsemble] = staticmethod(RewardEnsemble.for_spaces)

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec

    def ensemble(self, venv: VecEnv) -> RewardEnsemble:
        return self.make_ensemble(
            venv.observation_space,
            venv.action_space,
            ensemble_size=self.spec.ensemble_size,
            dropout=self.spec.dropout,
            l2_coef=self.spec.reward_l2,
            validation_share=self.spec.reward_validation_share,
            use_actions=self.spec.reward_inputs == "observations-actions",
            activation=self.spec.reward_activation,
            output_std=self.spec.output_std,
            device=self.spec.device,
        )

    def reward_env(self, venv: VecEnv, reward_fn: RewardFn | None) -> LearnedRewardVecEnv:
        return LearnedRewardVecEnv(
            venv, reward_fn, segment_length=self._segment_length(), pool=SegmentPool(POOL_CAPACITY)
        )

    def dataset(self, reward_env: LearnedRewardVecEnv) -> PreferenceDataset:
        return PreferenceDataset(self.spec.max_labels_kept)

    def for_people(self, reward_env: LearnedRewardVecEnv, pairs: list[Pair]) -> list[Pair]:
        return pairs  # the labeling server renders clips from the segments' states

    def _segment_length(self) -> int | None:
        return self.spec.segment_length if self.spec.learns_reward else None


class FrameStackObservations(VectorObservations):
    """Stacked uint8 frames (App. A.2): a CNN ensemble, each frame stored once for pool and dataset, and
    colour clips replayed from the emulator state only for pairs shown to people."""

    # Scoring 20,000 stacks with a 3-member CNN takes several seconds on a CPU; 5,000 random pool steps
    # still fix the scale to about 1 %.
    renormalize_steps = 5_000
    updates_in_process = False  # CNN ops release the GIL; the frames stay in this process's store
    make_ensemble = staticmethod(cnn_ensemble)

    def reward_env(self, venv: VecEnv, reward_fn: RewardFn | None) -> LearnedRewardVecEnv:
        return FrameSharingRewardVecEnv(
            venv, reward_fn, segment_length=self._segment_length(), pool=FrameSegmentPool(POOL_CAPACITY)
        )

    def dataset(self, reward_env: LearnedRewardVecEnv) -> PreferenceDataset:
        assert isinstance(reward_env, FrameSharingRewardVecEnv)
        return FramePreferenceDataset(self.spec.max_labels_kept, store=reward_env.frame_store)

    def for_people(self, reward_env: LearnedRewardVecEnv, pairs: list[Pair]) -> list[Pair]:
        assert isinstance(reward_env, FrameSharingRewardVecEnv)
        return reward_env.with_clips(pairs)


def observation_kind(spec: RunSpec) -> ObservationKind:
    """The kind named by ``spec.observations``."""
    kinds: dict[str, type[VectorObservations]] = {
        "vector": VectorObservations,
        "frame-stack": FrameStackObservations,
    }
    return kinds[spec.observations](spec)
