"""MuJoCo task variants of Christiano et al. 2017, App. A.1, built on gymnasium's v5 MuJoCo envs.

The paper changes the standard tasks in two ways, so that a reward model fitted to preferences over clips has
to recover everything the agent is rewarded for:

* **Fixed-length episodes.** An episode's length would leak the true reward (a falling Hopper ends early), so
  every episode lasts exactly the task's horizon (gymnasium ``TimeLimit`` truncation) and ``terminated`` is
  always False. What termination stood for becomes a term of the reward that the agent must learn:
  - **Hopper, Walker2d, Ant** (``upright="height"``, the default): the alive bonus and the unhealthy
    condition give way to the torso's height above the height at which the v5 env would call it fallen,
    ``z − z_fall`` per step: negative on the ground, positive standing. This is the term of rl-teacher
    (the reference implementation of the paper), up to a constant that a fixed horizon makes irrelevant, and
    it is what a person sees (App. B tells labelers to tiebreak on height). ``upright="penalty"`` keeps the
    v5 alive bonus and subtracts ``fall_penalty`` per unhealthy step instead; that condition includes a
    torso pitch beyond ±0.2 rad (Hopper), a step function of the pose that a reward model fitted to
    preferences extrapolates poorly: in our Hopper benchmark the agent learned to slide forward lying down.
  - **Pendulums:** each step on which the v5 env would terminate (the pole visibly fallen) costs
    ``fall_penalty``, and the pendulum is put back in a fresh starting pose (``reset_on_fall``, as the
    paper's Atari envs still reset without telling the agent, App. A.2), so the episode goes on at its full
    length. Left lying instead (``reset_on_fall=False``), a fallen pole is a state nothing leaves: it rests on
    the hinge's limit, every later step is the same ``-fall_penalty``, and all but the first of an episode's
    segments look alike. Measured on InvertedPendulum (700 oracle labels, seed 0, PPO 1M steps): 682 of
    697 answers were "equal", and the reward fitted on them paid a toppling agent +13 per episode and one
    that balances for the whole episode −103, so the agent learned to topple (−996 against 1,000).
* **No torque costs.** People cannot see torques, so control costs (and Ant's contact cost) are left out of
  the true reward.

Every ``info`` (from ``reset`` and ``step``) carries ``info["sim_state"]``, the concatenation of ``qpos`` and
``qvel``, so that a segment can be re-rendered later with :func:`set_sim_state`.

Usage::

    import gymnasium as gym
    import prefrl.envs  # registers the ids in MUJOCO_TASKS

    env = gym.make("prefrl/Hopper-v0", render_mode="rgb_array")
    env = gym.make("prefrl/Hopper-v0", upright="penalty", fall_penalty=1.0)  # the step-function variant
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, SupportsFloat

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
from gymnasium.envs.mujoco.inverted_double_pendulum_v5 import InvertedDoublePendulumEnv
from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.mujoco.reacher_v5 import ReacherEnv
from gymnasium.envs.mujoco.swimmer_v5 import SwimmerEnv
from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
from gymnasium.utils import RecordConstructorArgs

from .namespace import NAMESPACE

FALL_PENALTY = 1.0
"""Default reward subtracted per step while fallen/unhealthy (the paper gives no value; 1.0 mirrors the
healthy bonus of Hopper, Walker2d and Ant)."""


# --- simulator state ---------------------------------------------------------------------------------------


def _model_and_data(env: gym.Env[Any, Any]) -> tuple[mujoco.MjModel, mujoco.MjData]:
    base = env.unwrapped
    model, data = getattr(base, "model", None), getattr(base, "data", None)
    if not isinstance(model, mujoco.MjModel) or not isinstance(data, mujoco.MjData):
        raise TypeError(
            f"expected a MuJoCo env (env.unwrapped with .model: MjModel and .data: MjData); "
            f"got {type(base).__name__}"
        )
    return model, data


def get_sim_state(env: gym.Env[Any, Any]) -> np.ndarray:
    """Returns the simulator state of any gymnasium MuJoCo env.

    Returns:
        A new float64 array, shape ``(nq + nv,)``: ``data.qpos`` then ``data.qvel``. This is enough to
        re-render a frame of these tasks (none has actuator activations; Reacher's target is in ``qpos``).
        A frame rendered after :func:`set_sim_state` shows exactly this state, whereas the env's own frame
        right after a step lags one physics substep (MuJoCo computes positions before integrating), off by
        a few pixels: render a clip's frames from saved states throughout, not a mix of both.
    """
    _, data = _model_and_data(env)
    return np.concatenate([data.qpos, data.qvel]).astype(np.float64)


def set_sim_state(env: gym.Env[Any, Any], state: np.ndarray) -> None:
    """Sets ``qpos`` and ``qvel`` of any gymnasium MuJoCo env and recomputes its derived quantities.

    Args:
        env: The env (wrapped or not); its ``unwrapped`` simulator is changed in place.
        state: Shape ``(nq + nv,)``, as returned by :func:`get_sim_state` or found in ``info["sim_state"]``.

    Meant for rendering: stepping on from a restored state need not repeat the original trajectory to the
    last bit (the solver's warm start is not part of the state).
    """
    model, data = _model_and_data(env)
    state = np.asarray(state, dtype=np.float64)
    if state.shape != (model.nq + model.nv,):
        raise ValueError(
            f"sim_state must have shape (nq + nv,) = ({model.nq + model.nv},) for this env; "
            f"got {state.shape}. Was it recorded in a different task?"
        )
    data.qpos[:] = state[: model.nq]
    data.qvel[:] = state[model.nq :]
    mujoco.mj_forward(model, data)


class SimStateInfo(gym.Wrapper[Any, Any, Any, Any], RecordConstructorArgs):
    """Adds ``info["sim_state"]`` (see :func:`get_sim_state`) to the info of ``reset`` and ``step``.

    The state is read after the step, so a stored segment can be re-rendered frame by frame (App. B clips).
    Works on any gymnasium MuJoCo env.
    """

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        _model_and_data(env)  # fail at construction, not at the first step

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "sim_state": get_sim_state(self.env)}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "sim_state": get_sim_state(self.env)}


# --- termination replaced by a penalty ---------------------------------------------------------------------


def _unhealthy(env: Any) -> bool:
    """Hopper/Walker2d/Ant-v5: the condition under which they would terminate."""
    return not env.is_healthy


def _pendulum_fallen(env: Any) -> bool:
    """InvertedPendulum-v5: terminates when the state is not finite or the pole leans more than 0.2 rad."""
    return bool(not np.isfinite(env.state_vector()).all() or abs(env.data.qpos[1]) > 0.2)


def _double_pendulum_fallen(env: Any) -> bool:
    """InvertedDoublePendulum-v5: terminates when the tip's height is at most 1."""
    return bool(env.data.site_xpos[0][2] <= 1)


FALL_CONDITIONS: dict[str, Callable[[Any], bool]] = {
    "unhealthy": _unhealthy,
    "pendulum_fallen": _pendulum_fallen,
    "double_pendulum_fallen": _double_pendulum_fallen,
}
"""Each computes, on the unwrapped env after a step, the condition under which the v5 env terminates."""


class FallPenalty(gym.Wrapper[Any, Any, Any, Any], RecordConstructorArgs):
    """Replaces termination by a per-step penalty the agent must learn (Christiano et al. 2017, App. A.1).

    The episode never terminates: while the condition ``FALL_CONDITIONS[fallen]`` holds after a step, the
    simulation goes on and the step's reward is lowered by ``fall_penalty``. The base envs already drop their
    alive bonus when fallen, so a fallen step earns ``-fall_penalty`` plus the task's other terms (e.g.
    Hopper's forward velocity, the double pendulum's distance penalty). ``info["fallen"]`` and
    ``info["reward_fall"]`` (0 or ``-fall_penalty``) report it.

    With ``reset_on_fall`` a fallen step also puts the simulation back in a fresh starting pose (the base
    env's own ``reset_model``, drawn from its seeded generator): the step returns the new pose's observation
    and ``info["fall_reset"]`` is True, the episode goes on. The agent is not told, as with the paper's Atari
    envs; the penalty is what it has to learn from.

    Args:
        env: A gymnasium MuJoCo env.
        fallen: A key of :data:`FALL_CONDITIONS` (a name, not a function, so ``env.spec`` stays JSON-able).
        fall_penalty: Reward subtracted per fallen step.
        reset_on_fall: Start again from a fresh pose after a fallen step, instead of simulating on.
    """

    def __init__(
        self,
        env: gym.Env[Any, Any],
        fallen: str,
        *,
        fall_penalty: float = FALL_PENALTY,
        reset_on_fall: bool = False,
    ) -> None:
        if fallen not in FALL_CONDITIONS:
            raise ValueError(f"unknown fall condition {fallen!r}; choose one of {sorted(FALL_CONDITIONS)}")
        RecordConstructorArgs.__init__(
            self, fallen=fallen, fall_penalty=fall_penalty, reset_on_fall=reset_on_fall
        )
        gym.Wrapper.__init__(self, env)
        self.is_fallen = FALL_CONDITIONS[fallen]
        self.fall_penalty = float(fall_penalty)
        self.reset_on_fall = bool(reset_on_fall)
        self._model, self._data = _model_and_data(env)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        # The base env's `terminated` is dropped: it is either always False (terminate_when_unhealthy=False)
        # or the same condition as `fallen` (pendulums), which the penalty now stands for.
        obs, reward, _, truncated, info = self.env.step(action)
        fallen = bool(self.is_fallen(self.env.unwrapped))
        reward_fall = -self.fall_penalty if fallen else 0.0
        info = {**info, "fallen": fallen, "reward_fall": reward_fall}
        if fallen and self.reset_on_fall:
            mujoco.mj_resetData(self._model, self._data)  # as MujocoEnv.reset does before reset_model
            obs = self.env.unwrapped.reset_model()  # type: ignore[attr-defined]
            info["fall_reset"] = True
        return obs, float(reward) + reward_fall, False, truncated, info


class HeightReward(gym.Wrapper[Any, Any, Any, Any], RecordConstructorArgs):
    """Rewards the torso's height above the fall height, ``weight · (z − fall_height)`` per step.

    Stands in for the alive bonus and for termination in walking tasks whose base env was built with
    ``healthy_reward=0`` (see the module docstring). ``info["reward_height"]`` reports the term, and
    ``info["fallen"]`` whether the v5 env would have terminated (a diagnostic: it costs nothing here).

    Args:
        env: A gymnasium v5 Hopper, Walker2d or Ant env.
        qpos_index: Index of the torso height in ``data.qpos`` (Hopper, Walker2d: 1; Ant: 2).
        fall_height: The lower bound of the v5 env's ``healthy_z_range``.
        weight: Reward per unit of height per step.
    """

    def __init__(
        self, env: gym.Env[Any, Any], qpos_index: int, fall_height: float, *, weight: float = 1.0
    ) -> None:
        RecordConstructorArgs.__init__(self, qpos_index=qpos_index, fall_height=fall_height, weight=weight)
        gym.Wrapper.__init__(self, env)
        _, self._data = _model_and_data(env)
        self.qpos_index, self.fall_height, self.weight = qpos_index, float(fall_height), float(weight)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, _, truncated, info = self.env.step(action)
        reward_height = self.weight * (float(self._data.qpos[self.qpos_index]) - self.fall_height)
        info = {**info, "fallen": _unhealthy(self.env.unwrapped), "reward_height": reward_height}
        return obs, float(reward) + reward_height, False, truncated, info


UPRIGHT_TERMS = ("height", "penalty")
"""What stands for termination in Hopper, Walker2d and Ant: torso height, or the v5 fall penalty."""


# --- the variants ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MujocoTask:
    """One task of App. A.1: a gymnasium v5 env class, its horizon, cost-free kwargs and fall condition."""

    name: str
    env_class: type[MujocoEnv]
    horizon: int
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    fallen: str | None = None  # a key of FALL_CONDITIONS
    torso_height: tuple[int, float] | None = None  # (qpos index, fall height): the `upright="height"` term
    reset_on_fall: bool = False  # the default of make_task's `reset_on_fall` (FallPenalty)

    @property
    def id(self) -> str:
        return f"{NAMESPACE}/{self.name}-v0"


_NO_CTRL_COST = {"ctrl_cost_weight": 0.0}
_NO_TERMINATION = {"terminate_when_unhealthy": False}
_WALKER = {**_NO_CTRL_COST, **_NO_TERMINATION}
TASKS: dict[str, MujocoTask] = {
    task.name: task
    for task in (
        # Fall heights: the lower bounds of the v5 envs' healthy_z_range.
        MujocoTask("Hopper", HopperEnv, 1000, _WALKER, "unhealthy", (1, 0.7)),
        MujocoTask("Walker2d", Walker2dEnv, 1000, _WALKER, "unhealthy", (1, 0.8)),
        MujocoTask("Swimmer", SwimmerEnv, 1000, _NO_CTRL_COST),
        MujocoTask("HalfCheetah", HalfCheetahEnv, 1000, _NO_CTRL_COST),
        MujocoTask(
            "Ant",
            AntEnv,
            1000,
            {**_NO_CTRL_COST, "contact_cost_weight": 0.0, **_NO_TERMINATION},
            "unhealthy",
            (2, 0.2),
        ),
        MujocoTask("Reacher", ReacherEnv, 50, {"reward_control_weight": 0.0}),
        # The pendulums have no control cost and no kwarg to stop termination: FallPenalty drops it.
        MujocoTask(
            "InvertedPendulum", InvertedPendulumEnv, 1000, fallen="pendulum_fallen", reset_on_fall=True
        ),
        MujocoTask(
            "InvertedDoublePendulum",
            InvertedDoublePendulumEnv,
            1000,
            fallen="double_pendulum_fallen",
            reset_on_fall=True,
        ),
    )
}
MUJOCO_TASKS: tuple[str, ...] = tuple(task.id for task in TASKS.values())


def make_task(
    task: str,
    *,
    upright: str = "height",
    fall_penalty: float = FALL_PENALTY,
    height_weight: float = 1.0,
    reset_on_fall: bool | None = None,
    **kwargs: Any,
) -> gym.Env[Any, Any]:
    """Builds one App. A.1 variant (Christiano et al. 2017); the registered ids' entry point.

    Use ``gym.make("prefrl/<task>-v0", ...)`` rather than calling this directly: ``gym.make`` adds the
    ``TimeLimit`` that fixes the episode length to the task's horizon.

    Args:
        task: A key of :data:`TASKS`, e.g. ``"Hopper"``.
        upright: For Hopper, Walker2d and Ant, what replaces termination: ``"height"`` (torso height above
            the fall height, :class:`HeightReward`) or ``"penalty"`` (the v5 alive bonus, minus
            ``fall_penalty`` per unhealthy step, :class:`FallPenalty`). Ignored by the other tasks.
        fall_penalty: Reward subtracted per fallen step (pendulums; walkers with ``upright="penalty"``).
        height_weight: Reward per unit of torso height per step (walkers with ``upright="height"``).
        reset_on_fall: After a fallen step, start again from a fresh pose within the episode
            (:class:`FallPenalty`); default: the task's (True for the pendulums, False otherwise).
        **kwargs: Passed to the gymnasium v5 env (e.g. ``render_mode``, ``width``, ``height``); they override
            the variant's defaults.
    """
    if task not in TASKS:
        raise ValueError(f"unknown MuJoCo task {task!r}; choose one of {sorted(TASKS)}")
    if upright not in UPRIGHT_TERMS:
        raise ValueError(f"unknown upright term {upright!r}; choose one of {list(UPRIGHT_TERMS)}")
    spec = TASKS[task]
    if spec.torso_height is not None and upright == "height":
        base = spec.env_class(**{**spec.kwargs, "healthy_reward": 0.0, **kwargs})
        qpos_index, fall_height = spec.torso_height
        return SimStateInfo(HeightReward(base, qpos_index, fall_height, weight=height_weight))
    env: gym.Env[Any, Any] = spec.env_class(**{**spec.kwargs, **kwargs})
    if spec.fallen is not None:
        reset = spec.reset_on_fall if reset_on_fall is None else reset_on_fall
        env = FallPenalty(env, spec.fallen, fall_penalty=fall_penalty, reset_on_fall=reset)
    return SimStateInfo(env)


def register_mujoco_tasks() -> None:
    """Registers every id of :data:`MUJOCO_TASKS` with gymnasium; calling it again does nothing."""
    for task in TASKS.values():
        if task.id not in gym.registry:
            gym.register(
                id=task.id,
                entry_point=f"{__name__}:make_task",
                max_episode_steps=task.horizon,
                kwargs={"task": task.name},
            )
