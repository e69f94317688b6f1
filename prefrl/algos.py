"""Agents: any SB3 algorithm, with per-family defaults for the ones prefrl tests (A2C, PPO, TRPO, SAC)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from sb3_contrib import TRPO
from stable_baselines3 import A2C, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv

from prefrl.config import ConfigError

ALGO_CLASSES: dict[str, type[BaseAlgorithm]] = {"a2c": A2C, "ppo": PPO, "trpo": TRPO, "sac": SAC}

# Hyper-parameters by (env family, algo). MuJoCo TRPO follows the paper (γ = 0.995, λ = 0.97,
# App. A.1); PPO uses the PPO paper's MuJoCo settings (SB3's defaults); the rest keep SB3's defaults.
HYPERPARAMS: dict[tuple[str, str], dict[str, Any]] = {
    ("mujoco", "ppo"): {"n_steps": 1024, "batch_size": 64, "n_epochs": 10, "gae_lambda": 0.95, "gamma": 0.99},
    ("mujoco", "a2c"): {
        "n_steps": 8,
        "gae_lambda": 0.9,
        "vf_coef": 0.4,
        "ent_coef": 0.0,
        "use_rms_prop": True,
    },
    ("mujoco", "trpo"): {"n_steps": 1024, "batch_size": 128, "gamma": 0.995, "gae_lambda": 0.97},
    ("mujoco", "sac"): {"learning_starts": 1_000},
    # Atari (App. A.2): A2C as in the paper (16 envs, n = 5, lr 7e-4 decaying linearly, entropy 0.01,
    # RMSProp alpha = 0.99, eps = 1e-5: SB3's A2C optimiser); PPO with RL Zoo's Atari settings; TRPO untuned.
    ("atari", "a2c"): {
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
    ("atari", "ppo"): {
        "n_steps": 128,
        "n_epochs": 4,
        "batch_size": 256,
        "learning_rate": LinearSchedule(2.5e-4, 0.0, 1.0),
        "clip_range": LinearSchedule(0.1, 0.0, 1.0),
        "ent_coef": 0.01,
        "vf_coef": 0.5,
    },
    ("atari", "trpo"): {"n_steps": 128, "batch_size": 256},
    # Small tasks (classic control, test envs): short rollouts so that a few thousand steps make progress.
    ("other", "ppo"): {"n_steps": 256, "batch_size": 64},
    ("other", "trpo"): {"n_steps": 256, "batch_size": 64},
    ("other", "sac"): {"learning_starts": 200},
}
DEFAULT_N_ENVS: dict[tuple[str, str], int] = {
    ("mujoco", "a2c"): 4,
    ("atari", "a2c"): 16,  # App. A.2
    ("atari", "ppo"): 8,  # RL Zoo
    ("atari", "trpo"): 8,
}


def normalizes_observations(algo: str, family: str | None = None) -> bool:
    """On-policy agents get VecNormalize (observations and returns), as RL Zoo does for MuJoCo; never on
    Atari, whose uint8 frames the CNN policy scales itself and whose learned reward is already scaled
    (std 0.05, App. A.2)."""
    return algo in ("a2c", "ppo", "trpo") and family != "atari"


def check_action_space(algo: str, space: gym.Space) -> None:
    if algo == "sac" and not isinstance(space, gym.spaces.Box):
        raise ConfigError(
            f"sac needs a continuous (Box) action space; this env's is {space}; use --algo ppo, a2c or trpo"
        )


def make_agent(algo: str, family: str, venv: VecEnv, *, seed: int, device: str = "cpu") -> BaseAlgorithm:
    if algo not in ALGO_CLASSES:
        raise ConfigError(f"unknown algo {algo!r}; choose one of: {', '.join(ALGO_CLASSES)}")
    check_action_space(algo, venv.action_space)
    policy = "CnnPolicy" if family == "atari" else "MlpPolicy"
    kwargs = HYPERPARAMS.get((family, algo), {})
    return ALGO_CLASSES[algo](policy, venv, seed=seed, device=device, verbose=0, **kwargs)


def default_n_envs(algo: str, family: str) -> int:
    if algo == "sac":
        return 1
    return DEFAULT_N_ENVS.get((family, algo), 2)
