"""Agents: any SB3 algorithm; prefrl sets up A2C, PPO, TRPO (sb3-contrib), SAC and TD3.

Their defaults per env family are rows of :data:`prefrl.spec.DEFAULTS`; this module only builds and loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from prefrl.off_policy import HybridReplayBuffer, StateEntropyReplayBuffer
from prefrl.spec import RunSpec

ALGO_CLASSES: dict[str, type[BaseAlgorithm]] = {"a2c": A2C, "ppo": PPO, "trpo": TRPO, "sac": SAC, "td3": TD3}
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
"""Activations that ``policy_kwargs`` in ``--agent-kwargs`` may name (RL Zoo writes ``nn.ReLU``; our settings
stay JSON)."""

TD3_NOISE_STD = 0.1
"""Gaussian exploration noise of TD3, as a share of the action range's half-width (RL Zoo's MuJoCo
setting)."""


def make_agent(spec: RunSpec, venv: VecEnv) -> BaseAlgorithm:
    """A new agent for ``spec`` on ``venv``, with the spec's hyper-parameters."""
    policy = "CnnPolicy" if spec.observations == "frame-stack" else "MlpPolicy"
    kwargs = dict(spec.agent_hyperparams)
    if isinstance(kwargs.get("policy_kwargs", {}).get("activation_fn"), str):
        policy_kwargs = dict(kwargs["policy_kwargs"])
        policy_kwargs["activation_fn"] = ACTIVATIONS[policy_kwargs["activation_fn"]]
        kwargs["policy_kwargs"] = policy_kwargs
    if spec.off_policy and spec.unsupervised_steps > 0:
        kwargs["replay_buffer_class"] = StateEntropyReplayBuffer  # PEBBLE's exploration bonus first
    elif spec.off_policy and spec.hybrid_replay_share > 0:
        kwargs["replay_buffer_class"] = HybridReplayBuffer
    if spec.off_policy and spec.hybrid_replay_share > 0 and spec.policy_aligned_steps:
        kwargs["replay_buffer_kwargs"] = {
            **kwargs.get("replay_buffer_kwargs", {}),
            "recent_rows": max(1, spec.policy_aligned_steps // spec.n_envs),  # a row holds one step per env
            "recent_share": spec.hybrid_replay_share,
        }
    if spec.algo == "td3":
        shape = venv.action_space.shape or ()
        half_range = (venv.action_space.high - venv.action_space.low) / 2  # type: ignore[attr-defined]
        kwargs.setdefault("action_noise", NormalActionNoise(np.zeros(shape), TD3_NOISE_STD * half_range))
    return ALGO_CLASSES[spec.algo](policy, venv, seed=spec.seed, device=spec.device, verbose=0, **kwargs)


def load_agent(algo: str, path: Path, venv: VecEnv | None = None, *, device: str = "cpu") -> BaseAlgorithm:
    """An agent saved with ``agent.save(path)``, attached to ``venv`` when given."""
    return ALGO_CLASSES[algo].load(path, env=venv, device=device)
