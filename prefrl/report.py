"""``prefrl report DIR ...``: the final true return of many runs per task and arm, normalised by the task's
true-reward arm and aggregated as Agarwal et al. 2021 recommend (the ``rliable`` library): interquartile
mean with 95 % stratified-bootstrap confidence intervals, and performance profiles; learning curves per task
with confidence bands.

A run is any directory ``prefrl train`` made (a sweep's ``out`` holds one per run). Runs are grouped by task
(env) and arm (algo, teacher, labels, and any other setting that differs between the preference runs of a
task, or that they share away from its default where the task's true-reward runs do not). Each preference
run's score puts its final true return on the scale of its task::

    score = (final − untrained) / (true-reward final − untrained)

where ``true-reward final`` is the mean final true return of the true-reward runs of the same env and algo
(of the same env with any algo, when the sweep has one baseline per task) and ``untrained`` is the mean true
return of the task's runs' first logged episodes (an untrained policy's). So 0 is no better than the start
and 1 matches RL on the true reward, also where returns are negative (Reacher), where a plain ratio would
rank a worse run higher. Writes ``OUT.md``, ``OUT.json`` and ``OUT.png``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from prefrl.config import (
    NO_LABELS,
    RETIRED_SETTINGS,
    ConfigError,
    TrainConfig,
    in_current_format,
)
from prefrl.metrics import final_true_return, read_metrics

BOOTSTRAP_REPS = 2_000
PROFILE_TAUS = np.linspace(0.0, 1.5, 61)
"""Normalised scores at which the performance profiles are read."""
NOT_ARM_SETTINGS = frozenset(
    {"env", "seed", "run_dir", "steps", "algo", "teacher", "labels", "threads", "fit_threads", "device"}
    | {"progress_bar", "format"}
)
"""config.json keys that never tell arms apart (the task, the seed, how a run was computed)."""
TRAIN_DEFAULTS: dict[str, Any] = {
    field.name: field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
    for field in dataclasses.fields(TrainConfig)
    if field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
} | RETIRED_SETTINGS
"""``prefrl train``'s defaults (and retired settings' "off" values, which older runs' ``config.json`` hold):
a setting left at its default is not named in an arm's name."""


@dataclass(frozen=True)
class RunResult:
    env: str
    algo: str
    teacher: str
    labels: int
    seed: int
    steps: int
    final_true_return: float | None
    initial_true_return: float | None
    """True return of the run's first logged episodes, an untrained policy's (None before any)."""
    wall_s: float | None
    run_dir: Path
    arm: str
    """``ALGO TEACHER [LABELS] [KEY=VALUE ...]``, naming each setting that differs between the task's
    preference runs and is not at ``prefrl train``'s default; true-reward runs: ``ALGO true-reward``."""


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
    configs = {}
    for run_dir in dirs:
        try:
            # A setting added after a run was saved is at its default there.
            saved = in_current_format(json.loads((run_dir / "config.json").read_text()))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{run_dir / 'config.json'} is not valid JSON ({err})") from None
        configs[run_dir] = TRAIN_DEFAULTS | saved
    varying = _arm_settings(list(configs.values()))
    return [_result(run_dir, config, varying) for run_dir, config in configs.items()]


def _arm_settings(configs: list[dict[str, Any]]) -> list[str]:
    """Settings that tell a task's preference arms apart: those that differ between its preference runs,
    and those its preference runs all share away from the default where its true-reward runs do not (so
    that a single arm with, say, ``--reward-l2 0`` is not named as prefrl's default). A per-task setting,
    the same for every run of the task, names no arm."""
    preference: dict[str, list[dict[str, Any]]] = defaultdict(list)
    baseline: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for config in configs:
        (baseline if config["teacher"] == "true-reward" else preference)[config["env"]].append(config)
    keys = {key for config in configs for key in config} - NOT_ARM_SETTINGS

    def names_an_arm(key: str, members: list[dict[str, Any]], baselines: list[dict[str, Any]]) -> bool:
        values = {json.dumps(c.get(key)) for c in members}
        if len(values) > 1:
            return True
        shared = members[0].get(key)
        away = key not in TRAIN_DEFAULTS or shared != TRAIN_DEFAULTS[key]
        # Without true-reward runs a per-task setting cannot be told from an arm's: name neither.
        return away and bool(baselines) and all(c.get(key) != shared for c in baselines)

    return sorted(
        key
        for key in keys
        if any(names_an_arm(key, members, baseline[env]) for env, members in preference.items())
    )


