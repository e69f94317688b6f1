"""Off-policy agents (SAC, TD3) learning from preferences: PEBBLE (Lee et al. 2021).

Two things change when the agent learns from a replay buffer instead of fresh rollouts:

* **Relabelling.** Rewards stored in the buffer were computed by whichever reward model was live when the
  step was taken. After every reward-model update the whole buffer is scored again with the new model
  (:func:`relabel_replay_buffer`), so that the critic never mixes old and new rewards (PEBBLE §4.2).
* **Unsupervised pre-training.** Before the first queries the agent explores to maximise a state-entropy
  bonus (PEBBLE §4.1): a particle estimate, the distance from each state to its k-th nearest neighbour
  among the states in the buffer, r = log(1 + ‖s − s⁽ᵏ⁾‖), divided by a running standard deviation. Its
  segments are diverse behaviour rather than a random policy twitching, which makes the first labels worth
  more. :class:`StateEntropyReplayBuffer` hands SAC that bonus instead of the stored reward while its
  ``intrinsic`` flag is on. B-Pref's run scripts use 9,000 unsupervised steps and k = 5.

After the exploration the critic has learnt the values of the bonus, not of the learned reward: as B-Pref's
PEBBLE code does (``agent.reset_critic()``, then ``reset_update: 100`` gradient steps), the critic is
re-initialised (:func:`reset_critic`) once the buffer holds the learned rewards, and trained
:data:`RESET_UPDATES` steps before the agent goes on.

The buffer is saved with each checkpoint, compactly (:mod:`prefrl.replay_storage`) with the bonus's running
statistics (:func:`checkpoint_replay_buffer`), so a resumed SAC run goes on with the same experience.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from prefrl.replay_storage import filled_rows, load_replay_buffer, save_replay_buffer
from prefrl.reward_model import RewardFn

ENTROPY_K = 5
"""k of the k-nearest-neighbour entropy estimate (B-Pref's ``topK``)."""
ENTROPY_REFERENCE = 10_000
"""Stored states each bonus is measured against (a random subset once the buffer is larger): the estimate
stays cheap per gradient step however full the buffer is."""
RESET_UPDATES = 100
"""Gradient steps on the relabelled buffer after the critic is reset (B-Pref's ``reset_update``)."""
RELABEL_BATCH = 4_096
"""Transitions scored per pass when relabelling: larger batches push the ensemble's activations out of the
cache (1M Hopper transitions: 0.67 s at 4,096, 1.7 s at 65,536 on one thread; benchmarks/relabel_speed.py)."""


def relabel_replay_buffer(
    buffer: ReplayBuffer,
    reward_fn: RewardFn,
    *,
    to_env_actions: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int = RELABEL_BATCH,
) -> int:
    """Replace every stored reward by ``reward_fn(obs, action)``, in batched passes; returns how many.

    Args:
        buffer: an SB3 replay buffer (observations ``(size, n_envs, *obs_shape)``).
        reward_fn: the learned reward, e.g. a :class:`~prefrl.reward_model.RewardEnsemble`.
        to_env_actions: maps stored actions to the actions the env (and the reward model) saw: SAC and TD3
            store actions rescaled to [-1, 1] (``agent.policy.unscale_action`` undoes it).
        batch_size: transitions scored per call.
    """
    rows = filled_rows(buffer)
    obs = buffer.observations[:rows].reshape(rows * buffer.n_envs, *buffer.obs_shape)
    acts = buffer.actions[:rows].reshape(rows * buffer.n_envs, buffer.action_dim)
    rewards = np.empty(len(obs), dtype=np.float32)
    for start in range(0, len(obs), batch_size):
        batch_acts = acts[start : start + batch_size]
        if to_env_actions is not None:
            batch_acts = to_env_actions(batch_acts)
        rewards[start : start + batch_size] = reward_fn(obs[start : start + batch_size], batch_acts)
    buffer.rewards[:rows] = rewards.reshape(rows, buffer.n_envs)
    return len(obs)


class HybridReplayBuffer(ReplayBuffer):
    """A replay buffer that draws ``recent_share`` of each batch from its newest ``recent_rows`` rows and the
    rest uniformly (QPA's hybrid experience replay, Hu et al. 2024: the critic sees more of the current
    policy's behaviour, the part the learned reward was fitted and queried on). ``recent_share=0`` samples
    as :class:`ReplayBuffer` does."""

    def __init__(self, *args: Any, recent_rows: int = 0, recent_share: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recent_rows, self.recent_share = recent_rows, recent_share

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        rows = filled_rows(self)
        recent = min(self.recent_rows, rows)
        if self.recent_share <= 0 or recent <= 0 or self.optimize_memory_usage:
            return super().sample(batch_size, env)  # (SB3's memory-saving layout: uniform, as it samples)
        newest = round(self.recent_share * batch_size)
        older = np.random.randint(0, rows, batch_size - newest)
        recent_rows = (self.pos - 1 - np.random.randint(0, recent, newest)) % self.buffer_size
        return self._get_samples(np.concatenate([older, recent_rows]), env)


class StateEntropyReplayBuffer(HybridReplayBuffer):
    """A replay buffer that, while ``intrinsic`` is True, replaces sampled rewards by PEBBLE's state-entropy
    bonus of the next states (§4.1); otherwise a :class:`HybridReplayBuffer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.intrinsic = True
        self._rng = np.random.default_rng(0)
        self._count, self._mean, self._m2 = 0, 0.0, 0.0  # running moments of the bonus (Welford)

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        samples = super().sample(batch_size, env)
        if not self.intrinsic:
            return samples
        bonus = self.entropy_bonus(samples.next_observations.cpu().numpy())
        rewards = torch.as_tensor(bonus, dtype=samples.rewards.dtype, device=samples.rewards.device)
        return samples._replace(rewards=rewards.reshape(samples.rewards.shape))

    def entropy_bonus(self, states: np.ndarray) -> np.ndarray:
        """log(1 + distance to the k-th nearest stored state) of each of ``states`` ``(B, *obs_shape)``,
        divided by the running std of the bonus: ``(B,)``."""
        distances = knn_distance(states, self._reference(), ENTROPY_K)
        bonus = np.log1p(distances)
        # Running moments, merged batch by batch (Chan et al.'s parallel form of Welford's update).
        count, mean = len(bonus), float(bonus.mean())
        delta, total = mean - self._mean, self._count + count
        self._m2 += float(((bonus - mean) ** 2).sum()) + delta**2 * self._count * count / total
        self._mean += delta * count / total
        self._count = total
        std = np.sqrt(self._m2 / self._count) if self._count > 1 else 1.0
        return (bonus / max(std, 1e-8)).astype(np.float32)

    def exploration_state(self) -> dict[str, np.ndarray]:
        """What a resumed run needs besides the transitions: the flag and the bonus's running moments."""
        return {
            "intrinsic": np.array(self.intrinsic),
            "moments": np.array([self._count, self._mean, self._m2]),
        }

    def restore_exploration_state(self, state: dict[str, np.ndarray]) -> None:
        """Undo :meth:`exploration_state`."""
        self.intrinsic = bool(state["intrinsic"])
        count, mean, m2 = state["moments"]
        self._count, self._mean, self._m2 = int(count), float(mean), float(m2)

    def _reference(self) -> np.ndarray:
        rows = filled_rows(self)
        stored = self.observations[:rows].reshape(rows * self.n_envs, -1)
        if len(stored) > ENTROPY_REFERENCE:
            stored = stored[self._rng.choice(len(stored), ENTROPY_REFERENCE, replace=False)]
        return stored


def knn_distance(states: np.ndarray, reference: np.ndarray, k: int, chunk: int = 1_024) -> np.ndarray:
    """Distance from each of ``states`` ``(B, ...)`` to its k-th nearest row of ``reference`` ``(N, ...)``
    (the state itself, if stored, counts as its own nearest neighbour, as in PEBBLE's estimate)."""
    queries = torch.as_tensor(states.reshape(len(states), -1), dtype=torch.float32)
    points = torch.as_tensor(reference.reshape(len(reference), -1), dtype=torch.float32)
    k = min(k, len(points))
    out = []
    for start in range(0, len(queries), chunk):  # chunks bound the (B, N) distance matrix
        dist = torch.cdist(queries[start : start + chunk], points)
        out.append(dist.topk(k, dim=1, largest=False).values[:, -1])  # about 5x faster than kthvalue
    return torch.cat(out).numpy()


def reset_critic(agent: OffPolicyAlgorithm) -> None:
    """Re-initialise the critic of a SAC or TD3 ``agent`` (its target too, and its optimiser's state); the
    actor is kept. Used once PEBBLE's exploration ends (B-Pref's ``reset_critic``)."""
    policy: Any = agent.policy  # SAC's or TD3's policy: both have a critic and its target
    critic, target = policy.critic, policy.critic_target
    for module in critic.modules():
        if isinstance(module, torch.nn.Linear):
            module.reset_parameters()
    target.load_state_dict(critic.state_dict())
    critic.optimizer = policy.optimizer_class(
        critic.parameters(),
        lr=agent.lr_schedule(agent._current_progress_remaining),
        **policy.optimizer_kwargs,
    )


def checkpoint_replay_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Save an agent's replay buffer compactly (:func:`~prefrl.replay_storage.save_replay_buffer`), with its
    exploration state when it has one."""
    extra = buffer.exploration_state() if isinstance(buffer, StateEntropyReplayBuffer) else None
    save_replay_buffer(buffer, path, extra=extra)


def restore_replay_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Fill a new agent's ``buffer`` from :func:`checkpoint_replay_buffer`'s file."""
    extra = load_replay_buffer(buffer, path)
    if isinstance(buffer, StateEntropyReplayBuffer) and extra:
        buffer.restore_exploration_state(extra)
