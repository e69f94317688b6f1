"""Where were a walker run's labels asked, and where did its agent spend its steps? (issue 11, a diagnosis)

A preference-taught agent can only be told what its queries show. On ``prefrl/Walker2d-v0`` the true reward is
the forward speed plus the torso's height above the fall height (``envs/mujoco.py``), and the agents of
the 200-label runs end crawling on the floor. This asks, of finished runs, whether the reward models were
wrong about what they were shown or were shown too little of the walker upright:

* **labels**: the share of the labelled clips' steps with the torso below the fall height, the torso height's
  5th/50th/95th percentiles (standing is 1.25 m on Walker2d), the share of pairs whose two clips both spend
  at least 90 % of their steps below it, and a least-squares fit of the run's final learned reward, and of
  the true reward, on those steps' forward speed and torso height: the true reward weighs the two alike; a
  learned reward that weighed height much less would make lying down cheap;
* **agent**: from the final checkpoint's replay buffer, the share of steps below the fall height and the mean
  forward speed in each quarter of the run (true-reward runs too, for comparison).

It needs the run directories (labels, the final checkpoint), which are not committed; the figures it wrote
are (``benchmarks/results/label_coverage_walker2d_200k.json``).

    python -m benchmarks.label_coverage benchmarks/runs/offpolicy_200k/prefrl_Walker2d-v0-sac-oracle-200-s0 \
        ... [--out benchmarks/results/label_coverage_walker2d_200k.json]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import tyro

import prefrl.envs  # noqa: F401  (registers the task ids)
from benchmarks.common import RESULTS, machine_info, write_json
from prefrl.checkpoint import latest_checkpoint
from prefrl.envs.mujoco import TASKS
from prefrl.label_efficiency import spaces_of
from prefrl.label_store import LabelStore
from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Segment


@dataclass
class Args:
    runs: tyro.conf.Positional[tuple[Path, ...]]
    """Run directories of a planar walker task (``prefrl/Hopper-v0``, ``prefrl/Walker2d-v0``)."""
    out: Path = RESULTS / "label_coverage_walker2d_200k.json"
    quarters: int = 4
    """Parts of the run the replay buffer is summarised in."""


@dataclass(frozen=True)
class Layout:
    """Where a planar walker keeps its torso height and forward speed, and the height it falls below."""

    height_qpos: int
    nq: int
    fall_height: float

    @property
    def height_obs(self) -> int:
        """Index of the torso height in the observation (the v5 envs leave out the x position)."""
        return self.height_qpos - 1

    @property
    def speed_obs(self) -> int:
        """Index of the forward speed, qvel[0], in the observation (qpos[1:] then qvel)."""
        return self.nq - 1


def layout_of(env_id: str) -> Layout:
    name = env_id.split("/")[-1].removesuffix("-v0")
    task = TASKS.get(name)
    if task is None or task.torso_height is None or name not in ("Hopper", "Walker2d"):
        raise SystemExit(
            f"{env_id}: label_coverage handles the planar walkers, prefrl/Hopper-v0 and Walker2d-v0"
        )
    env = gym.make(env_id)
    try:
        nq = int(env.unwrapped.model.nq)  # type: ignore[attr-defined]
    finally:
        env.close()
    return Layout(task.torso_height[0], nq, task.torso_height[1])


def label_coverage(
    pairs: list[tuple[Segment, Segment]], reward: np.ndarray | None, layout: Layout
) -> dict[str, Any]:
    """What the labelled clips showed; ``reward``: the learned reward of their steps in order (or None)."""
    obs = np.concatenate([s.obs for pair in pairs for s in pair]).astype(np.float64)
    true = np.concatenate([s.true_rewards for pair in pairs for s in pair]).astype(np.float64)
    height, speed = obs[:, layout.height_obs], obs[:, layout.speed_obs]

    def below(segment: Segment) -> float:
        return float((segment.obs[:, layout.height_obs] < layout.fall_height).mean())

    result: dict[str, Any] = {
        "pairs": len(pairs),
        "steps": len(obs),
        "share_below_fall_height": round(float((height < layout.fall_height).mean()), 3),
        "height_percentiles_5_50_95": [round(float(h), 3) for h in np.percentile(height, [5, 50, 95])],
        "share_of_pairs_both_below_90pct": round(
            float(np.mean([min(below(a), below(b)) >= 0.9 for a, b in pairs])), 3
        ),
        "true_reward_fit": _fit(speed, height, true),
    }
    if reward is not None:
        result["learned_reward_fit"] = _fit(speed, height, reward.astype(np.float64))
    return result


def _fit(speed: np.ndarray, height: np.ndarray, reward: np.ndarray) -> dict[str, float]:
    """Least squares ``reward ≈ a·speed + b·height + c``: the weights, their ratio and R²."""
    features = np.c_[speed, height, np.ones_like(speed)]
    weights, *_ = np.linalg.lstsq(features, reward, rcond=None)
    residual = features @ weights - reward
    return {
        "speed_weight": round(float(weights[0]), 3),
        "height_weight": round(float(weights[1]), 3),
        "height_per_speed": round(float(weights[1] / weights[0]), 2) if weights[0] else float("nan"),
        "r2": round(float(1 - residual.var() / reward.var()), 3),
    }


def agent_coverage(observations: np.ndarray, layout: Layout, quarters: int = 4) -> list[dict[str, float]]:
    """Per part of the run (observations in the order they were collected): share of steps below the fall
    height and mean forward speed."""
    parts = np.array_split(observations.reshape(len(observations), -1, observations.shape[-1]), quarters)
    return [
        {
            "share_below_fall_height": round(
                float((part[..., layout.height_obs] < layout.fall_height).mean()), 3
            ),
            "mean_forward_speed": round(float(part[..., layout.speed_obs].mean()), 3),
        }
        for part in parts
    ]


def final_checkpoint(run: Path) -> Path:
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise SystemExit(f"{run}: no complete checkpoint (checkpoints/LATEST)")
    return checkpoint


def learned_reward(run: Path, spec: dict[str, Any], pairs: list[tuple[Segment, Segment]]) -> np.ndarray:
    """The run's final reward model on the labelled steps."""
    segments = [s for pair in pairs for s in pair]
    ensemble = RewardEnsemble.for_spaces(
        *spaces_of(segments[0]),
        ensemble_size=int(spec["ensemble_size"]),
        use_actions=(spec.get("reward_inputs") or "observations-actions") == "observations-actions",
        activation=spec.get("reward_activation") or "leaky-relu",
    )
    ensemble.load(final_checkpoint(run) / "reward_model.pt")
    obs = np.concatenate([s.obs for s in segments])
    acts = np.concatenate([s.acts for s in segments])
    return ensemble.reward(obs, acts)


