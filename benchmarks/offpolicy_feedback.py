"""Off-policy learning from few labels: SAC with PEBBLE (prefrl's default), and with PEBBLE + QPA, against
SAC on the true reward (issue 11).

Runs the committed sweeps (:mod:`prefrl.sweep`) as one grid on a local Ray, seed by seed so that each
seed's arms finish together, then reports what is finished with :func:`prefrl.report.write_report`:

* ``benchmarks/specs/offpolicy.toml``: ``prefrl/Walker2d-v0``, SAC on the true reward against SAC with
  PEBBLE alone (Lee et al. 2021: state-entropy exploration, relabelling, critic reset) from 200 oracle
  labels, 4 seeds (3 until the fourth was added, 2026-11-25), the same steps. PEBBLE alone is prefrl's
  default for off-policy agents, and the arm the headline ratio is of;
* ``offpolicy_qpa.toml``: PEBBLE plus QPA's policy-aligned queries and hybrid replay (Hu et al. 2024). It
  paid on every seed at first and was the default from 2026-11-25; rerun once the reward members'
  validation pairs were fixed (2026-11-26) it scored below PEBBLE alone, so it is an ablation arm again.
  The records also hold a third arm, PEBBLE plus SURF's pseudo-labels
  and temporal cropping (Park et al. 2022), run at commit eb81b34: it did not pay, so prefrl no longer has
  SURF and its spec is gone, but its runs stay in the report.
* ``offpolicy_qpa_no_l2.toml``: PEBBLE + QPA with the reward members' L2 penalty off (``--reward-l2 0``,
  as B-Pref trains its reward models), an ablation arm: see the spec for why;
* ``offpolicy_no_l2.toml``: PEBBLE alone without the L2 penalty, the fourth corner of that 2x2;
* ``offpolicy_qpa_bpref_fit.toml``: PEBBLE + QPA with the reward members trained as B-Pref trains them, no
  L2 and no validation hold-out (``--reward-validation-share 0``): every member learns from all labels;
* ``offpolicy_bpref_fit.toml``: PEBBLE alone with that fit, the fourth corner of QPA × reward fit;
* ``offpolicy_interval5k.toml`` and ``offpolicy_qpa_bpref_fit_interval5k.toml``: the default arm and the
  best arm with a reward-model update every 5,000 steps instead of 10,000, the change that led the Hopper
  arms (``offpolicy_hopper_interval5k.toml``).

Each spec keeps its finished runs' records in ``benchmarks/results/offpolicy_runs`` (commit that folder: a
later sitting skips what it holds). Writes ``benchmarks/results/offpolicy_feedback.{json,md,png}``:
``{runs: [{env, algo, teacher, labels, steps, seed, final_true_return, wall_s, ...}], summary: {ratio,
qpa_ratio, ratio_per_arm, ...}}``, where ``ratio`` is the default arm's mean normalised score against
the true-reward arm (the share of SAC on the true reward that STAR and PEBBLE report), over the seeds both
arms have finished, and ``qpa_ratio`` the same of PEBBLE + QPA (the headline while QPA was the default);
``status`` is ``partial`` until every run is recorded. Target: ratio ≥ 0.9. While the run
directory is here, ``offpolicy_feedback.mp4`` and ``offpolicy_feedback_filmstrip.png`` show the default
arm's final policy (seed 0); the JSON's ``film`` names the run filmed.

    python -m benchmarks.offpolicy_feedback                       # everything left to run, on every core
    python -m benchmarks.offpolicy_feedback --cpus 1 --seeds 0     # one seed of every arm, on one core
    python -m benchmarks.offpolicy_feedback --report-only          # rewrite the results from the records

The same on Hopper, with its own records and results (``benchmarks/results/offpolicy_feedback_hopper.*``):
``offpolicy_hopper.toml``, the default arm against the true reward, and
``offpolicy_hopper_qpa_bpref_fit.toml``, the arm the README recommends for Walker2d (PEBBLE + QPA with
B-Pref's fit), ``offpolicy_hopper_output_std2.toml``, the default with the learned reward scaled to std 2,
four arms that try to settle the reward sooner (``offpolicy_hopper_initial100.toml``,
``_front_loaded``, ``_fit_when_answered``, ``_interval5k``), 3 seeds each, and the two that led together
(``offpolicy_hopper_initial100_interval5k.toml``)::

    python -m benchmarks.offpolicy_feedback --out benchmarks/results/offpolicy_feedback_hopper \
        --specs benchmarks/specs/offpolicy_hopper.toml benchmarks/specs/offpolicy_hopper_qpa_bpref_fit.toml \
        benchmarks/specs/offpolicy_hopper_output_std2.toml benchmarks/specs/offpolicy_hopper_initial100.toml \
        benchmarks/specs/offpolicy_hopper_front_loaded.toml \
        benchmarks/specs/offpolicy_hopper_fit_when_answered.toml \
        benchmarks/specs/offpolicy_hopper_interval5k.toml \
        benchmarks/specs/offpolicy_hopper_initial100_interval5k.toml

and at 200k steps, with its own records and results (``offpolicy_feedback_hopper_200k.*``)::

    python -m benchmarks.offpolicy_feedback --out benchmarks/results/offpolicy_feedback_hopper_200k \
        --specs benchmarks/specs/offpolicy_hopper_200k.toml \
        benchmarks/specs/offpolicy_hopper_200k_interval5k.toml

Walker2d at 200k steps, SAC on the true reward against the best 100k arm (PEBBLE + QPA, B-Pref's fit, an
update every 5,000 steps) and the default arm, with its own records and results
(``offpolicy_feedback_200k.*``; the best arm's spec first, so that its seed 0 is filmed)::

    python -m benchmarks.offpolicy_feedback --out benchmarks/results/offpolicy_feedback_200k \
        --specs benchmarks/specs/offpolicy_200k_qpa_bpref_fit_interval5k.toml \
        benchmarks/specs/offpolicy_200k.toml benchmarks/specs/offpolicy_200k_pebble.toml \
        benchmarks/specs/offpolicy_200k_tanh.toml benchmarks/specs/offpolicy_200k_bpref_fit_tanh.toml

(the last two: the default arm with tanh units in the reward predictors, with App. A's fit and with
B-Pref's).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from benchmarks.common import (
    RESULTS,
    ROOT,
    filmstrip,
    grid,
    machine_info,
    play_final_policy,
    sweep_and_report,
    write_json,
)
from prefrl.cli import stop_signals_checkpoint
from prefrl.sweep import Sweep, SweepRun, load_spec

SPECS = Path(__file__).resolve().parent / "specs"
TARGET_RATIO = 0.9
BASELINE_ARM = "sac true-reward"
MAIN_ARM = "sac oracle 200"
"""prefrl's default off-policy arm (PEBBLE alone) as :func:`prefrl.report.find_runs` names it: settings an
arm sets away from the defaults are appended to its name, as QPA's window is."""
QPA_ARM = "sac oracle 200 policy_aligned_steps=10000"
CLIP_SECONDS = 4.0


