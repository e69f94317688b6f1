"""``prefrl report DIR ...``: the final true return of many runs per task and arm, normalised by the task's
true-reward arm and aggregated as Agarwal et al. 2021 recommend (the ``rliable`` library): interquartile
mean with 95 % stratified-bootstrap confidence intervals, and performance profiles; learning curves per task
with confidence bands.

A run is any directory ``prefrl train`` made (a sweep's ``out`` holds one per run). Runs are grouped by task
(env) and arm (algo, teacher, labels); each preference run's score is its final true return divided by the
mean final true return of the true-reward runs of the same env and algo (or of the same env with any algo,
when the sweep has one baseline per task). Writes ``OUT.md``, ``OUT.json`` and ``OUT.png``.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from prefrl.config import ConfigError
from prefrl.metrics import final_true_return, read_metrics

BOOTSTRAP_REPS = 2_000


@dataclass(frozen=True)
class RunResult:
    env: str
    algo: str
    teacher: str
    labels: int
    seed: int
    steps: int
    final_true_return: float | None
    wall_s: float | None
    run_dir: Path

    @property
    def arm(self) -> str:
        labels = "" if self.teacher == "true-reward" else f" {self.labels}"
        return f"{self.algo} {self.teacher}{labels}"


def find_runs(paths: list[Path]) -> list[RunResult]:
    """Every run directory in ``paths`` (each a run, or a folder of runs), with its final true return."""
    dirs: list[Path] = []
    for path in paths:
        if (path / "config.json").exists():
            dirs.append(path)
        elif path.is_dir():
            dirs += sorted(p.parent for p in path.glob("*/config.json"))
        else:
            raise ConfigError(f"{path} is neither a run directory nor a folder of runs")
    if not dirs:
        raise ConfigError(f"no prefrl runs (directories with config.json) in {', '.join(map(str, paths))}")
    return [_result(d) for d in dirs]


def _result(run_dir: Path) -> RunResult:
    config = json.loads((run_dir / "config.json").read_text())
    final = None
    if (run_dir / "metrics.csv").exists():
        try:
            final = final_true_return(run_dir / "metrics.csv", config["steps"])
        except ValueError:
            final = None  # not far enough yet
    wall = None
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        wall_column = read_metrics(metrics)["wall_s"]
        wall = float(wall_column[-1]) if len(wall_column) else None
    return RunResult(
        env=config["env"],
        algo=config["algo"],
        teacher=config["teacher"],
        labels=0 if config["teacher"] == "true-reward" else int(config["labels"]),
        seed=int(config["seed"]),
        steps=int(config["steps"]),
        final_true_return=final,
        wall_s=wall,
        run_dir=run_dir,
    )


def normalized_scores(runs: list[RunResult]) -> dict[str, dict[str, list[float]]]:
    """Per preference arm and task: each finished run's final true return / its task's true-reward mean."""
    baselines: dict[tuple[str, str], list[float]] = defaultdict(list)
    for run in runs:
        if run.teacher == "true-reward" and run.final_true_return is not None:
            baselines[(run.env, run.algo)].append(run.final_true_return)
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.teacher == "true-reward" or run.final_true_return is None:
            continue
        base = baselines.get((run.env, run.algo)) or [
            v for (env, _), values in baselines.items() if env == run.env for v in values
        ]
        if not base or np.mean(base) == 0:
            continue
        scores[run.arm][run.env].append(run.final_true_return / float(np.mean(base)))
    return {arm: dict(tasks) for arm, tasks in scores.items()}


def aggregate(scores: dict[str, dict[str, list[float]]], *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """IQM of each arm's normalised scores over tasks × seeds, with a 95 % stratified-bootstrap CI.

    rliable needs a full (runs × tasks) matrix: each arm uses as many seeds as its least-run task has.
    """
    from rliable import library as rly
    from rliable import metrics as rly_metrics

    out = {}
    for arm, tasks in scores.items():
        runs = min(len(v) for v in tasks.values())
        matrix = np.array([tasks[t][:runs] for t in sorted(tasks)]).T  # (runs, tasks)
        np.random.seed(seed)  # rliable draws its bootstrap from numpy's global generator
        point, interval = rly.get_interval_estimates(
            {arm: matrix},
            lambda x: np.array([rly_metrics.aggregate_iqm(x)]),
            reps=BOOTSTRAP_REPS,
        )
        out[arm] = {
            "iqm": float(point[arm][0]),
            "ci95": [float(interval[arm][0, 0]), float(interval[arm][1, 0])],
            "tasks": len(tasks),
            "runs_per_task": runs,
            "per_task": {t: float(np.mean(v)) for t, v in sorted(tasks.items())},
            "matrix": matrix,
        }
    return out


def write_report(paths: list[Path], out: Path) -> dict[str, Any]:
    runs = find_runs(paths)
    scores = normalized_scores(runs)
    stats = aggregate(scores) if scores else {}
    summary = {arm: {k: v for k, v in s.items() if k != "matrix"} for arm, s in stats.items()}
    data = {
        "runs": [
            {
                "env": r.env,
                "algo": r.algo,
                "teacher": r.teacher,
                "labels": r.labels,
                "steps": r.steps,
                "seed": r.seed,
                "final_true_return": r.final_true_return,
                "wall_s": r.wall_s,
                "run_dir": str(r.run_dir),
            }
            for r in runs
        ],
        "summary": summary,
        "statistics": "IQM over tasks × seeds of final true return / the task's true-reward mean; 95 % "
        f"stratified-bootstrap CI ({BOOTSTRAP_REPS} resamples), rliable (Agarwal et al. 2021)",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(runs, summary))
    _plot(runs, stats, out.with_suffix(".png"))
    return data


def _markdown(runs: list[RunResult], summary: dict[str, Any]) -> str:
    lines = [
        "| task | arm | seeds | final true return (mean ± std) | normalised |",
        "| --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[str, str], list[RunResult]] = defaultdict(list)
    for run in runs:
        groups[(run.env, run.arm)].append(run)
    for (env, arm), members in sorted(groups.items()):
        finals = [r.final_true_return for r in members if r.final_true_return is not None]
        value = f"{np.mean(finals):.1f} ± {np.std(finals):.1f}" if finals else "not finished"
        norm = summary.get(arm, {}).get("per_task", {}).get(env)
        norm_text = "" if norm is None else f"{norm:.2f}"
        lines.append(f"| {env} | {arm} | {len(finals)}/{len(members)} | {value} | {norm_text} |")
    lines += ["", "| arm | IQM normalised score | 95 % CI | tasks |", "| --- | --- | --- | --- |"]
    for arm, s in sorted(summary.items()):
        lines.append(f"| {arm} | {s['iqm']:.2f} | [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] | {s['tasks']} |")
    return "\n".join(lines) + "\n"


def _plot(runs: list[RunResult], stats: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r.env for r in runs})
    columns = len(envs) + (1 if stats else 0)
    fig, axes = plt.subplots(1, columns, figsize=(4.2 * columns, 3.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        arms: dict[str, list[RunResult]] = defaultdict(list)
        for run in runs:
            if run.env == env:
                arms[run.arm].append(run)
        for arm, members in sorted(arms.items()):
            grid, curves = _curves(members)
            if not curves:
                continue
            with warnings.catch_warnings():  # steps before a run's first episode have no value yet
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(curves, axis=0)
                low, high = _bootstrap_band(np.array(curves))
            ax.plot(grid, mean, label=f"{arm} ({len(curves)})")
            ax.fill_between(grid, low, high, alpha=0.2)
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("true return")
        ax.legend(fontsize=7)
    if stats:
        from rliable import library as rly

        ax = axes[0][-1]
        taus = np.linspace(0, 1.5, 61)
        profiles, bands = rly.create_performance_profile({a: s["matrix"] for a, s in stats.items()}, taus)
        for arm in sorted(stats):
            ax.plot(taus, profiles[arm], label=arm)
            ax.fill_between(taus, bands[arm][0], bands[arm][1], alpha=0.2)
        ax.set_title("performance profile", fontsize=9)
        ax.set_xlabel("normalised score τ")
        ax.set_ylabel("fraction of runs > τ")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(members: list[RunResult], points: int = 50) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each run's true return interpolated onto one step grid."""
    steps = max(r.steps for r in members)
    grid = np.linspace(0, steps, points)
    curves = []
    for run in members:
        path = run.run_dir / "metrics.csv"
        if not path.exists():
            continue
        m = read_metrics(path)
        if len(m["step"]) < 2:
            continue
        curve = np.interp(grid, m["step"], m["true_return"], left=np.nan, right=np.nan)
        curves.append(curve)
    return grid, curves


def _bootstrap_band(curves: np.ndarray, reps: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95 % bootstrap interval of the mean curve over runs."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(curves), (reps, len(curves)))
    means = np.nanmean(curves[picks], axis=1)
    return np.nanpercentile(means, 2.5, axis=0), np.nanpercentile(means, 97.5, axis=0)


@dataclass
class ReportArgs:
    """Final true return per task and arm, normalised by the true-reward arm, aggregated with rliable."""

    paths: Annotated[list[Path], tyro.conf.Positional]
    out: Path = Path("report")
    """Output prefix: writes OUT.md, OUT.json and OUT.png."""


def main(args: list[str]) -> None:
    from prefrl.cli import parse

    parsed = parse(ReportArgs, args, "prefrl report")
    write_report(parsed.paths, parsed.out)
    print(parsed.out.with_suffix(".md").read_text())
    print(f"wrote {parsed.out.with_suffix('.md')}, .json and .png")
