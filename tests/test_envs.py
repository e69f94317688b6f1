"""Tests for prefrl.envs: the MuJoCo task variants of Christiano et al. 2017, App. A.1."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco renders

import importlib
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import prefrl.envs
from prefrl.envs import MUJOCO_TASKS, SimStateInfo, get_sim_state, set_sim_state

HORIZONS = {
    "prefrl/Hopper-v0": 1000,
    "prefrl/Walker2d-v0": 1000,
    "prefrl/Swimmer-v0": 1000,
    "prefrl/HalfCheetah-v0": 1000,
    "prefrl/Ant-v0": 1000,
    "prefrl/Reacher-v0": 50,
    "prefrl/InvertedPendulum-v0": 1000,
    "prefrl/InvertedDoublePendulum-v0": 1000,
}


def _set_qpos(index: int, value: float) -> Callable[[np.ndarray], np.ndarray]:
    def pose(state: np.ndarray) -> np.ndarray:
        state = state.copy()
        state[index] = value
        return state

    return pose


# A pose in which each task that can fall counts as fallen, and stays so for one step.
FALLEN_POSES = {
    "prefrl/Hopper-v0": _set_qpos(2, 1.0),  # torso pitched 1 rad (healthy: |angle| < 0.2)
    "prefrl/Walker2d-v0": _set_qpos(2, 1.5),  # healthy: |angle| < 1
    "prefrl/Ant-v0": _set_qpos(2, 1.5),  # torso 1.5 high (healthy: 0.2 <= z <= 1)
    "prefrl/InvertedPendulum-v0": _set_qpos(1, 0.5),  # pole leans 0.5 rad (upright: <= 0.2)
    "prefrl/InvertedDoublePendulum-v0": _set_qpos(1, 1.5),  # tip well below height 1
}
# Warnings inherent to gymnasium's MuJoCo envs and to checking a wrapped env; any other warning fails.
KNOWN_CHECKER_WARNINGS = pytest.mark.filterwarnings(
    "error",
    "ignore:.*is different from the unwrapped version",
    "ignore:.*Box observation space m..imum value is .?infinity",
    "ignore:.*symmetric and normalized",
)


def _name(env_id: str) -> str:
    return env_id.removeprefix("prefrl/").removesuffix("-v0")


def test_ids_registered_once() -> None:
    assert MUJOCO_TASKS == tuple(HORIZONS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # re-registering would warn "Overriding environment"
        importlib.reload(prefrl.envs)
    for env_id, horizon in HORIZONS.items():
        assert gym.spec(env_id).max_episode_steps == horizon


@KNOWN_CHECKER_WARNINGS
@pytest.mark.parametrize("env_id", MUJOCO_TASKS)
def test_gymnasium_and_sb3_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env, skip_render_check=True)  # also re-makes the env from env.spec
    sb3_check_env(gym.make(env_id))
    assert env.spec is not None and env.spec.to_json()  # a spec that can be stored with a run


@pytest.mark.parametrize("env_id", MUJOCO_TASKS)
def test_episode_lasts_exactly_the_horizon(env_id: str) -> None:
    env = gym.make(env_id)
    env.action_space.seed(0)
    assert env.spec is not None and env.spec.max_episode_steps == HORIZONS[env_id]
    assert env.metadata["render_fps"] == round(1 / env.unwrapped.dt)  # type: ignore[attr-defined]
    env.reset(seed=0)
    fallen, steps, truncated = [], 0, False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
        assert np.isfinite(obs).all() and np.isfinite(float(reward)) and np.isfinite(info["sim_state"]).all()
        fallen.append(info.get("fallen", False))
    assert steps == HORIZONS[env_id]
    if env_id in ("prefrl/Hopper-v0", "prefrl/InvertedPendulum-v0"):
        assert any(fallen), "random actions should make it fall, yet the episode must go on"
    if env_id not in FALLEN_POSES:
        assert "fallen" not in info


@pytest.mark.parametrize("env_id", MUJOCO_TASKS)
def test_reward_is_base_reward_without_control_costs_plus_fall_penalty(env_id: str) -> None:
    """Same trajectory as the gymnasium v5 env; reward = v5 reward − its control/contact costs − penalty."""
    fall_penalty = 2.5
    ours = gym.make(env_id, upright="penalty", fall_penalty=fall_penalty, reset_on_fall=False)
    base = gym.make(f"{_name(env_id)}-v5")
    obs, _ = ours.reset(seed=1)
    base_obs, _ = base.reset(seed=1)
    np.testing.assert_array_equal(obs, base_obs)
    assert isinstance(ours.action_space, gym.spaces.Box)
    rng, high = np.random.default_rng(0), ours.action_space.high
    removed_cost = 0.0
    for _ in range(200):
        action = high * rng.choice([-1.0, 1.0], size=high.shape)  # the costliest actions
        obs, reward, _, _, info = ours.step(action)
        base_obs, base_reward, base_terminated, _, base_info = base.step(action)
        costs = base_info.get("reward_ctrl", 0.0) + base_info.get("reward_contact", 0.0)
        removed_cost += costs
        np.testing.assert_allclose(obs, base_obs)
        assert info.get("reward_ctrl", 0.0) == 0.0 and info.get("reward_contact", 0.0) == 0.0
        assert info.get("fallen", False) == base_terminated  # fallen iff the v5 env would terminate
        expected = float(base_reward) - costs - fall_penalty * base_terminated
        assert float(reward) == pytest.approx(expected, abs=1e-9)
        if base_terminated:
            break
    if "reward_ctrl" in base_info:
        assert removed_cost < 0.0  # the check above was not vacuous


@pytest.mark.parametrize("env_id", FALLEN_POSES)
def test_fallen_pose_costs_fall_penalty(env_id: str) -> None:
    envs = {
        penalty: gym.make(env_id, upright="penalty", fall_penalty=penalty, reset_on_fall=False)
        for penalty in (0.0, 2.5)
    }
    rewards: dict[float, float] = {}
    for penalty, env in envs.items():
        _, info = env.reset(seed=0)
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
        assert info["fallen"] is False and info["reward_fall"] == 0.0  # upright after reset
        set_sim_state(env, FALLEN_POSES[env_id](info["sim_state"]))
        _, reward, terminated, _, info = env.step(np.zeros(env.action_space.shape))
        rewards[penalty] = float(reward)
        assert info["fallen"] is True and info["reward_fall"] == -penalty and not terminated
    assert rewards[0.0] - rewards[2.5] == pytest.approx(2.5)
    default = gym.make(env_id, upright="penalty")
    default.reset(seed=0)
    set_sim_state(default, FALLEN_POSES[env_id](get_sim_state(default)))
    assert default.step(np.zeros(default.action_space.shape))[4]["reward_fall"] == -1.0


PENDULUMS = ("prefrl/InvertedPendulum-v0", "prefrl/InvertedDoublePendulum-v0")


@pytest.mark.parametrize("env_id", PENDULUMS)
def test_a_fallen_pendulum_pays_the_penalty_once_and_starts_again_from_a_fresh_pose(env_id: str) -> None:
    env = gym.make(env_id)
    _, info = env.reset(seed=0)
    start = info["sim_state"]
    set_sim_state(env, FALLEN_POSES[env_id](start))
    obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape))
    assert info["fallen"] and info["fall_reset"] and info["reward_fall"] == -1.0
    assert not terminated and not truncated
    # The step hands back the fresh pose (v5's reset noise: at most 0.1 rad on the hinges) and its
    # observation, and the pendulum is upright on the next step.
    assert abs(info["sim_state"][1]) <= 0.1 and not np.array_equal(info["sim_state"], start)
    assert obs[0] == info["sim_state"][0]  # the observation is the fresh pose's: its cart position
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
    assert not info["fallen"] and "fall_reset" not in info
    # Left lying (reset_on_fall=False) the pendulum stays fallen, and pays every step.
    lying = gym.make(env_id, reset_on_fall=False)
    lying.reset(seed=0)
    set_sim_state(lying, FALLEN_POSES[env_id](start))
    for _ in range(3):
        info = lying.step(np.zeros(lying.action_space.shape))[4]
        assert info["fallen"] and "fall_reset" not in info


@pytest.mark.parametrize("env_id", PENDULUMS)
def test_a_random_pendulum_falls_many_times_in_one_full_length_episode(env_id: str) -> None:
    # What makes the pendulums learnable from preferences: every segment shows balancing and falling.
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    falls, steps, truncated = 0, 0, False
    while not truncated:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert not terminated
        falls += info.get("fall_reset", False)
        steps += 1
    assert steps == 1000 and falls > 50


# Torso height: (qpos index, fall height) of the walkers whose default upright term is the height.
TORSO_HEIGHTS = {"prefrl/Hopper-v0": (1, 0.7), "prefrl/Walker2d-v0": (1, 0.8), "prefrl/Ant-v0": (2, 0.2)}


@pytest.mark.parametrize("env_id", TORSO_HEIGHTS)
def test_walker_reward_is_speed_plus_torso_height(env_id: str) -> None:
    """Default walkers: v5 reward − control/contact costs − alive bonus + (torso height − fall height)."""
    ours, base = gym.make(env_id), gym.make(f"{_name(env_id)}-v5")
    ours.reset(seed=2)
    base.reset(seed=2)
    index, fall_height = TORSO_HEIGHTS[env_id]
    rng, high = np.random.default_rng(1), ours.action_space.high  # type: ignore[attr-defined]
    heights = []
    for _ in range(300):
        action = high * rng.uniform(-1.0, 1.0, size=high.shape)
        _, reward, terminated, _, info = ours.step(action)
        _, base_reward, base_terminated, _, base_info = base.step(action)
        height = float(ours.unwrapped.data.qpos[index])  # type: ignore[attr-defined]
        heights.append(height)
        assert not terminated and "reward_fall" not in info
        assert info["fallen"] == base_terminated  # reported, but no longer a cost of its own
        assert info["reward_height"] == pytest.approx(height - fall_height)
        costs = base_info.get("reward_ctrl", 0.0) + base_info.get("reward_contact", 0.0)
        expected = float(base_reward) - costs - base_info["reward_survive"] + height - fall_height
        assert float(reward) == pytest.approx(expected, abs=1e-9)
        if base_terminated:
            break
    assert len(heights) > 1


@pytest.mark.parametrize("env_id", ["prefrl/Hopper-v0", "prefrl/Walker2d-v0"])  # Ant's legs push it back up
def test_lying_walker_earns_less_than_standing_one(env_id: str) -> None:
    index, fall_height = TORSO_HEIGHTS[env_id]
    env = gym.make(env_id, height_weight=2.0)
    _, info = env.reset(seed=0)
    standing = info["sim_state"]
    rewards = {}
    for pose, height in (("standing", standing[index]), ("lying", fall_height - 0.1)):
        state = standing.copy()
        state[index] = height
        set_sim_state(env, state)
        _, reward, _, _, info = env.step(np.zeros(env.action_space.shape))
        rewards[pose] = (float(reward), info["reward_height"])
    assert rewards["lying"][1] < 0.0 < rewards["standing"][1]
    assert rewards["standing"][0] - rewards["lying"][0] > 2.0 * (standing[index] - fall_height)


def test_unknown_upright_term_is_refused() -> None:
    with pytest.raises(ValueError, match="upright"):
        gym.make("prefrl/Hopper-v0", upright="alive")


@pytest.mark.parametrize("env_id", MUJOCO_TASKS)
def test_sim_state_round_trips(env_id: str) -> None:
    env = gym.make(env_id)
    _, info = env.reset(seed=0)
    model = env.unwrapped.model  # type: ignore[attr-defined]
    assert info["sim_state"].dtype == np.float64 and info["sim_state"].shape == (model.nq + model.nv,)
    state = env.step(env.action_space.sample())[4]["sim_state"]
    np.testing.assert_array_equal(state, get_sim_state(env))
    kept = state.copy()
    env.step(env.action_space.sample())
    np.testing.assert_array_equal(state, kept)  # info arrays are not views of the simulator
    set_sim_state(env, state)
    np.testing.assert_array_equal(get_sim_state(env), state)
    with pytest.raises(ValueError, match="nq \\+ nv"):
        set_sim_state(env, state[:-1])


def test_sim_state_helpers_work_on_any_mujoco_env() -> None:
    env = SimStateInfo(gym.make("Hopper-v5"))
    _, info = env.reset(seed=0)
    np.testing.assert_array_equal(info["sim_state"], get_sim_state(env))
    with pytest.raises(TypeError, match="MuJoCo env"):
        SimStateInfo(gym.make("CartPole-v1"))


def _frame(env: gym.Env) -> np.ndarray:
    return np.asarray(env.render())


@pytest.fixture(scope="module")
def can_render() -> None:
    try:
        env = gym.make("Reacher-v5", render_mode="rgb_array", width=32, height=32)
        env.reset(seed=0)
        env.render()
    except Exception as error:  # any GL failure: a skip reason here, a failure under CI (.ci/run installs GL)
        if os.environ.get("CI"):
            raise
        pytest.skip(
            f"no headless OpenGL with MUJOCO_GL={os.environ['MUJOCO_GL']} ({error!r}); for egl install "
            "the apt packages libegl1 libopengl0 libgl1-mesa-dri (for osmesa: libosmesa6)"
        )


@pytest.mark.parametrize("env_id", MUJOCO_TASKS)
def test_render_after_set_sim_state_is_reproducible(env_id: str, can_render: None) -> None:
    env = gym.make(env_id, render_mode="rgb_array", width=64, height=64)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(5):
        state = env.step(env.action_space.sample())[4]["sim_state"]
    live = _frame(env)
    set_sim_state(env, state)
    first, second = _frame(env), _frame(env)
    for _ in range(5):
        env.step(env.action_space.sample())
    moved = _frame(env)
    set_sim_state(env, state)
    again = _frame(env)
    assert first.shape == (64, 64, 3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(moved, first)  # otherwise this test would prove nothing
    # Live frames lag one physics substep (MuJoCo computes positions before integrating): a few pixels.
    assert np.abs(live.astype(int) - first).mean() < 1.0