def _result(run_dir: Path, config: dict[str, Any], varying: list[str]) -> RunResult:
    final = initial = wall = None
    metrics = run_dir / "metrics.csv"
    if metrics.exists():
        try:
            final = final_true_return(metrics, config["steps"])
        except ValueError:
            final = None  # not far enough yet
        m = read_metrics(metrics)
        if len(m["step"]):
            initial, wall = float(m["true_return"][0]), float(m["wall_s"][-1])
    teacher = config["teacher"]
    arm = f"{config['algo']} {teacher}"
    if teacher == "frozen":
        arm += f" {Path(config['reward_from']).name}"
    elif teacher != "true-reward":
        named = [
            key for key in varying if key not in TRAIN_DEFAULTS or config.get(key) != TRAIN_DEFAULTS[key]
        ]
        arm += f" {config['labels']}" + "".join(f" {key}={config.get(key)}" for key in named)
    return RunResult(
        env=config["env"],
        algo=config["algo"],
        teacher=teacher,
        labels=0 if teacher in NO_LABELS else int(config["labels"]),
        seed=int(config["seed"]),
        steps=int(config["steps"]),
        final_true_return=final,
        initial_true_return=initial,
        wall_s=wall,
        run_dir=run_dir,
        arm=arm,
    )


def normalized_score(run: RunResult, runs: list[RunResult]) -> float | None:
    """``(final − untrained) / (true-reward final − untrained)`` of a finished preference run on its task
    (module docstring); None when it has no final return yet, or its task has no true-reward run that did
    better than the untrained policy."""
    if run.teacher == "true-reward" or run.final_true_return is None:
        return None
    task = [r for r in runs if r.env == run.env]
    baseline = [r for r in task if r.teacher == "true-reward" and r.final_true_return is not None]
    baseline = [r for r in baseline if r.algo == run.algo] or baseline
    starts = [r.initial_true_return for r in task if r.initial_true_return is not None]
    if not baseline or not starts:
        return None
    untrained = float(np.mean(starts))
    scale = float(np.mean([r.final_true_return for r in baseline])) - untrained
    return (run.final_true_return - untrained) / scale if scale > 0 else None


def normalized_scores(runs: list[RunResult]) -> dict[str, dict[str, list[float]]]:
    """Per preference arm and task: the normalised scores of its finished runs, in seed order."""
    scores: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in sorted(runs, key=lambda r: r.seed):
        score = normalized_score(run, runs)
        if score is not None:
            scores[run.arm][run.env].append(score)
    return {arm: dict(tasks) for arm, tasks in scores.items()}


def full_matrix(tasks: dict[str, list[float]]) -> tuple[int, dict[str, list[float]]]:
    """The seeds per task and the tasks that give the largest full (seeds × tasks) matrix; a tie goes to more
    tasks (a task says more about the method than another seed of a task already in)."""
    counts = sorted({len(v) for v in tasks.values()})
    runs = max(counts, key=lambda k: (k * sum(len(v) >= k for v in tasks.values()), -k))
    return runs, {t: v for t, v in tasks.items() if len(v) >= runs}