def coverage(run: Path, quarters: int) -> dict[str, Any]:
    spec = json.loads((run / "spec.json").read_text())
    layout = layout_of(spec["env"])
    result: dict[str, Any] = {"run": run.name, "env": spec["env"], "teacher": spec["teacher"]}
    if (run / "labels.sqlite").exists():
        with LabelStore(run / "labels.sqlite") as store:
            pairs = [(query.left, query.right) for query, _ in store.answered_pairs()]
        if pairs:
            result["labels"] = label_coverage(pairs, learned_reward(run, spec, pairs), layout)
    with np.load(final_checkpoint(run) / "replay_buffer.npz") as buffer:
        if bool(buffer["full"]):
            raise SystemExit(f"{run}: the replay buffer wrapped around; its order is not the run's")
        result["agent"] = agent_coverage(buffer["observations"], layout, quarters)
    return result


def main(args: Args) -> None:
    torch.set_num_threads(1)
    runs = [coverage(run, args.quarters) for run in args.runs]
    for run in runs:
        labels = run.get("labels")
        shown = ""
        if labels:
            learned, true = labels["learned_reward_fit"], labels["true_reward_fit"]
            shown = (
                f"labelled steps below {labels['share_below_fall_height']:.2f}, "
                f"heights {labels['height_percentiles_5_50_95']}, "
                f"both clips below {labels['share_of_pairs_both_below_90pct']:.2f}, height/speed learned "
                f"{learned['height_per_speed']} (R² {learned['r2']}), true {true['height_per_speed']}; "
            )
        agent = ", ".join(
            f"{q['share_below_fall_height']:.2f}/{q['mean_forward_speed']:.2f}" for q in run["agent"]
        )
        print(f"{run['run']}: {shown}agent below/speed by quarter {agent}")
    write_json(
        args.out,
        {
            "runs": runs,
            "fall_height": "the lower bound of the v5 env's healthy_z_range (Walker2d 0.8 m, Hopper 0.7 m)",
            "fits": "least squares of the reward on (forward speed, torso height, 1) over the labelled steps",
            "machine": machine_info(),
        },
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
