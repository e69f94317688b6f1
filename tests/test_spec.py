import dataclasses
import json
import os

import pytest

import tests.toy_envs  # noqa: F401  (registers prefrl-test/LinearReward-v0)
from prefrl.config import QPA_POLICY_ALIGNED_STEPS, RETIRED_AT, ConfigError, TrainConfig
from prefrl.environment import make_vec_env
from prefrl.observations import observation_kind
from prefrl.spec import DEFAULTS, check_run_dir, resolve

PONG = "prefrl/PongNoScore-v0"
TOY = "prefrl-test/LinearReward-v0"


def test_atari_runs_take_the_papers_defaults(tmp_path):
    spec = resolve(TrainConfig(env=PONG, algo="a2c", labels=3300, run_dir=tmp_path / "run"))
    assert (spec.family, spec.observations) == ("atari", "frame-stack")
    assert spec.segment_length == 25 and spec.n_envs == 16
    assert spec.initial_labels == 500 and spec.rate_constant == 5e6
    assert spec.pretrain_epochs == 200 and spec.max_labels_kept == 3000 and spec.output_std == 0.05
    assert spec.dropout == 0.5 and spec.reward_pairs_per_step == 0.1  # "1 label per 10 RL timesteps"
    assert spec.fit_threads == max(1, (os.cpu_count() or 1) - 1)  # the cores the agent leaves free
    sync = resolve(TrainConfig(env=PONG, algo="a2c", reward_updates="sync", run_dir=tmp_path / "run"))
    assert sync.fit_threads == (os.cpu_count() or 1)  # the agent waits: every core fits
    assert not spec.normalize_observations and spec.agent_hyperparams["n_steps"] == 5
    assert spec.reward_inputs == "observations"  # the CNN sees frames only (App. A.2)
    assert not (tmp_path / "run").exists()  # resolving writes nothing


def test_a_value_the_user_sets_is_never_replaced(tmp_path):
    """Even where it equals another family's default (Atari once took 50 epochs and dropout 0 for unset)."""
    custom = TrainConfig(
        env=PONG,
        algo="ppo",
        pretrain_epochs=50,
        dropout=0.0,
        max_labels_kept=100,
        segment_length=30,
        reward_pairs_per_step=0,
        n_envs=3,
        run_dir=tmp_path / "other",
    )
    spec = resolve(custom)
    assert (spec.pretrain_epochs, spec.dropout, spec.max_labels_kept, spec.segment_length) == (
        50,
        0.0,
        100,
        30,
    )
    assert (spec.reward_pairs_per_step, spec.n_envs) == (0, 3)


