"""Label sources against each other, online: what an agent learns from each (issue 13).

The same task (``prefrl/Hopper-v0``, PPO, 700 labels, 1M steps, 3 seeds) trained from the oracle, from each of
BPref's noisy teachers (Lee et al. 2021: stochastic, myopic, mistake, skip, equal) and from a scripted person
answering through the labeling GUI (Christiano et al. 2017, §3.1, human against synthetic labels, with a
simulated person), beside PPO on the true reward, which fixes each run's normalised score
(:func:`prefrl.report.normalized_score`: 0 = the untrained policy, 1 = RL on the true reward).

* The synthetic teachers and the true-reward arm are the sweep ``benchmarks/specs/teachers_online.toml``
  (:mod:`prefrl.sweep`: finished runs skipped, interrupted ones resumed).
* The scripted person's runs are ``prefrl train --teacher human`` with the spec's settings, into the same
  ``out`` and named as the sweep names its runs (so ``prefrl report OUT`` includes them), each taught by
  :func:`prefrl.labeling_gui.scripted.train_with_scripted_person`: the run's labeling server in a
  subprocess, and a :class:`~prefrl.labeling_gui.scripted.ScriptedLabeler` claiming pairs and answering them
  over HTTP. The person prefers the clip with the higher true reward per step (the Hopper's instructions:
  further right, then taller), with BPref's noise: Boltzmann-rational with ``--person-beta`` 50 on that
  score, then a mistake with probability ``--person-epsilon`` 0.05. On the 2,091 pairs the three 1M-step
  oracle runs of ``benchmarks/mujoco_feedback.py`` asked about (disagreement-selected, so mostly close
  calls) that model gets 10.4 % wrong: 6 % from close calls and the rest from mistakes. By default it answers
  as soon as a pair is claimable, so it keeps up with the agent as the synthetic teachers do, whatever the
  machine's speed (only queries asked in a run's last moments can go unanswered: ``labels`` in the JSON);
  ``--pace-s 3 5`` makes it wait as a person would, and then it falls behind a fast agent. Every source sees
  the same 60-step segments (the spec's ``segment-length``); clips are not rendered unless ``--clips``.

Resumable from what is committed: each finished run's record (config, spec, metrics and the statistics of
its answers, tens of kB) is kept in the spec's ``keep``, ``benchmarks/results/teachers_online_runs`` (a
smaller piece's in ``…-STEPS-steps``); a run recorded there is not run again, and the report reads it when
its run directory is gone. A report that would find no run at all leaves the published JSON as it is.

Writes ``benchmarks/results/teachers_online.json`` (``{partial, runs_done, runs_not_done, sources: {name:
{normalized: {iqm, iqm_ci95, mean, mean_ci95, per_seed}, final_true_return, labels, curve}}, ...}``) and
``.png`` (learning curves; normalised final scores). ``partial`` is true unless every run of the full
benchmark (the spec's steps and seeds, every source) has finished. Results of another piece (steps, seeds,
sources) published earlier in the JSON are kept in its ``earlier`` list.

    python -m benchmarks.teachers_online                          # everything (≈ 8 core-hours), resumable
    python -m benchmarks.teachers_online --steps 100000 --seeds 0  # a smaller piece, in OUT-100000-steps
    python -m benchmarks.teachers_online --report-only            # rewrite the JSON/PNG from the runs
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from benchmarks.common import RESULTS, machine_info, write_json
from prefrl.cli import stop_signals_checkpoint
from prefrl.config import ConfigError
from prefrl.label_store import LabelStore
from prefrl.labeling_gui.scripted import NoisyChoice, train_with_scripted_person, true_reward_per_step
from prefrl.report import (
    RunResult,
    aggregate,
    bootstrap_band,
    find_runs,
    learning_curves,
    normalized_score,
)
from prefrl.sweep import Sweep, SweepRun, run_sweep, sweep_from_spec
from prefrl.teachers import Preference

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SPEC = Path("benchmarks/specs/teachers_online.toml")
PERSON = "scripted-person"
"""The source name of the scripted person's runs (their teacher is ``human``)."""
BASELINE = "true-reward"
LABEL_STATS = "labels.json"
"""Kept beside a finished run's record: :func:`label_stats` of its answers (its label database is not)."""