@dataclass
class Args:
    specs: tuple[Path, ...] = (
        SPECS / "offpolicy.toml",
        SPECS / "offpolicy_qpa.toml",
        SPECS / "offpolicy_qpa_no_l2.toml",
        SPECS / "offpolicy_no_l2.toml",
        SPECS / "offpolicy_qpa_bpref_fit.toml",
        SPECS / "offpolicy_bpref_fit.toml",
        SPECS / "offpolicy_interval5k.toml",
        SPECS / "offpolicy_qpa_bpref_fit_interval5k.toml",
    )
    """Sweep specs reported together; the first holds prefrl's default arm (its seed 0 is filmed)."""
    seeds: tuple[int, ...] = ()
    """Run only these seeds this sitting (default: all); the report covers every recorded run."""
    cpus: int | None = None
    """Cores for the local Ray (default: those this process may use)."""
    report_only: bool = False
    out: Path = RESULTS / "offpolicy_feedback"


def seed_by_seed(run: SweepRun) -> tuple[int, int]:
    """Seed 0 of every arm first, the true-reward arm first within a seed (a ratio needs it)."""
    seed = int(run.args[run.args.index("--seed") + 1])
    return seed, int("true-reward" not in run.args)


def summary(report: dict[str, Any], everything: Sweep) -> dict[str, Any]:
    """The issue's summary: per preference arm, on the seeds both it and the true-reward arm have finished,
    ``ratio``, the mean normalised score (the final true return from the untrained policy's, 0, to the
    true-reward arm's, 1: :func:`prefrl.report.normalized_score`), and beside it the plain ratio of mean
    final returns, which means something only where the returns stay positive (Walker2d-v0's height term
    makes an untrained policy's return negative)."""
    finals: dict[str, dict[int, float]] = defaultdict(dict)
    scores: dict[str, dict[int, float]] = defaultdict(dict)
    steps: dict[str, set[int]] = defaultdict(set)
    for run in report["runs"]:
        if run["final_true_return"] is not None:
            finals[run["arm"]][run["seed"]] = run["final_true_return"]
            steps[run["arm"]].add(run["steps"])
        if run.get("normalized_score") is not None:
            scores[run["arm"]][run["seed"]] = run["normalized_score"]
    baseline = finals.get(BASELINE_ARM, {})
    per_arm = {}
    for arm, by_seed in sorted(scores.items()):
        seeds = sorted(set(by_seed) & set(baseline))
        if not seeds:
            continue
        mine, theirs = [finals[arm][s] for s in seeds], [baseline[s] for s in seeds]
        per_arm[arm] = {
            "ratio": float(np.mean([by_seed[s] for s in seeds])),
            "ratio_each_seed": {str(s): by_seed[s] for s in seeds},
            "return_ratio": float(np.mean(mine) / np.mean(theirs)),
            "final_true_return": _mean_std(mine),
            "true_reward_final": _mean_std(theirs),
            "seeds": seeds,
            "steps": sorted(steps[arm]),
            "normalized_iqm": report["summary"].get(arm, {}).get("iqm"),
            "normalized_iqm_ci95": report["summary"].get(arm, {}).get("ci95"),
        }
    missing = [run.name for run in everything.runs if run.recorded_steps() < run.steps]
    ratio = per_arm.get(MAIN_ARM, {}).get("ratio")
    return {
        "ratio": ratio,
        "ratio_over": f"{len(per_arm.get(MAIN_ARM, {}).get('seeds', []))} seeds",
        "ratio_is": (
            "mean normalised score, (final - untrained) / (true-reward final - untrained), of prefrl's "
            f"default off-policy arm, PEBBLE alone ({MAIN_ARM!r})"
        ),
        "qpa_ratio": per_arm.get(QPA_ARM, {}).get("ratio"),
        "qpa_ratio_over": f"{len(per_arm.get(QPA_ARM, {}).get('seeds', []))} seeds",
        "ratio_per_arm": per_arm,
        "target": {"ratio": TARGET_RATIO},
        "target_met": ratio >= TARGET_RATIO if ratio is not None and not missing else None,
        "status": "complete"
        if not missing
        else f"partial: {len(everything.runs) - len(missing)} of {len(everything.runs)} runs recorded",
        "runs_missing": missing,
    }