def test_agent_kwargs_replace_the_family_defaults_and_reach_the_agent(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv
    from torch import nn

    from prefrl.algos import make_agent
    from prefrl.environment import make_env

    zoo = [  # RL Zoo's Hopper-v3 PPO settings, in part
        "gamma=0.999",
        "n_steps=512",
        'policy_kwargs={"log_std_init": -2, "ortho_init": false, "activation_fn": "relu", '
        '"net_arch": {"pi": [256, 256], "vf": [256, 256]}}',
    ]
    spec = resolve(TrainConfig(env="prefrl/Hopper-v0", agent_kwargs=zoo, run_dir=tmp_path / "run"))
    assert spec.agent_hyperparams["gamma"] == 0.999 and spec.agent_hyperparams["n_steps"] == 512
    assert spec.agent_hyperparams["batch_size"] == 64  # a default the user left alone
    agent = make_agent(spec, DummyVecEnv([lambda: make_env(spec.env, spec.env_kwargs)]))
    assert (agent.gamma, agent.n_steps) == (0.999, 512)
    assert agent.policy.activation_fn is nn.ReLU and agent.policy.log_std.detach().mean().item() == -2
    assert json.dumps(spec.summary())  # spec.json stays JSON
    other = resolve(  # policy_kwargs merge key by key with the family's
        TrainConfig(
            env="Pendulum-v1",
            algo="sac",
            agent_kwargs=['policy_kwargs={"activation_fn": "relu"}'],
            run_dir="r",
        )
    )
    merged = other.agent_hyperparams["policy_kwargs"]
    assert merged["net_arch"] == [64, 64] and merged["activation_fn"] == "relu"  # the family's and the user's


def test_vector_rewards_see_observations_and_actions_unless_told_otherwise(tmp_path):
    spec = resolve(TrainConfig(env=TOY, run_dir=tmp_path / "run"))
    assert spec.reward_inputs == "observations-actions"  # r̂(o, a), App. A.1
    spec = resolve(TrainConfig(env=TOY, reward_inputs="observations", run_dir=tmp_path / "run"))
    assert spec.reward_inputs == "observations"
    venv = make_vec_env(spec.env, 1, 0)
    ensemble = observation_kind(spec).ensemble(venv)  # what the trainer builds for the run
    venv.close()
    assert all(member.act_dim == 0 for member in ensemble.members)


def test_mujoco_defaults_and_clips_people_can_judge(tmp_path):
    spec = resolve(TrainConfig(env="prefrl/Hopper-v0", labels=700, run_dir=tmp_path / "run"))
    assert (spec.family, spec.observations, spec.algo) == ("mujoco", "vector", "ppo")
    assert spec.segment_length == 60 and spec.initial_labels == 175  # 1.5 s clamped to 60 steps; 25 %
    assert spec.normalize_observations and spec.fit_threads == 1 and spec.reward_updates == "async"
    human = resolve(TrainConfig(env="prefrl/Hopper-v0", teacher="human", run_dir=tmp_path / "run"))
    assert human.segment_length * 0.008 == pytest.approx(1.5, abs=0.01)  # dt = 0.008 s: a 1.5 s clip
    sac = resolve(TrainConfig(env="prefrl/Hopper-v0", algo="sac", run_dir=tmp_path / "run"))
    assert sac.n_envs == 1 and not sac.normalize_observations and sac.off_policy


def test_every_family_sets_up_the_agents_it_names():
    for family, table in DEFAULTS.items():
        assert {"ppo", "a2c", "trpo"} <= set(table.agents), family


def test_format_1_configs_read_their_family_defaults_as_unset(tmp_path):
    """Runs saved before defaults moved to the spec: 50 epochs and dropout 0 meant "the family's"."""
    old = TrainConfig(env=PONG, algo="a2c", run_dir=tmp_path / "run").to_json()
    old.pop("format")
    old.pop("reward_updates")
    old.update(pretrain_epochs=50, dropout=0.0)
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = TrainConfig.load(tmp_path / "config.json")
    assert (config.pretrain_epochs, config.dropout, config.reward_updates) == (None, None, "sync")
    spec = resolve(config)
    assert (spec.pretrain_epochs, spec.dropout) == (200, 0.5)


def test_qpa_is_off_unless_asked_for_and_then_brings_hybrid_replay_to_off_policy_agents(tmp_path):
    def spec(**settings):
        return resolve(TrainConfig(env=TOY, run_dir=tmp_path / "run", segment_length=20, **settings))

    pebble = spec(algo="sac")  # PEBBLE alone, the default since format 4
    assert (pebble.policy_aligned_steps, pebble.hybrid_replay_share) == (0, 0.0)
    assert spec(algo="td3").policy_aligned_steps == 0
    qpa = spec(algo="sac", policy_aligned_steps=QPA_POLICY_ALIGNED_STEPS)
    assert (qpa.policy_aligned_steps, qpa.hybrid_replay_share) == (QPA_POLICY_ALIGNED_STEPS, 0.5)
    assert spec(algo="sac", policy_aligned_steps=400, hybrid_replay_share=0.25).hybrid_replay_share == 0.25
    assert spec(algo="sac", teacher="true-reward").policy_aligned_steps == 0  # no queries to align
    assert spec(algo="ppo").policy_aligned_steps == 0
    assert spec(algo="ppo", policy_aligned_steps=400).policy_aligned_steps == 400
    with pytest.raises(ConfigError, match="--hybrid-replay-share is QPA's replay"):
        spec(algo="sac", policy_aligned_steps=0, hybrid_replay_share=0.3)
    with pytest.raises(ConfigError, match="--policy-aligned-steps must be >= 0"):
        spec(algo="sac", policy_aligned_steps=-1)


def test_runs_resume_with_the_qpa_window_they_took_whatever_the_default_was_when_saved(tmp_path):
    """An unset window meant no QPA up to format 2, QPA's window for off-policy agents learning a reward in
    format 3; since format 4 the window is always written out. A run resumes with what it did."""
    saved = TrainConfig(env=TOY, algo="sac", run_dir=tmp_path / "run").to_json()
    saved["policy_aligned_steps"] = None

    def resumed(**changes):
        (tmp_path / "config.json").write_text(json.dumps({**saved, **changes}))
        return resolve(TrainConfig.load(tmp_path / "config.json")).policy_aligned_steps

    assert resumed(format=2) == 0
    assert resumed(format=3) == QPA_POLICY_ALIGNED_STEPS
    assert resumed(format=3, teacher="true-reward") == 0  # asked no labels: QPA was never its default
    assert resumed(format=3, algo="ppo") == 0
    now = TrainConfig(env=TOY, algo="sac", run_dir=tmp_path / "run").to_json()
    assert (now["format"], now["policy_aligned_steps"]) == (4, 0)


def test_runs_saved_with_retired_settings_off_still_load_and_those_that_used_them_say_where_to_go(tmp_path):
    """SURF's settings are gone (they did not pay): saved at their off values they are dropped on load; a
    run that used them is refused with the commit that still has them, not a traceback."""
    saved = TrainConfig(env=TOY, run_dir=tmp_path / "run").to_json()
    (tmp_path / "config.json").write_text(
        json.dumps({**saved, "pseudo_label_threshold": None, "crop_steps": 0})
    )
    assert TrainConfig.load(tmp_path / "config.json").to_json() == saved
    (tmp_path / "config.json").write_text(
        json.dumps({**saved, "pseudo_label_threshold": 0.99, "crop_steps": 0})
    )
    with pytest.raises(ConfigError, match=f"--pseudo-label-threshold, SURF's option.*commit {RETIRED_AT}"):
        TrainConfig.load(tmp_path / "config.json")


def test_run_dir_checks(tmp_path):
    config = TrainConfig(env=TOY, run_dir=tmp_path)
    check_run_dir(tmp_path, config, resume=False)  # empty: fine
    config.save(tmp_path / "config.json")
    with pytest.raises(ValueError, match="already holds this run"):
        check_run_dir(tmp_path, config, resume=False)
    with pytest.raises(ValueError, match="already holds a different run"):
        check_run_dir(tmp_path, TrainConfig(env=TOY, run_dir=tmp_path, seed=3), resume=False)
    with pytest.raises(ValueError, match="no run to resume"):
        check_run_dir(tmp_path / "nothing", config, resume=True)


def test_the_whole_label_budget_is_due_two_updates_before_the_end(tmp_path):
    spec = resolve(TrainConfig(env="prefrl/Hopper-v0", labels=700, steps=1_000_000, run_dir=tmp_path / "r"))
    end = spec.steps - 2 * spec.reward_update_interval
    assert spec.schedule.labels_due(end - spec.reward_update_interval) < 700
    assert spec.schedule.labels_due(end) == 700
    short = resolve(TrainConfig(env="prefrl/Hopper-v0", steps=15_000, run_dir=tmp_path / "s"))
    assert short.schedule.total_steps == 15_000  # too short to keep two updates back


def test_labels_by_spends_the_budget_early_and_asks_nothing_after(tmp_path):
    config = TrainConfig(env="prefrl/Walker2d-v0", algo="sac", labels=200, steps=500_000, labels_by=200_000)
    schedule = resolve(dataclasses.replace(config, run_dir=tmp_path / "r")).schedule
    assert schedule.labels_due(180_000) < 200 and schedule.labels_due(200_000) == 200
    assert schedule.labels_due(500_000) == 200
    spread = resolve(dataclasses.replace(config, labels_by=None, run_dir=tmp_path / "s")).schedule
    assert spread.labels_due(200_000) < schedule.labels_due(200_000)
    refused = {600_000: "--labels-by 600000 is past the run's end", 0: "--labels-by must be >= 1"}
    for bad, message in refused.items():
        with pytest.raises(ConfigError, match=message):
            resolve(dataclasses.replace(config, labels_by=bad, run_dir=tmp_path / "b"))
    assert not (tmp_path / "b").exists()