@dataclass
class Args:
    spec: Path = SPEC
    """The sweep spec of the synthetic teachers and the true-reward arm."""
    steps: int | None = None
    """Env steps per run (default: the spec's); other than the spec's, runs go to OUT-STEPS-steps."""
    seeds: list[int] | None = None
    """Seeds (default: the spec's)."""
    sources: list[str] | None = None
    """Label sources (default: the spec's teachers and scripted-person); the true reward always runs."""
    parallel: int | None = None
    """The scripted person's runs at a time (default: the cores this process may use)."""
    person_beta: float = 50.0
    """The person's BPref rationality on differences of true reward per step."""
    person_epsilon: float = 0.05
    """The person's BPref mistake rate."""
    pace_s: tuple[float, float] | None = None
    """Seconds the person waits before each answer, drawn uniformly (e.g. 3 5); default: none."""
    clips: bool = False
    """Render the clips of the scripted person's queries, as for people (the person reads the segments)."""
    report_only: bool = False
    """Only rewrite the JSON/PNG from the runs as they are now."""
    out: Path = RESULTS / "teachers_online.json"


# ------------------------------------------------------------------------------------------- the runs
def read_spec(args: Args) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the spec file's keys, those of this invocation)``: steps, seeds and teachers as asked; a step count
    other than the spec's goes to its own ``out`` (a run's settings never change under it)."""
    full = tomllib.loads(args.spec.read_text())
    spec = {**full, "grid": dict(full["grid"])}
    teachers = [t for t in full["grid"]["teacher"] if t != BASELINE]
    sources = args.sources if args.sources is not None else [*teachers, PERSON]
    unknown = set(sources) - {*teachers, PERSON}
    if unknown:
        raise ConfigError(f"unknown sources {', '.join(sorted(unknown))}; choose from {teachers + [PERSON]}")
    spec["grid"]["teacher"] = [BASELINE, *(t for t in teachers if t in sources)]
    spec["sources"] = sources
    if args.seeds is not None:
        spec["seeds"] = args.seeds
    if args.steps is not None and args.steps != full.get("steps"):
        spec["steps"], spec["out"] = args.steps, f"{full['out']}-{args.steps}-steps"
        if full.get("keep"):
            spec["keep"] = f"{full['keep']}-{args.steps}-steps"
    return full, spec


def sweeps(spec: dict[str, Any], where: Path) -> tuple[Sweep, list[SweepRun]]:
    """The sweep of the synthetic teachers and the true reward, and the scripted person's runs: the same
    settings with ``--teacher human``, checked as the sweep checks its own."""
    sweep_keys = {k: v for k, v in spec.items() if k != "sources"}
    synthetic = sweep_from_spec(sweep_keys, where=str(where))
    person: list[SweepRun] = []
    if PERSON in spec["sources"]:
        human = {**sweep_keys, "grid": {**sweep_keys["grid"], "teacher": ["human"]}}
        person = sweep_from_spec(human, where=f"{where} (the scripted person's runs)").runs
    return synthetic, person


def run_person(runs: Sequence[SweepRun], args: Args) -> dict[str, str]:
    """The scripted person's unfinished runs, ``parallel`` at a time; each run's end by name."""
    todo = [run for run in runs if not run.finished]
    status = {run.name: "skipped (finished earlier)" for run in runs if run.finished}
    if not todo:
        return status
    stop = threading.Event()

    def teach(run: SweepRun) -> str:
        if stop.is_set():
            return "not started"
        seed = int(run.args[run.args.index("--seed") + 1])
        person = NoisyChoice(
            true_reward_per_step,
            beta=args.person_beta,
            epsilon=args.person_epsilon,
            rng=np.random.default_rng(seed),
        )
        print(f"{run.name}: the scripted person labels through the GUI (log: {run.log})", flush=True)
        try:
            code = train_with_scripted_person(
                run.command(),
                run.run_dir,
                person,
                log=run.log,
                clips=args.clips,
                pace_s=args.pace_s,
                rng=np.random.default_rng(seed + 1),
                stop=stop,
            )
        except RuntimeError as err:
            return f"failed ({err})"
        if code == 0 and run.finished:
            return "finished"
        return (
            "interrupted (resume: run the same command again)" if stop.is_set() else f"failed (exit {code})"
        )

    parallel = args.parallel or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {run.name: pool.submit(teach, run) for run in todo}
        try:
            for name, future in futures.items():
                status[name] = future.result()
        except KeyboardInterrupt:
            stop.set()  # each trainer writes its checkpoint and exits
            raise
    return status


def keep_records(runs: Sequence[SweepRun]) -> None:
    """Copy each finished run's record to the spec's ``keep`` (the sweep does so for its own runs, not for
    the scripted person's), with the statistics of its answers, which the record's files do not hold."""
    for run in runs:
        if run.record_dir is None or not (run.run_dir / "config.json").exists() or not run.finished:
            continue
        run.keep_record()
        stats = run.record_dir / LABEL_STATS
        if (run.run_dir / "labels.sqlite").exists() and not stats.exists():
            tmp = stats.with_name(f".{LABEL_STATS}.tmp")
            tmp.write_text(json.dumps(label_stats(run.run_dir), indent=2) + "\n")
            os.replace(tmp, stats)


def run_directory(run: SweepRun) -> Path | None:
    """Where a run is read from: its directory while it exists, else its kept record (None: neither)."""
    if (run.run_dir / "config.json").exists():
        return run.run_dir
    if run.record_dir is not None and run.recorded_steps() > 0:
        return run.record_dir
    return None


# ----------------------------------------------------------------------------------------- the report
def source_of(run: RunResult) -> str:
    return PERSON if run.teacher == "human" else run.teacher


def label_stats(run_dir: Path) -> dict[str, Any]:
    """The answers a run received: how many, and how they compare with the oracle's (from a kept record,
    the figures kept with it)."""
    path = run_dir / "labels.sqlite"
    if not path.exists():
        kept = run_dir / LABEL_STATS
        return json.loads(kept.read_text()) if kept.exists() else {"answers": 0}
    with LabelStore(path) as store:
        answered = list(store.answered_pairs())
        seconds = [r["seconds"] for r in store.answer_records() if r["repeat_of"] is None]
    truth = np.array([np.sign(q.left.true_return - q.right.true_return) for q, _ in answered])
    choice = np.array([int(p) for _, p in answered])
    decided = (truth != 0) & np.isin(choice, [Preference.LEFT, Preference.RIGHT])
    agree = np.where(choice == Preference.LEFT, 1, -1) == truth
    n = max(len(answered), 1)
    return {
        "answers": len(answered),
        "agreement_with_oracle": float(agree[decided].mean()) if decided.any() else None,
        "equal_share": float(np.sum(choice == Preference.EQUAL) / n),
        "skip_share": float(np.sum(choice == Preference.SKIP) / n),
        "seconds_per_answer": float(np.mean(seconds)) if seconds else None,
    }


def summarise(
    args: Args, full: dict[str, Any], spec: dict[str, Any], planned: list[SweepRun]
) -> dict[str, Any]:
    out_dir = Path(spec["out"])
    dirs = [d for run in planned if (d := run_directory(run)) is not None]
    runs = find_runs(dirs) if dirs else []
    done = sorted(run.name for run in planned if run.finished)
    not_done = {run.name: f"{run.steps_done():,}/{run.steps:,} steps" for run in planned if not run.finished}
    is_full = (
        spec["steps"] == full["steps"]
        and set(full.get("seeds", [0])) <= set(spec.get("seeds", [0]))
        and set(spec["sources"]) == {*(t for t in full["grid"]["teacher"] if t != BASELINE), PERSON}
    )
    by_source: dict[str, list[RunResult]] = {}
    for run in sorted(runs, key=lambda r: r.seed):
        by_source.setdefault(source_of(run), []).append(run)
    finished = {
        source: [r for r in members if r.run_dir.name in done and r.final_true_return is not None]
        for source, members in by_source.items()
    }
    scores: dict[str, dict[str, list[float]]] = {}  # {source: {env: [normalised score per seed]}}
    for source, members in finished.items():
        values = [s for r in members if (s := normalized_score(r, runs)) is not None]
        if source != BASELINE and values:
            scores[source] = {members[0].env: values}
    stats = aggregate(scores) if scores else {}
    sources = {}
    for source in [BASELINE, *(t for t in full["grid"]["teacher"] if t != BASELINE), PERSON]:
        members = by_source.get(source, [])
        if not members:
            continue
        ended = finished[source]
        returns = [float(r.final_true_return) for r in ended if r.final_true_return is not None]
        entry: dict[str, Any] = {
            "teacher": "human" if source == PERSON else source,
            "runs": [r.run_dir.name for r in members],
            "finished": len(ended),
            "final_true_return": {
                "mean": float(np.mean(returns)) if returns else None,
                "std": float(np.std(returns)) if returns else None,
                "per_seed": {r.seed: r.final_true_return for r in ended},
            },
            "curve": curve(members),
        }
        if source != BASELINE:
            agg = stats.get(source, {})
            entry["normalized"] = {
                "iqm": agg.get("iqm"),
                "iqm_ci95": agg.get("ci95"),
                "mean": agg.get("mean"),
                "mean_ci95": agg.get("mean_ci95"),
                "per_seed": {r.seed: normalized_score(r, runs) for r in ended},
            }
            entry["labels"] = [label_stats(r.run_dir) | {"seed": r.seed} for r in members]
        sources[source] = entry
    partial = not (is_full and not not_done)
    return {
        "partial": partial,
        "runs_done": done,
        "runs_not_done": not_done,
        "note": note(spec, full) if partial else "the full benchmark",
        "task": {
            "env": spec["grid"]["env"],
            "algo": spec["grid"]["algo"],
            "labels": spec["grid"]["labels"],
            "steps": spec["steps"],
            "seeds": spec.get("seeds", [0]),
            "settings": spec.get("settings", {}),
        },
        "full_benchmark": {"steps": full["steps"], "seeds": full.get("seeds", [0]), "spec": str(args.spec)},
        "runs_dir": str(out_dir),
        "records": spec.get("keep"),
        "sources": sources,
        "scripted_person": {
            "score": "true reward per step of the segment (true_reward_per_step)",
            "beta": args.person_beta,
            "epsilon": args.person_epsilon,
            "pace_s": list(args.pace_s) if args.pace_s else None,
            "clips_rendered": args.clips,
            "path": "prefrl train --teacher human; prefrl label (subprocess); ScriptedLabeler over HTTP",
        },
        "statistics": "normalised score = (final true return - untrained) / (true-reward arm's final - "
        "untrained), prefrl.report.normalized_score; final = mean true return over the last 10 % of steps; "
        "IQM and mean over seeds with 95 % stratified-bootstrap CIs (rliable); curves: mean true return with "
        "a 95 % bootstrap band over seeds",
        "command": " ".join(  # what runs (or ran) this piece
            ["python -m benchmarks.teachers_online", *(a for a in sys.argv[1:] if a != "--report-only")]
        ),
        "machine": {**machine_info(), "cores_this_process_may_use": len(os.sched_getaffinity(0))},
    }


def earlier_pieces(out: Path, results: dict[str, Any]) -> list[dict[str, Any]]:
    """Results published at ``out`` for another piece (steps, seeds, sources), kept beside the new ones
    rather than overwritten: the earlier ones, then the one ``out`` holds now if its piece differs."""
    if not out.exists():
        return []
    previous = json.loads(out.read_text())
    earlier: list[dict[str, Any]] = previous.pop("earlier", [])
    piece = lambda r: (r["task"], sorted(r["sources"]))  # noqa: E731
    if piece(previous) != piece(results):
        earlier.append(previous)
    return earlier


def note(spec: dict[str, Any], full: dict[str, Any]) -> str:
    seeds = spec.get("seeds", [0])
    text = (
        f"a piece of the benchmark: {spec['steps']:,} steps, seeds {seeds}, sources {spec['sources']}; the "
        f"full benchmark is {full['steps']:,} steps, seeds {full.get('seeds', [0])}, every source"
    )
    if len(seeds) == 1:
        text += "; with one seed per source each CI is a single point and the order is within seed noise"
    return text


def curve(members: list[RunResult], points: int = 41) -> dict[str, Any]:
    grid, curves = learning_curves(members, points)
    if not curves:
        return {}
    with warnings.catch_warnings():  # steps before a run's first episode have no value yet
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(curves, axis=0)
        low, high = bootstrap_band(np.array(curves))

    def rounded(values: np.ndarray) -> list[float | None]:
        return [None if np.isnan(v) else round(float(v), 1) for v in values]

    return {
        "step": grid.astype(int).tolist(),
        "true_return": rounded(mean),
        "ci95": [rounded(low), rounded(high)],
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_curve, ax_score) = plt.subplots(1, 2, figsize=(12, 4.4), width_ratios=(3, 2))
    names = list(results["sources"])
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    for name, entry in results["sources"].items():
        c = entry["curve"]
        if not c:
            continue
        mean = np.array(c["true_return"], dtype=float)
        ax_curve.plot(c["step"], mean, color=colours[name], label=f"{name} ({len(entry['runs'])})")
        low, high = (np.array(v, dtype=float) for v in c["ci95"])
        ax_curve.fill_between(c["step"], low, high, color=colours[name], alpha=0.15)
    ax_curve.set_xlabel("env steps")
    ax_curve.set_ylabel("true episode return")
    ax_curve.set_title("learning curves (mean, 95 % bootstrap band; runs)", fontsize=9)
    ax_curve.legend(fontsize=7)
    scored = [n for n in names if n != BASELINE]
    for i, name in enumerate(scored):
        norm = results["sources"][name]["normalized"]
        seeds = [v for v in norm["per_seed"].values() if v is not None]
        ax_score.scatter([i - 0.2] * len(seeds), seeds, color=colours[name], alpha=0.5, s=14)
        if norm["iqm"] is not None:
            low, high = norm["iqm_ci95"]
            ax_score.errorbar(i, norm["iqm"], yerr=[[norm["iqm"] - low], [high - norm["iqm"]]], fmt="o",
                              color=colours[name], capsize=4)  # fmt: skip
            ax_score.scatter([i + 0.2], [norm["mean"]], marker="x", color=colours[name])
    ax_score.axhline(1.0, color="grey", lw=0.8, ls="--")
    ax_score.axhline(0.0, color="grey", lw=0.8)
    ax_score.set_xticks(range(len(scored)), scored, rotation=30, ha="right", fontsize=8)
    ax_score.set_ylabel("normalised final score")
    ax_score.set_title("IQM with 95 % CI; ×: mean; dots: seeds", fontsize=9)
    task = results["task"]
    title = f"{task['env'][0]}, {task['algo'][0]}, {task['labels'][0]} labels, {task['steps']:,} steps"
    fig.suptitle(title + (" (partial)" if results["partial"] else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: Args) -> int:
    full, spec = read_spec(args)
    synthetic, person = sweeps(spec, args.spec)
    planned = [*synthetic.runs, *person]
    failed: dict[str, str] = {}
    if not args.report_only:
        try:
            status = run_sweep(synthetic)
            status.update(run_person(person, args))
        except KeyboardInterrupt:
            print("interrupted: run the same command again to continue", file=sys.stderr)
            return 130
        failed = {name: s for name, s in status.items() if s.startswith("failed")}
        for name, s in failed.items():
            print(f"{name}: {s}; see {Path(spec['out']) / name / 'train.log'}", file=sys.stderr)
    keep_records(planned)
    results = summarise(args, full, spec, planned)
    if not results["sources"]:
        print(
            f"teachers_online: no run of this piece in {spec['out']} nor in its records "
            f"({spec.get('keep')}): nothing to report; {args.out} left as it is",
            file=sys.stderr,
        )
        return 1
    results["earlier"] = earlier_pieces(args.out, results)
    write_json(args.out, results)
    plot(results, args.out.with_suffix(".png"))
    for name, entry in results["sources"].items():
        norm = entry.get("normalized", {})
        finals = entry["final_true_return"]
        line = f"{name:>16}: {entry['finished']}/{len(entry['runs'])} runs done"
        if finals["mean"] is not None:
            line += f", final true return {finals['mean']:.0f} ± {finals['std']:.0f}"
        if norm.get("iqm") is not None:
            line += (
                f", normalised IQM {norm['iqm']:.2f} [{norm['iqm_ci95'][0]:.2f}, {norm['iqm_ci95'][1]:.2f}]"
            )
            line += f", mean {norm['mean']:.2f}"
        print(line)
    whole = results["full_benchmark"]
    print(
        f"partial: {results['partial']} ({len(results['runs_done'])} of the {len(planned)} runs of this "
        f"piece done, {spec['steps']:,} steps, seeds {spec.get('seeds', [0])}; the full benchmark: "
        f"{whole['steps']:,} steps, seeds {whole['seeds']}, every source)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    with stop_signals_checkpoint():  # `kill` or Ctrl-C, even when started with `&`: runs checkpoint
        raise SystemExit(main(tyro.cli(Args)))
