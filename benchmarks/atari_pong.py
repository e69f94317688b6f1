"""Preferences vs the true reward on Pong (Christiano et al. 2017, §3.1.2 and App. A.2).

Pong with its score blacked out (``prefrl/PongNoScore-v0``), A2C with the paper's settings, the synthetic
oracle with 3,300 labels (the paper: Pong matches RL on the true reward with 3.3k synthetic labels) vs the
``true-reward`` baseline, the same env steps each. Writes benchmarks/results/atari_pong.json
(``{runs: [...], summary: {ratio, ...}}``, the machine and versions) and .png.

A full run is long: 10M steps of A2C with a CNN reward model take about 12 h on 2 CPU cores (the model's
200 pre-training epochs on 500 labels take about 80 min and save their progress every minute; RL with reward
updates then runs at about 250 steps/s). The script is resumable: ``--max-minutes`` stops the runs (they keep
their labels and last checkpoint) and the same command continues them. Until every run is complete, the
summary compares the arms at the steps all runs have reached (``ratio_steps``).

    python -m benchmarks.atari_pong                      # everything, resumable (most of a day on a CPU)
    python -m benchmarks.atari_pong --max-minutes 2      # as far as 2 minutes go, then report
    python -m benchmarks.atari_pong --report-only        # rewrite the JSON/PNG from the runs as they are
    python -m benchmarks.atari_pong --arms preferences --threads 2   # one arm alone, on both cores
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from benchmarks.common import RESULTS, machine_info, run_all, run_is_complete, write_json
from prefrl.checkpoint import latest_checkpoint, read_state
from prefrl.metrics import final_true_return, read_metrics
from prefrl.plotting import plot_runs


def pretraining_progress(run_dir: Path) -> dict[str, int]:
    """Member-epochs of reward-model pre-training done and due, from the run's ``pretraining.pt``."""
    path = run_dir / "pretraining.pt"
    if not path.exists():
        return {}
    import torch

    progress = torch.load(path, map_location="cpu", weights_only=False)["progress"]
    return {
        "pretraining_member_epochs_done": int(sum(progress.epochs_done)),
        "pretraining_member_epochs": int(progress.epochs * len(progress.epochs_done)),
    }


