"""How closely does a run's learned reward track the true one on its own agent's behaviour?

For each finished preference run (MuJoCo), loads the last checkpoint's agent and reward model, plays a few
episodes with the agent and reports, on those steps:

* the true and learned return per episode;
* the correlation of learned and true reward per step;
* the share of segment pairs (segments of the run's length, cut from those episodes) that the learned reward
  orders as the true reward does: what the oracle teacher is asked about;
* for Hopper, Walker2d and Ant, the mean torso height and how often the robot is in a pose its v5 env would
  call unhealthy (``info["fallen"]``: a torso pitched past ±0.2 rad counts, so a Hopper running leaning
  forward is "unhealthy" on most steps while its torso stays high).

This is how the Hopper agent that slid forward lying down was found (README, Task variants).
With ``--against RUN`` (the true-reward run of the same task, say) that run's final agent is played too
and scored by each diagnosed run's learned reward: a reward that pays more for the better agent's
behaviour, as the true reward does, was right, and its own agent fell short of it; one that pays less is
wrong off the behaviour it was fitted on.

Writes benchmarks/results/reward_diagnostics.json, keeping the diagnoses of other run directories there.

    python -m benchmarks.reward_diagnostics --run-dirs RUNS/prefrl_Hopper-v0-ppo-oracle-700-s0 [...]
    python -m benchmarks.reward_diagnostics --run-dirs RUNS/prefrl_Swimmer-v0-ppo-oracle-700-s0 \
        --against RUNS/prefrl_Swimmer-v0-ppo-true-reward-s0
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from stable_baselines3.common.vec_env import VecNormalize

from benchmarks.common import RESULTS, machine_info, play_final_policy, write_json
from prefrl import algos
from prefrl.checkpoint import latest_checkpoint
from prefrl.config import TrainConfig
from prefrl.environment import make_vec_env
from prefrl.envs.mujoco import NAMESPACE, TASKS
from prefrl.observations import observation_kind
from prefrl.spec import resolve


@dataclass
class Args:
    run_dirs: list[Path] = field(default_factory=list)
    """Finished (or checkpointed) runs on MuJoCo tasks (true-reward runs: posture and return only)."""
    episodes: int = 2
    pairs: int = 2000
    """Random segment pairs drawn to measure ordering agreement."""
    seed: int = 123
    against: Path | None = None
    """Another run of the same task whose final agent each run's learned reward also scores."""
    out: Path = RESULTS / "reward_diagnostics.json"


def diagnose(
    run_dir: Path, episodes: int, pairs: int, seed: int, against: Path | None = None
) -> dict[str, object]:
    config = TrainConfig.load(run_dir / "config.json")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise SystemExit(f"{run_dir}: no checkpoint")
    base = make_vec_env(config.env, 1, seed, config.make_kwargs() or None)
    if len(base.observation_space.shape or ()) != 1:
        raise SystemExit(f"{run_dir}: only runs on vector observations (MuJoCo) are supported")
    spec = resolve(config)  # the ensemble as the run built it (unset settings take the family's defaults)
    ensemble = observation_kind(spec).ensemble(base)
    has_reward_model = (checkpoint / "reward_model.pt").exists()  # not in a true-reward run
    if has_reward_model:
        ensemble.load(checkpoint / "reward_model.pt")
    venv = base
    if (checkpoint / "vecnormalize.pkl").exists():
        venv = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), base)
        venv.training, venv.norm_reward = False, False
    agent = algos.ALGO_CLASSES[config.algo].load(checkpoint / "agent.zip", device="cpu")

    task = TASKS.get(config.env.removeprefix(f"{NAMESPACE}/").removesuffix("-v0"))
    torso = task.torso_height if task is not None and task.id == config.env else None
    raw_obs, acts, true_rewards, fallen, heights, lengths = [], [], [], [], [], []
    obs: Any = venv.reset()
    for _ in range(episodes):
        steps, done = 0, False
        while not done:
            action, _ = agent.predict(obs, deterministic=False)
            original: Any = venv.get_original_obs() if isinstance(venv, VecNormalize) else obs
            raw_obs.append(original[0])
            acts.append(np.asarray(action)[0])
            obs, reward, dones, infos = venv.step(action)
            true_rewards.append(float(reward[0]))
            fallen.append(infos[0].get("fallen"))
            heights.append(infos[0]["sim_state"][torso[0]] if torso else np.nan)
            steps, done = steps + 1, bool(dones[0])
        lengths.append(steps)
    observations = np.asarray(raw_obs, dtype=np.float32)
    true = np.asarray(true_rewards)
    result: dict[str, object] = {
        "run_dir": str(run_dir),
        "env": config.env,
        "teacher": config.teacher,
        "checkpoint": checkpoint.name,
        "episodes": episodes,
        "true_return_per_episode": round(float(true.sum()) / episodes, 1),
    }
    if torso:
        result["mean_torso_height"] = round(float(np.mean(heights)), 3)
        result["fall_height"] = torso[1]
    if fallen[0] is not None:
        result["unhealthy_share"] = round(float(np.mean([bool(f) for f in fallen])), 4)
    if not has_reward_model:
        return result
    learned = ensemble.member_rewards(observations, np.asarray(acts, dtype=np.float32)).mean(0)

    length = spec.segment_length
    bounds = np.cumsum([0, *lengths])
    starts = np.concatenate([np.arange(a, b - length + 1, length) for a, b in zip(bounds[:-1], bounds[1:])])
    true_seg = np.array([true[s : s + length].sum() for s in starts])
    learned_seg = np.array([learned[s : s + length].sum() for s in starts])
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(starts), (2, pairs))
    keep = true_seg[left] != true_seg[right]
    agree = np.sign(true_seg[left] - true_seg[right]) == np.sign(learned_seg[left] - learned_seg[right])

    result |= {
        "learned_return_per_episode": round(float(learned.sum()) / episodes, 1),
        "step_correlation": round(float(np.corrcoef(learned, true)[0, 1]), 4),
        "segment_length": length,
        "segment_pair_agreement": round(float(agree[keep].mean()), 4),
    }
    if against is not None:
        other = play_final_policy(against, episodes, seed, deterministic=False)  # played as its own agent is
        scored = [ensemble.member_rewards(e.observations, e.actions).mean(0).sum() for e in other]
        result["against"] = {
            "run_dir": str(against),
            "true_return_per_episode": round(float(np.mean([e.true_return for e in other])), 1),
            "learned_return_per_episode": round(float(np.mean(scored)), 1),
        }
    return result


def main(args: Args) -> None:
    if not args.run_dirs:
        raise SystemExit("give one or more run directories")
    torch.set_num_threads(1)
    runs = [diagnose(d, args.episodes, args.pairs, args.seed, args.against) for d in args.run_dirs]
    previous = json.loads(args.out.read_text())["runs"] if args.out.exists() else []
    diagnosed = {run["run_dir"] for run in runs}
    kept = [run for run in previous if run["run_dir"] not in diagnosed]  # other runs' diagnoses stay
    write_json(args.out, {"benchmark": "reward_diagnostics", "runs": kept + runs, "machine": machine_info()})
    print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
