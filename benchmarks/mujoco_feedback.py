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

from benchmarks.common import RESULTS, machine_info, run_all, run_is_complete, write_json
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
    report_only: bool = False
    """Only rewrite the JSON/PNG from the runs as they are now."""


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
    if not args.report_only:
        run_all(jobs, args.parallel, on_progress=lambda: report(args, records))
    else:
        report(args, records)


def report(args: Args, records: list[tuple[Path, str, int, int]]) -> None:
    """Write the JSON and PNG from the runs' metrics; runs still going are marked ``complete: false``."""
    runs = []
    for run_dir, teacher, labels, seed in records:
        if not (run_dir / "metrics.csv").exists():
            continue
        metrics = read_metrics(run_dir / "metrics.csv")
        if not len(metrics["step"]):
            continue
        reached = int(metrics["step"][-1])
        runs.append(
            {
                "env": args.env,
                "algo": args.algo,
                "teacher": teacher,
                "labels": int(np.nanmax(metrics["labels"])) if teacher != "true-reward" else 0,
                "label_budget": labels,
                "steps": args.steps,
                "steps_reached": reached,
                "complete": run_is_complete(run_dir, args.steps),
                "seed": seed,
                # Over the last 10 % of the steps reached so far (of all steps once complete).
                "final_true_return": round(final_true_return(run_dir / "metrics.csv", reached), 1),
                "wall_s": round(float(metrics["wall_s"][-1]), 1),
                "run_dir": str(run_dir),
            }
        )
    done = [r for r in runs if r["complete"]]
    pref = [r["final_true_return"] for r in done if r["teacher"] != "true-reward"]
    true = [r["final_true_return"] for r in done if r["teacher"] == "true-reward"]
    summary: dict[str, object] = {
        "complete_runs": {"preferences": len(pref), "true_reward": len(true)},
        "target_ratio": 0.9,
        "final": "mean true episode return over the last 10 % of env steps",
    }
    if pref and true:
        summary.update(
            preferences_mean_final_true_return=round(float(np.mean(pref)), 1),
            preferences_std=round(float(np.std(pref)), 1),
            true_reward_mean_final_true_return=round(float(np.mean(true)), 1),
            true_reward_std=round(float(np.std(true)), 1),
            ratio=round(float(np.mean(pref) / np.mean(true)), 3),
        )
    write_json(
        args.out,
        {"benchmark": "mujoco_feedback", "runs": runs, "summary": summary, "machine": machine_info()},
    )
    if runs:
        title = f"{args.env}, {args.algo}: {args.teacher} ({args.labels} labels) vs true reward"
        plot_runs([Path(r["run_dir"]) for r in runs], args.out.with_suffix(".png"), title=title)
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == "__main__":
    main(tyro.cli(Args))