def _mean_std(values: list[float]) -> dict[str, float | int]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "seeds": len(values)}


def _learns_reward(run: SweepRun) -> bool:
    return run.args[run.args.index("--teacher") + 1] != "true-reward"


def film_final_policy(run: SweepRun, out: Path) -> dict[str, str] | None:
    """Clip and filmstrip of ``run``'s final policy (its first seconds), if its run directory is here."""
    if not (run.run_dir / "config.json").exists() or run.steps_done() < run.steps:
        return None
    from prefrl.labeling_gui.clips import SegmentRenderer, encode_mp4

    (episode,) = play_final_policy(run.run_dir, 1, seed=10_000)
    env = run.args[run.args.index("--env") + 1]
    renderer = SegmentRenderer(env)
    try:
        frames = renderer.frames(episode.states)[: round(CLIP_SECONDS * renderer.fps)]
        clip, strip = out.with_suffix(".mp4"), out.with_name(f"{out.stem}_filmstrip.png")
        encode_mp4(frames, clip, renderer.fps)
        filmstrip(
            frames,
            strip,
            fps=renderer.fps,
            title=f"{run.name}: the final policy's first {CLIP_SECONDS:g} s (deterministic actions)",
        )
    finally:
        renderer.close()
    return {"clip": clip.name, "filmstrip": strip.name, "filmed_run": run.name}


def main(args: Args) -> None:
    everything = grid(args.specs, order=seed_by_seed)
    todo = None
    if not args.report_only:
        runs = [r for r in everything.runs if not args.seeds or seed_by_seed(r)[0] in args.seeds]
        todo = Sweep(everything.out, runs, everything.runs_per_core)
    # Read before the report rewrites the JSON: a film made in an earlier sitting, whose run may be gone.
    earlier = args.out.with_suffix(".json")
    earlier_film = json.loads(earlier.read_text()).get("film") if earlier.exists() else None
    report = sweep_and_report(everything, todo, args.out, args.cpus)
    # The first spec holds prefrl's default off-policy arm: its seed-0 preference run is filmed.
    default = [r for r in load_spec(args.specs[0]).runs if seed_by_seed(r)[0] == 0 and _learns_reward(r)]
    film = (film_final_policy(default[0], args.out) if default else None) or earlier_film
    data = {
        **report,
        "summary": summary(report, everything),
        "film": film,
        "specs": [os.path.relpath(path, ROOT) for path in args.specs],
        "machine": machine_info(),
    }
    write_json(args.out.with_suffix(".json"), data)
    s = data["summary"]
    arms = "; ".join(
        f"{name}: {arm['ratio']:.2f} over {len(arm['seeds'])} seeds"
        for name, arm in s["ratio_per_arm"].items()  # every arm there has a ratio
    )
    print(f"{s['status']}; each arm / SAC on the true reward: {arms}")


if __name__ == "__main__":
    with stop_signals_checkpoint():  # `kill` or Ctrl-C, even when started with `&`: runs checkpoint
        main(tyro.cli(Args))
