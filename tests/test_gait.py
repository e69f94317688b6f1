"""The gait judge (envs/gait.py, installed as prefrl.envs.gait), on Walker2d state sequences built by hand."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from prefrl.envs.gait import GaitRule, judge_gait

WALKER = "prefrl/Walker2d-v0"
DT = 0.008  # Walker2d-v5: 4 frames of 2 ms


def episode(steps: int = 1000, speed: float = 0.0, fallen_from: int | None = None) -> np.ndarray:
    """The reset pose held for ``steps`` steps while the torso slides forward at ``speed`` m/s; from step
    ``fallen_from`` on, the torso lies at 0.3 m."""
    env = gym.make(WALKER)
    _, info = env.reset(seed=0)
    env.close()
    states = np.repeat(info["sim_state"][None], steps + 1, axis=0)
    states[:, 0] += speed * DT * np.arange(steps + 1)
    if fallen_from is not None:
        states[fallen_from + 1 :, 1] = 0.3
    return states


def test_upright_and_moving_forward_at_a_strolls_pace_is_walking() -> None:
    gait = judge_gait(WALKER, episode(speed=1.0))
    assert gait.upright_share == 1.0 and gait.forward_speed == pytest.approx(1.0) and gait.walks


def test_standing_still_or_moving_too_slowly_is_not_walking() -> None:
    assert not judge_gait(WALKER, episode(speed=0.0)).walks
    slow = judge_gait(WALKER, episode(speed=0.4))
    assert slow.upright_share == 1.0 and not slow.walks
    assert judge_gait(WALKER, episode(speed=0.4), GaitRule(min_speed=0.3)).walks  # the rule is a setting


def test_heaving_along_the_floor_is_not_walking_however_fast() -> None:
    gait = judge_gait(WALKER, episode(speed=3.0, fallen_from=0))
    assert gait.upright_share == 0.0 and gait.forward_speed == pytest.approx(3.0) and not gait.walks


def test_a_stumble_is_allowed_and_a_fall_that_lasts_is_not() -> None:
    stumble = episode(speed=1.0)
    stumble[101:151, 1] = 0.3  # 50 of 1,000 steps down, then up again
    assert judge_gait(WALKER, stumble).upright_share == pytest.approx(0.95)
    assert judge_gait(WALKER, stumble).walks
    fall = judge_gait(WALKER, episode(speed=1.0, fallen_from=500))
    assert fall.upright_share == pytest.approx(0.5) and not fall.walks


def test_the_torsos_pitch_counts_as_the_v5_env_counts_it() -> None:
    leaning = episode(speed=1.0)
    leaning[1:, 2] = 1.2  # upright height, but pitched beyond Walker2d-v5's healthy angle of 1 rad
    assert judge_gait(WALKER, leaning).upright_share == 0.0


def test_a_task_without_a_healthy_condition_or_a_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="no healthy condition"):
        judge_gait("prefrl/Reacher-v0", np.zeros((3, 6)))
    with pytest.raises(ValueError, match="at least one step"):
        judge_gait(WALKER, episode()[:1])
