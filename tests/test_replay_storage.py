import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer

from prefrl.replay_storage import load_replay_buffer, save_replay_buffer

OBS64 = gym.spaces.Box(-np.inf, np.inf, (11,), np.float64)  # Hopper's observation space
OBS32 = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def played_buffer(size, steps, *, obs_space=OBS32, act_space=ACT, n_envs=2, seed=0, **kwargs):
    """A buffer filled as SB3's off-policy loop fills it: ``n_envs`` random walks whose episodes end at
    random (terminated, or truncated by a time limit), the terminal observation stored as the next one."""
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(size, obs_space, act_space, n_envs=n_envs, **kwargs)
    obs_shape = obs_space.shape or ()
    obs = rng.normal(size=(n_envs, *obs_shape))
    for _ in range(steps):
        acts = np.stack([act_space.sample() for _ in range(n_envs)])
        next_obs = obs + rng.normal(scale=0.1, size=obs.shape)
        ended, truncated = rng.random(n_envs) < 0.05, rng.random(n_envs) < 0.5
        infos = [{"TimeLimit.truncated": bool(e and t)} for e, t in zip(ended, truncated)]
        buffer.add(obs, next_obs, acts, rng.normal(size=n_envs), ended, infos)
        obs = np.where(ended[:, None], rng.normal(size=obs.shape), next_obs)  # reset after an episode end
    return buffer


def round_trip(buffer, path, **kwargs):
    save_replay_buffer(buffer, path, **kwargs)
    copy = ReplayBuffer(
        buffer.buffer_size * buffer.n_envs,
        buffer.observation_space,
        buffer.action_space,
        n_envs=buffer.n_envs,
        optimize_memory_usage=buffer.optimize_memory_usage,
        handle_timeout_termination=buffer.handle_timeout_termination,
    )
    extra = load_replay_buffer(copy, path)
    return copy, extra


@pytest.mark.parametrize("steps", [0, 1, 300, 500, 1_234], ids=lambda s: f"{s}steps")
def test_a_buffer_loads_back_exactly_empty_partly_filled_full_and_wrapped(tmp_path, steps):
    buffer = played_buffer(1_000, steps)  # 500 rows of 2 envs
    copy, extra = round_trip(buffer, tmp_path / "buffer.npz")
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(copy, name), getattr(buffer, name), err_msg=name)
    assert (copy.pos, copy.full, extra) == (buffer.pos, buffer.full, {})


def test_float64_observations_come_back_as_the_float32_values_the_networks_read(tmp_path):
    buffer = played_buffer(2_000, 700, obs_space=OBS64)
    copy, _ = round_trip(buffer, tmp_path / "buffer.npz")
    for name in ("observations", "next_observations"):
        expected = getattr(buffer, name).astype(np.float32)
        np.testing.assert_array_equal(getattr(copy, name), expected)
        assert getattr(copy, name).dtype == np.float64  # the buffer keeps its dtype
    exact, _ = round_trip(buffer, tmp_path / "exact.npz", obs_dtype=None)
    np.testing.assert_array_equal(exact.next_observations, buffer.next_observations)


def test_the_memory_optimised_buffer_keeps_the_newest_next_observation(tmp_path):
    for steps in (300, 1_234):
        buffer = played_buffer(1_000, steps, optimize_memory_usage=True, handle_timeout_termination=False)
        copy, _ = round_trip(buffer, tmp_path / "buffer.npz")
        for name in ("observations", "actions", "rewards", "dones"):
            np.testing.assert_array_equal(getattr(copy, name), getattr(buffer, name), err_msg=name)
        np.random.seed(0)
        before = buffer.sample(64)
        np.random.seed(0)
        after = copy.sample(64)
        np.testing.assert_array_equal(after.next_observations.numpy(), before.next_observations.numpy())


def test_discrete_actions_and_extra_arrays_round_trip(tmp_path):
    buffer = played_buffer(600, 250, act_space=gym.spaces.Discrete(5), n_envs=3)
    moments = {"bonus_moments": np.array([12.0, 0.5, 3.25]), "intrinsic": np.array(False)}
    save_replay_buffer(buffer, tmp_path / "buffer.npz", extra=moments)
    copy = ReplayBuffer(600, buffer.observation_space, buffer.action_space, n_envs=3)
    extra = load_replay_buffer(copy, tmp_path / "buffer.npz")
    np.testing.assert_array_equal(copy.actions, buffer.actions)
    np.testing.assert_array_equal(extra["bonus_moments"], moments["bonus_moments"])
    assert not extra["intrinsic"]


def test_a_hundred_thousand_hopper_transitions_take_a_third_of_the_stored_size(tmp_path):
    buffer = played_buffer(100_000, 100_000, obs_space=OBS64, n_envs=1)
    size = save_replay_buffer(buffer, tmp_path / "buffer.npz")
    as_stored = sum(getattr(buffer, name).nbytes for name in FIELDS)  # 100k x (2 x 11 x 8 + 3 x 4 + 3 x 4)
    assert size < as_stored / 3, (size, as_stored)  # float32 once, next observations at episode ends only
    assert size < 100_000 * (11 * 4 * 1.1 + 3 * 4 + 4 + 2) + 10_000


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "buffer.npz"
    save_replay_buffer(played_buffer(1_000, 100), path)
    before = path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process died in the middle of writing

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        save_replay_buffer(played_buffer(1_000, 400), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.npz"]  # no temporary file left behind


def test_a_buffer_of_another_shape_is_refused_with_advice(tmp_path):
    save_replay_buffer(played_buffer(1_000, 100), tmp_path / "buffer.npz")
    with pytest.raises(ValueError, match="build the agent with the settings"):
        load_replay_buffer(ReplayBuffer(2_000, OBS32, ACT, n_envs=2), tmp_path / "buffer.npz")


@pytest.mark.parametrize("algo", [SAC, TD3])
def test_an_agent_goes_on_with_the_buffer_it_saved(tmp_path, algo):
    env = gym.make("Pendulum-v1")
    agent = algo("MlpPolicy", env, learning_starts=50, buffer_size=1_000, seed=0)
    agent.learn(300)
    save_replay_buffer(agent.replay_buffer, tmp_path / "buffer.npz", obs_dtype=None)
    resumed = algo("MlpPolicy", env, learning_starts=50, buffer_size=1_000, seed=1)
    load_replay_buffer(resumed.replay_buffer, tmp_path / "buffer.npz")
    for name in FIELDS:
        np.testing.assert_array_equal(
            getattr(resumed.replay_buffer, name), getattr(agent.replay_buffer, name)
        )
    resumed.learn(100, reset_num_timesteps=False)  # trains on the loaded transitions and adds to them
    assert resumed.replay_buffer.pos == 400


def test_a_file_from_before_the_compact_format_still_loads(tmp_path):
    buffer = played_buffer(1_000, 300)
    with open(tmp_path / "old.npz", "wb") as f:  # the earlier writer: filled rows as stored, pos and full
        fields = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
        np.savez(f, **{name: getattr(buffer, name)[:300] for name in fields}, pos=300, full=False)
    copy = ReplayBuffer(1_000, buffer.observation_space, buffer.action_space, n_envs=buffer.n_envs)
    assert load_replay_buffer(copy, tmp_path / "old.npz") == {}
    np.testing.assert_array_equal(copy.next_observations, buffer.next_observations)
    assert (copy.pos, copy.full) == (300, False)
