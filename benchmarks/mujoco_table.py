"""The paper's Figure 2 on prefrl's MuJoCo task variants, with rliable statistics (issue 12).

Runs the committed sweeps (:mod:`prefrl.sweep`) as one grid on a local Ray, cheapest runs first so that
whole tasks finish early in a sitting, then reports what is finished with :func:`prefrl.report.write_report`:

* ``benchmarks/specs/mujoco_table.toml``: all 8 tasks, PPO on the true reward against 700 oracle labels,
  3 seeds, 1M steps (200k for Reacher), RL Zoo's per-task PPO settings for both arms;
* ``mujoco_budgets.toml``: 350 and 1,400 labels on Hopper, Walker2d and HalfCheetah;
* ``mujoco_trpo.toml``: TRPO (the paper's agent) on Hopper and Walker2d.

Each spec keeps its finished runs' records in ``benchmarks/results/mujoco_table_runs`` (the sweep's
``keep``: config, spec and metrics, tens of kB a run). Commit that folder: the report is made from it, and a
later sitting on any machine skips what it holds, so the benchmark (tens of core-hours on 2 cores) goes on
from what is committed. ``runs/`` directories are only needed for runs in progress.

Writes ``benchmarks/results/mujoco_table.{json,md,png}``: ``{runs: [...], summary: {iqm_700, iqm_700_ci,
per_task: {env: {...}}, status, ...}, arms, ...}``; ``status`` is ``partial`` until every run of the three
specs is recorded. Target: IQM normalised score of the 700-label arm over the 8 tasks ≥ 0.9.

    python -m benchmarks.mujoco_table                         # everything left to run, on every core
    python -m benchmarks.mujoco_table --cpus 1 --envs prefrl/InvertedPendulum-v0 prefrl/Reacher-v0
    python -m benchmarks.mujoco_table --report-only           # rewrite the results from the records
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from benchmarks.common import RESULTS, ROOT, grid, machine_info, setting, sweep_and_report, write_json
from prefrl.cli import stop_signals_checkpoint
from prefrl.sweep import Sweep, SweepRun

SPECS = Path(__file__).resolve().parent / "specs"
TARGET_IQM = 0.9
MAIN_ARM = "ppo oracle 700"
PUBLISHED_PPO_1M = {
    "prefrl/Ant-v0": ("Ant-v3", 1327),
    "prefrl/HalfCheetah-v0": ("HalfCheetah-v3", 5819),
    "prefrl/Hopper-v0": ("Hopper-v3", 2410),
    "prefrl/Swimmer-v0": ("Swimmer-v3", 282),
    "prefrl/Walker2d-v0": ("Walker2d-v3", 3479),
}
"""RL Zoo's published PPO returns at 1M steps on the standard tasks (rl-baselines3-zoo benchmark.md, one
run, deterministic evaluation). Our variants have fixed-length episodes, no control or contact costs and a
height term for the alive bonus (envs/mujoco.py): another scale, set beside ours, not compared."""


ALL_SPECS = (SPECS / "mujoco_table.toml", SPECS / "mujoco_budgets.toml", SPECS / "mujoco_trpo.toml")


@dataclass
class Args:
    specs: tuple[Path, ...] = ALL_SPECS
    """Specs whose runs to start this sitting; the report and its status always cover every committed spec."""
    envs: tuple[str, ...] = ()
    """Run only these tasks this sitting (default: all); the report covers every recorded run."""
    cpus: int | None = None
    """Cores for the local Ray (default: those this process may use)."""
    report_only: bool = False
    out: Path = RESULTS / "mujoco_table"


def cheapest_first(run: SweepRun) -> int:
    return run.steps


def summary(report: dict[str, Any], everything: Sweep) -> dict[str, Any]:
    """The issue's summary: the 700-label arm's IQM over the tasks with its CI, per-task figures, status."""
    recorded = {run.name for run in everything.runs if run.recorded_steps() >= run.steps}
    missing = [run.name for run in everything.runs if run.name not in recorded]
    tasks = sorted({setting(run, "--env") for run in everything.runs})
    finals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in report["runs"]:
        if run["final_true_return"] is not None:
            finals[run["env"]][run["arm"]].append(run["final_true_return"])
        if run["normalized_score"] is not None:
            scores[run["env"]][run["arm"]].append(run["normalized_score"])
    per_task = {}
    for env in tasks:
        published = PUBLISHED_PPO_1M.get(env)
        per_task[env] = {
            "final_true_return": {arm: _mean_std(v) for arm, v in sorted(finals[env].items())},
            "normalized_score": {arm: _mean_std(v) for arm, v in sorted(scores[env].items())},
            "rl_zoo_ppo_1m": {"task": published[0], "return": published[1]} if published else None,
        }
    main = report["summary"].get(MAIN_ARM, {})
    complete = not missing
    tasks_in_iqm = main.get("tasks", 0)
    left_out = main.get("tasks_left_out", [])
    return {
        "iqm_700": main.get("iqm"),
        "iqm_700_ci": main.get("ci95"),
        "mean_700": main.get("mean"),
        "iqm_700_over": f"{tasks_in_iqm} of {len(tasks)} tasks × {main.get('runs_per_task', 0)} seeds"
        + (f" (left out, fewer seeds: {', '.join(left_out)})" if left_out else ""),
        "per_task": per_task,
        "below_0_8": sorted(
            env for env in tasks if scores[env].get(MAIN_ARM) and np.mean(scores[env][MAIN_ARM]) < 0.8
        ),
        "target": {"iqm_700": TARGET_IQM, "tasks": len(tasks)},
        "target_met": (main.get("iqm", 0.0) >= TARGET_IQM and tasks_in_iqm == len(tasks)) if main else None,
        "status": "complete"
        if complete
        else f"partial: {len(recorded)} of {len(everything.runs)} runs finished and recorded",
        "runs_missing": missing,
        "arms": {
            arm: {k: v for k, v in stats.items() if k != "performance_profile"}
            for arm, stats in report["summary"].items()
        },  # fmt: skip
    }


def _mean_std(values: list[float]) -> dict[str, float | int]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "seeds": len(values)}


def main(args: Args) -> None:
    reported = tuple(dict.fromkeys(path.resolve() for path in (*ALL_SPECS, *args.specs)))
    everything = grid(reported, order=cheapest_first)
    todo = None if args.report_only else grid(args.specs, args.envs, order=cheapest_first)
    report = sweep_and_report(everything, todo, args.out, args.cpus)
    data = {
        **report,
        "summary": summary(report, everything),
        "specs": [os.path.relpath(path, ROOT) for path in reported],
        "machine": machine_info(),
    }
    write_json(args.out.with_suffix(".json"), data)
    s = data["summary"]
    print(
        f"{s['status']}; IQM of the 700-label arm {s['iqm_700']} (95 % CI {s['iqm_700_ci']}) "
        f"over {s['iqm_700_over']}"
    )


if __name__ == "__main__":
    with stop_signals_checkpoint():  # `kill` or Ctrl-C, even when started with `&`: runs checkpoint
        main(tyro.cli(Args))