def aggregate(scores: dict[str, dict[str, list[float]]], *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """IQM and mean of each arm's normalised scores over tasks × seeds, each with a 95 % stratified-bootstrap
    CI, and its performance profile (the fraction of runs scoring above τ, with a 95 % bootstrap band) at
    :data:`PROFILE_TAUS`.

    rliable needs a full (runs × tasks) matrix, so an arm whose tasks have different numbers of finished
    seeds is aggregated over the seeds-per-task count that keeps the most runs (:func:`full_matrix`): with
    three seeds on four tasks and one on a fifth, the IQM covers the four tasks × three seeds and names the
    fifth under ``tasks_left_out``, rather than dropping to one seed of each. ``per_task`` lists every task.
    """
    from rliable import library as rly
    from rliable import metrics as rly_metrics

    out = {}
    for arm, all_tasks in scores.items():
        runs, tasks = full_matrix(all_tasks)
        matrix = np.array([tasks[t][:runs] for t in sorted(tasks)]).T  # (runs, tasks)
        np.random.seed(seed)  # rliable draws its bootstrap from numpy's global generator
        point, interval = rly.get_interval_estimates(
            {arm: matrix},
            lambda x: np.array([rly_metrics.aggregate_iqm(x), rly_metrics.aggregate_mean(x)]),
            reps=BOOTSTRAP_REPS,
        )
        profile, band = rly.create_performance_profile({arm: matrix}, PROFILE_TAUS, reps=BOOTSTRAP_REPS)
        out[arm] = {
            "iqm": float(point[arm][0]),
            "ci95": [float(interval[arm][0, 0]), float(interval[arm][1, 0])],
            "mean": float(point[arm][1]),
            "mean_ci95": [float(interval[arm][0, 1]), float(interval[arm][1, 1])],
            "tasks": len(tasks),
            "runs_per_task": runs,
            "tasks_left_out": sorted(set(all_tasks) - set(tasks)),
            "per_task": {t: float(np.mean(v)) for t, v in sorted(all_tasks.items())},
            "performance_profile": {
                "tau": PROFILE_TAUS.tolist(),
                "fraction": np.asarray(profile[arm]).tolist(),
                "ci95": np.asarray(band[arm]).tolist(),
            },
        }
    return out


def write_report(paths: list[Path], out: Path) -> dict[str, Any]:
    runs = find_runs(paths)
    scores = normalized_scores(runs)
    stats = aggregate(scores) if scores else {}
    data = {
        "runs": [
            {
                "env": r.env,
                "arm": r.arm,
                "algo": r.algo,
                "teacher": r.teacher,
                "labels": r.labels,
                "steps": r.steps,
                "seed": r.seed,
                "final_true_return": r.final_true_return,
                "initial_true_return": r.initial_true_return,
                "normalized_score": normalized_score(r, runs),
                "wall_s": r.wall_s,
                "run_dir": str(r.run_dir),
            }
            for r in runs
        ],
        "summary": stats,
        "statistics": "score = (final true return - untrained) / (the task's true-reward final - untrained), "
        "untrained = mean true return of the task's runs' first logged episodes; IQM over tasks × seeds "
        f"with a 95 % stratified-bootstrap CI and performance profiles ({BOOTSTRAP_REPS} resamples), "
        "rliable (Agarwal et al. 2021)",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    out.with_suffix(".md").write_text(_markdown(runs, stats))
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
    lines += [
        "",
        "| arm | IQM normalised score | 95 % CI | tasks | runs per task |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arm, s in sorted(summary.items()):
        interval = f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}]"
        lines.append(f"| {arm} | {s['iqm']:.2f} | {interval} | {s['tasks']} | {s['runs_per_task']} |")
    for arm, s in sorted(summary.items()):
        if s["tasks_left_out"]:
            fewer = ", ".join(s["tasks_left_out"])
            lines.append(
                f"\n{arm}: {fewer} left out of the IQM (fewer than {s['runs_per_task']} finished seeds); "
                "the per-task table above still lists them."
            )
    lines += [
        "",
        "Normalised score: (final true return − untrained) / (the task's true-reward final − untrained); "
        "untrained: the mean true return of the task's first logged episodes; final: the mean over the last "
        f"10 % of steps. IQM over tasks × seeds, 95 % stratified-bootstrap CI ({BOOTSTRAP_REPS} resamples, "
        "rliable).",
    ]
    return "\n".join(lines) + "\n"


def _plot(runs: list[RunResult], stats: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r.env for r in runs})
    panels = len(envs) + (1 if stats else 0)  # a panel per task, then the performance profile
    columns = min(panels, 4)
    rows = -(-panels // columns)
    fig, panel_grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    axes = list(panel_grid.flat)
    # one colour per arm in every panel, so that an arm reads the same across tasks and in the profile
    arm_names = sorted({r.arm for r in runs})
    palette = plt.get_cmap("tab10" if len(arm_names) <= 10 else "tab20")  # an int picks the i-th colour
    colour = {arm: palette(i % palette.N) for i, arm in enumerate(arm_names)}
    for ax in axes[panels:]:
        ax.set_visible(False)
    for ax, env in zip(axes, envs):
        arms: dict[str, list[RunResult]] = defaultdict(list)
        for run in runs:
            if run.env == env:
                arms[run.arm].append(run)
        for arm, members in sorted(arms.items()):
            steps, curves = learning_curves(members)
            if not curves:
                continue
            with warnings.catch_warnings():  # steps before a run's first episode have no value yet
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(curves, axis=0)
                low, high = bootstrap_band(np.array(curves))
            ax.plot(steps, mean, color=colour[arm], label=f"{arm} ({len(curves)})")
            ax.fill_between(steps, low, high, color=colour[arm], alpha=0.2)
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("env steps")
        ax.set_ylabel("true return")
    if stats:
        ax = axes[panels - 1]
        for arm in sorted(stats):
            profile = stats[arm]["performance_profile"]
            ax.plot(profile["tau"], profile["fraction"], color=colour[arm], label=arm)
            ax.fill_between(profile["tau"], *profile["ci95"], color=colour[arm], alpha=0.2)
        ax.set_title("performance profile", fontsize=9)
        ax.set_xlabel("normalised score τ")
        ax.set_ylabel("fraction of runs > τ")
    # One legend under the panels (an arm has one colour everywhere): arm names that spell out several
    # settings are too long to sit inside a panel.
    lines = {line.get_label().split(" (")[0]: line for ax in axes[:panels] for line in ax.get_lines()}
    shown = [arm for arm in arm_names if arm in lines]
    counts = {arm: sum(r.arm == arm for r in runs) for arm in shown}
    fig.tight_layout()
    fig.legend(
        [lines[arm] for arm in shown],
        [f"{arm} ({counts[arm]} runs)" for arm in shown],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=1 if max(map(len, shown), default=0) > 40 else min(len(shown), 3) or 1,
        fontsize=7,
        frameon=False,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def learning_curves(members: list[RunResult], points: int = 50) -> tuple[np.ndarray, list[np.ndarray]]:
    """Each run's true return interpolated onto one step grid of ``points`` steps from 0 to the longest
    run's steps (NaN outside a run's logged episodes); runs with fewer than two logged rows are left out."""
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


def bootstrap_band(curves: np.ndarray, reps: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95 % bootstrap interval of the mean curve over runs; ``curves`` is ``(runs, points)``."""
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
