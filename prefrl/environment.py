"""Building the vectorised env the agent trains on, and telling env families apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import prefrl.envs  # noqa: F401  (registers the prefrl/... task ids)
from prefrl.config import ConfigError

EnvFamily = Literal["mujoco", "atari", "other"]


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The env's spec, or a ConfigError that says how to find valid ids."""
    try:
        return gym.spec(env_id)
    except gym.error.Error as err:
        ours = sorted(k for k in gym.registry if k.startswith("prefrl/"))
        raise ConfigError(
            f"unknown env id {env_id!r} ({err}); use a registered gymnasium id such as "
            f"{', '.join(ours[:4]) or 'Hopper-v5'} (`prefrl envs` lists prefrl's tasks)"
        ) from None


def env_family(env: gym.Env) -> EnvFamily:
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "ale"):
        return "atari"
    if hasattr(unwrapped, "data") and hasattr(unwrapped, "model") and hasattr(unwrapped.data, "qpos"):
        return "mujoco"
    return "other"


def env_dt(env: gym.Env) -> float | None:
    """Seconds of env time per step, where the env says (MuJoCo's ``dt``, else 1 / render_fps)."""
    dt = getattr(env.unwrapped, "dt", None)
    if dt:
        return float(dt)
    fps = env.metadata.get("render_fps")
    return 1.0 / fps if fps else None


def _with_sim_state(env: gym.Env) -> gym.Env:
    """Add ``info["sim_state"]`` to MuJoCo envs that do not already report it (for re-rendering clips)."""
    from prefrl.envs import SimStateInfo

    if env_family(env) != "mujoco":
        return env
    inner: gym.Env = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, SimStateInfo):
            return env
        inner = inner.env
    return SimStateInfo(env)


def make_env_fn(
    env_id: str,
    seed: int,
    rank: int,
    *,
    render_mode: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Callable[[], gym.Env]:
    def _make() -> gym.Env:
        kwargs = {**(env_kwargs or {}), **({"render_mode": render_mode} if render_mode else {})}
        env = gym.make(env_id, **kwargs)
        env = _with_sim_state(env)
        env = Monitor(env)  # its info["episode"] carries the env's own (true) return
        env.reset(seed=seed + rank)
        env.action_space.seed(seed + rank)
        return env

    return _make


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None, **extra: Any) -> gym.Env:
    """``gym.make(env_id, **env_kwargs, **extra)``, with a ConfigError for an unknown id or a bad setting."""
    check_env_id(env_id)
    try:
        return gym.make(env_id, **{**(env_kwargs or {}), **extra})
    except (TypeError, ValueError) as err:
        if not env_kwargs:
            raise
        settings = " ".join(f"{k}={v!r}" for k, v in env_kwargs.items())
        raise ConfigError(f"{env_id} does not accept --env-kwargs {settings}: {err}") from None


def make_vec_env(env_id: str, n_envs: int, seed: int, env_kwargs: dict[str, Any] | None = None) -> VecEnv:
    """``n_envs`` copies in one process (on 2 cores DummyVecEnv beats SubprocVecEnv for MuJoCo)."""
    make_env(env_id, env_kwargs).close()  # a clear error for a bad id or setting, before building them all
    venv = DummyVecEnv([make_env_fn(env_id, seed, i, env_kwargs=env_kwargs) for i in range(n_envs)])
    venv.seed(seed)
    return venv


def random_actions(venv: VecEnv, rng: np.random.Generator) -> np.ndarray:
    """One random action per env, drawn with ``rng`` (for the random-policy labels, App. A)."""
    space = venv.action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), venv.num_envs)
    if isinstance(space, gym.spaces.Box):
        return rng.uniform(space.low, space.high, (venv.num_envs, *space.shape)).astype(space.dtype)
    return np.stack([space.sample() for _ in range(venv.num_envs)])
