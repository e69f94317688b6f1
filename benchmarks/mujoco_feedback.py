"""Preferences vs the true reward on MuJoCo (Christiano et al. 2017, Fig. 2).

Default: Hopper (fixed-horizon variant), PPO, 1M env steps, the oracle teacher with 700 labels vs the
`true-reward` baseline, 3 seeds each. Writes benchmarks/results/mujoco_feedback.json and .png.
Resumable: rerun the same command and finished runs are kept, interrupted ones resumed.

    python benchmarks/mujoco_feedback.py [--env prefrl/Hopper-v0] [--steps 1000000] [--seeds 0 1 2]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from benchmarks.common import RESULTS, machine_info, run_all, write_json
from prefrl.metrics import final_true_return, read_metrics
from prefrl.plotting import plot_runs


@dataclass
class Args:
    env: str = "prefrl/Hopper-v0"
    algo: str = "ppo"
    teacher: str = "oracle"
    labels: int = 700
    steps: int = 1_000_000
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    parallel: int = 2
    """Runs at a time (one per core)."""
    runs_dir: Path = Path("benchmarks/runs")
    out: Path = RESULTS / "mujoco_feedback.json"


def main(args: Args) -> None:
    slug = args.env.replace("/", "_")
    jobs, records = [], []
    for seed in args.seeds:
        for teacher in (args.teacher, "true-reward"):
            labels = args.labels if teacher != "true-reward" else 0
            run_dir = args.runs_dir / f"{slug}-{args.algo}-{teacher}-{labels}-s{seed}"
            train_args = ["--env", args.env, "--algo", args.algo, "--teacher", teacher, "--seed", str(seed)]
            if labels:
                train_args += ["--labels", str(labels)]
            jobs.append((run_dir, train_args, args.steps))
            records.append((run_dir, teacher, labels, seed))
    run_all(jobs, args.parallel)

    runs = []
    for run_dir, teacher, labels, seed in records:
        metrics = read_metrics(run_dir / "metrics.csv")
        runs.append(
            {
                "env": args.env,
                "algo": args.algo,
                "teacher": teacher,
                "labels": int(np.nanmax(metrics["labels"])) if teacher != "true-reward" else 0,
                "label_budget": labels,
                "steps": args.steps,
                "seed": seed,
                "final_true_return": round(final_true_return(run_dir / "metrics.csv", args.steps), 1),
                "wall_s": round(float(metrics["wall_s"][-1]), 1),
                "run_dir": str(run_dir),
            }
        )
    pref = [r["final_true_return"] for r in runs if r["teacher"] != "true-reward"]
    true = [r["final_true_return"] for r in runs if r["teacher"] == "true-reward"]
    summary = {
        "preferences_mean_final_true_return": round(float(np.mean(pref)), 1),
        "preferences_std": round(float(np.std(pref)), 1),
        "true_reward_mean_final_true_return": round(float(np.mean(true)), 1),
        "true_reward_std": round(float(np.std(true)), 1),
        "ratio": round(float(np.mean(pref) / np.mean(true)), 3),
        "target_ratio": 0.9,
        "final": "mean true episode return over the last 10 % of env steps",
    }
    write_json(args.out, {"benchmark": "mujoco_feedback", "runs": runs, "summary": summary, "machine": machine_info()})
    png = args.out.with_suffix(".png")
    plot_runs([Path(r["run_dir"]) for r in runs], png, title=f"{args.env}, {args.algo}: {args.teacher} vs true reward")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