@dataclass
class Args:
    env: str = "prefrl/PongNoScore-v0"
    algo: str = "a2c"
    teacher: str = "oracle"
    labels: int = 3_300
    steps: int = 10_000_000
    """Env steps of each run (the paper trains 50M; A2C learns Pong in about 10M)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    parallel: int = 2
    """Runs at a time."""
    max_minutes: float | None = None
    """Stop the runs after this long (resume later with the same command)."""
    checkpoint_interval: int = 20_000
    device: str = "cpu"
    threads: int = 1
    """Torch threads per run (e.g. 2 when one arm runs alone on 2 cores); also applied on resume."""
    arms: list[str] = field(default_factory=lambda: ["preferences", "true-reward"])
    """Which arms to run now (both are reported): preferences, true-reward."""
    runs_dir: Path = Path("benchmarks/runs")
    out: Path = RESULTS / "atari_pong.json"
    report_only: bool = False


def jobs_for(args: Args) -> list[tuple[Path, list[str], str, int, int]]:
    """``(run_dir, train_args, teacher, label budget, seed)`` for each run."""
    slug = args.env.replace("/", "_")
    jobs = []
    for seed in args.seeds:
        for teacher in (args.teacher, "true-reward"):
            labels = args.labels if teacher != "true-reward" else 0
            run_dir = args.runs_dir / f"{slug}-{args.algo}-{teacher}-{labels}-s{seed}"
            train_args = [
                "--env",
                args.env,
                "--algo",
                args.algo,
                "--teacher",
                teacher,
                "--seed",
                str(seed),
                "--checkpoint-interval",
                str(args.checkpoint_interval),
                "--device",
                args.device,
                "--threads",
                str(args.threads),
            ]
            if labels:
                train_args += ["--labels", str(labels)]
            jobs.append((run_dir, train_args, teacher, labels, seed))
    return jobs


def arm_of(teacher: object) -> str:
    """The comparison arm a run belongs to: ``true-reward`` or ``preferences`` (any teacher)."""
    return "true-reward" if teacher == "true-reward" else "preferences"


def run(args: Args, jobs: list[tuple[Path, list[str], str, int, int]]) -> None:
    """Run (or resume) the jobs, ``parallel`` at a time, until done or ``max_minutes`` have passed."""
    unknown = set(args.arms) - {"preferences", "true-reward"}
    if unknown:
        raise SystemExit(f"unknown --arms {sorted(unknown)}; choose from: preferences, true-reward")
    chosen = [
        (run_dir, train_args, args.steps)
        for run_dir, train_args, teacher, *_ in jobs
        if arm_of(teacher) in args.arms
    ]
    resume_args = ["--threads", str(args.threads), "--device", args.device]
    run_all(chosen, args.parallel, max_minutes=args.max_minutes, resume_args=resume_args)


def answered_labels(run_dir: Path) -> int:
    db = run_dir / "labels.sqlite"
    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return int(con.execute("SELECT COUNT(*) FROM answers").fetchone()[0])


def shifted_ratio(preferences: float, true_reward: float) -> float:
    """Pong scores shifted by 21 to [0, 42] (a random policy scores about -20.5), then divided."""
    return round((preferences + 21) / (true_reward + 21), 3)


def at_same_steps(runs: list[dict[str, object]]) -> dict[str, object] | None:
    """Each arm's mean final true return, every run taken at the steps the shortest run has reached.

    The same statistic as the full comparison (mean over the last 10 % of the steps), cut at the same step
    count in every run: the full benchmark's ratio once all runs are complete, and a comparison as far as
    the machine got while they are not.
    """
    started = [r for r in runs if int(r["steps_reached"]) > 0]  # type: ignore[call-overload]
    arms = {arm_of(r["teacher"]) for r in started}
    if len(started) < len(runs) or arms != {"preferences", "true-reward"}:
        return None
    steps = min(int(r["steps_reached"]) for r in started)  # type: ignore[call-overload]
    returns: dict[str, list[float]] = {"preferences": [], "true-reward": []}
    for r in started:
        try:
            final = final_true_return(Path(str(r["run_dir"])) / "metrics.csv", steps, until=steps)
        except ValueError:
            return None  # no episode has ended in some run's window yet
        returns[arm_of(r["teacher"])].append(final)
    pref, true = float(np.mean(returns["preferences"])), float(np.mean(returns["true-reward"]))
    return {
        "ratio_steps": steps,
        "preferences_final_true_return": round(pref, 2),
        "true_reward_final_true_return": round(true, 2),
        "ratio": shifted_ratio(pref, true),
    }


def report(args: Args, jobs: list[tuple[Path, list[str], str, int, int]]) -> None:
    runs = []
    for run_dir, _, teacher, labels, seed in jobs:
        checkpoint = latest_checkpoint(run_dir) if run_dir.exists() else None
        metrics_path = run_dir / "metrics.csv"
        metrics = read_metrics(metrics_path) if metrics_path.exists() else None
        reached = int(read_state(checkpoint)["step"]) if checkpoint else 0
        record: dict[str, object] = {
            "env": args.env,
            "algo": args.algo,
            "teacher": teacher,
            "label_budget": labels,
            "seed": seed,
            "steps": args.steps,
            "steps_reached": reached,
            "complete": run_is_complete(run_dir, args.steps),
            "labels_answered": answered_labels(run_dir) if teacher != "true-reward" else 0,
            "episodes": int(np.nansum(metrics["episodes"])) if metrics is not None else 0,
            "final_true_return": None,
            "wall_s": None,
            "run_dir": str(run_dir),
        }
        if teacher != "true-reward" and not reached:
            record["phase"] = "initial labels and reward-model pre-training (200 epochs), before RL"
            record |= pretraining_progress(run_dir)
        if metrics is not None and len(metrics["step"]):
            last = int(metrics["step"][-1])
            # Over the last 10 % of the steps reached so far (of all steps once complete).
            record["final_true_return"] = round(final_true_return(metrics_path, max(last, 1)), 2)
            record["wall_s"] = round(float(metrics["wall_s"][-1]), 1)
        runs.append(record)
    complete = all(r["complete"] for r in runs)
    summary: dict[str, object] = {
        "steps": args.steps,
        "steps_reached": {str(r["teacher"]): r["steps_reached"] for r in runs},
        "status": "complete"
        if complete
        else "partial: the arms compared at the steps every run has reached (ratio_steps); rerun to go on",
        "ratio": None,
        "final": "mean true episode return over the last 10 % of env steps",
        "ratio_definition": "(preferences + 21) / (true reward + 21): Pong returns lie in [-21, 21]",
    }
    summary |= at_same_steps(runs) or {}
    command = "python -m benchmarks.atari_pong  (resumable: rerun to continue)"
    record = {"benchmark": "atari_pong", "runs": runs, "summary": summary, "machine": machine_info()}
    write_json(args.out, {**record, "command": command})
    curves = [Path(str(r["run_dir"])) for r in runs if r["final_true_return"] is not None]
    if curves:
        title = f"{args.env}, {args.algo}: {args.teacher} ({args.labels} labels) vs true reward"
        plot_runs(curves, args.out.with_suffix(".png"), title=title)
    print(json.dumps(summary, indent=2), flush=True)


def main(args: Args) -> None:
    jobs = jobs_for(args)
    if not args.report_only:
        run(args, jobs)
    report(args, jobs)


if __name__ == "__main__":
    main(tyro.cli(Args))
