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
arm's final policy (seed 0); the JSON's ``film`` names the run filmed. A ratio of true returns does not
say whether an agent walks (on ``prefrl/Walker2d-v0`` standing a second and heaving along the floor earns
SAC's 200k return), so every finished run whose directory is here also has its final policy's gait judged
from the simulator state (:func:`judge_final_gaits`, :mod:`prefrl.envs.gait`: upright by the v5 env's own
rule at 90 % of the steps, forward at 0.5 m/s or more), kept as ``gait.json`` beside its record; each arm's
``gait`` in the summary, and a table in the ``.md``, say how many of its judged seeds walk.

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

Walker2d at 500k steps, PEBBLE's walker-walk budget, the default arm against SAC on the true reward, with
its own records and results (``offpolicy_feedback_500k.*``; about 105 min a run a core)::

    python -m benchmarks.offpolicy_feedback --out benchmarks/results/offpolicy_feedback_500k \
        --specs benchmarks/specs/offpolicy_500k_pebble.toml benchmarks/specs/offpolicy_500k.toml
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
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
from prefrl.checkpoint import latest_checkpoint, read_state
from prefrl.cli import stop_signals_checkpoint
from prefrl.envs.gait import GaitRule, judge_gait
from prefrl.sweep import Sweep, SweepRun, load_spec

SPECS = Path(__file__).resolve().parent / "specs"
TARGET_RATIO = 0.9
BASELINE_ARM = "sac true-reward"
MAIN_ARM = "sac oracle 200"
"""prefrl's default off-policy arm (PEBBLE alone) as :func:`prefrl.report.find_runs` names it: settings an
arm sets away from the defaults are appended to its name, as QPA's window is."""
QPA_ARM = "sac oracle 200 policy_aligned_steps=10000"
CLIP_SECONDS = 4.0
GAIT_FILE = "gait.json"
"""Beside a run's kept record: the final policy's gait (:func:`judge_final_gaits`), which outlives the run."""
GAIT_EPISODES = 5
GAIT_SEED = 10_000
"""The env seed of the judged episodes, one no run trains on (the clips use it too)."""


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
    gaits: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for run in report["runs"]:
        if run.get("gait") is not None:
            gaits[run["arm"]][run["seed"]] = run["gait"]
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
            "gait": _arm_gait(gaits[arm], seeds),
            "true_reward_gait": _arm_gait(gaits[BASELINE_ARM], seeds),
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


def _arm_gait(by_seed: dict[int, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """An arm's gaits over those of ``seeds`` that were judged: a seed walks when most of its episodes do."""
    judged = [by_seed[s] for s in seeds if s in by_seed]
    return {
        "seeds_judged": len(judged),
        "seeds_walking": sum(g["walks_share"] > 0.5 for g in judged),
        "upright_share": float(np.mean([g["upright_share"] for g in judged])) if judged else None,
        "forward_speed": float(np.mean([g["forward_speed"] for g in judged])) if judged else None,
    }


def judge_final_gaits(everything: Sweep) -> None:
    """Judges the final policy of every finished run whose directory is here and whose kept record has no
    gait yet (:func:`prefrl.envs.gait.judge_gait`: upright by the v5 env's own rule at 90 % of the steps,
    forward at 0.5 m/s or more): ``GAIT_EPISODES`` deterministic episodes on an unseen seed, written to
    ``gait.json`` beside the record, so that the judgement stays when the run directory is gone."""
    for run in everything.runs:
        if run.record_dir is None or (run.record_dir / GAIT_FILE).exists():
            continue
        checkpoint = latest_checkpoint(run.run_dir)
        if checkpoint is None or int(read_state(checkpoint)["step"]) < run.steps:
            continue
        env = run.args[run.args.index("--env") + 1]
        episodes = play_final_policy(run.run_dir, GAIT_EPISODES, seed=GAIT_SEED)
        each = [
            {**asdict(judge_gait(env, episode.states)), "true_return": episode.true_return}
            for episode in episodes
        ]
        write_json(
            run.record_dir / GAIT_FILE,
            {
                "rule": asdict(GaitRule()),
                "episodes": len(each),
                "seed": GAIT_SEED,
                "deterministic": True,
                "upright_share": float(np.mean([e["upright_share"] for e in each])),
                "forward_speed": float(np.mean([e["forward_speed"] for e in each])),
                "walks_share": float(np.mean([e["walks"] for e in each])),
                "each_episode": each,
            },
        )


def add_gaits(report: dict[str, Any]) -> None:
    """Puts each recorded run's judged gait, where there is one, into its entry of ``report["runs"]``."""
    for run in report["runs"]:
        path = ROOT / run["run_dir"] / GAIT_FILE
        gait = json.loads(path.read_text()) if path.exists() else None
        run["gait"] = None if gait is None else {k: v for k, v in gait.items() if k != "each_episode"}


def gait_table(summary: dict[str, Any]) -> str:
    """The report's Markdown table of the arms' gaits."""
    rows = [
        "| arm | seeds judged | walking | upright share | forward m/s | SAC on the true reward: walking, "
        "upright, m/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, arm in summary["ratio_per_arm"].items():
        mine, theirs = arm["gait"], arm["true_reward_gait"]
        baseline = (
            f"{theirs['seeds_walking']} of {theirs['seeds_judged']}, {_fmt(theirs['upright_share'])}, "
            f"{_fmt(theirs['forward_speed'])}"
            if theirs["seeds_judged"]
            else "not judged"
        )
        rows.append(
            f"| {name} | {mine['seeds_judged']} | {mine['seeds_walking']} | {_fmt(mine['upright_share'])} "
            f"| {_fmt(mine['forward_speed'])} | {baseline} |"
        )
    rule = GaitRule()
    return (
        "\n".join(rows)
        + f"\n\nGait of the final policy ({GAIT_EPISODES} deterministic episodes, env seed {GAIT_SEED}; only "
        "runs whose directory was here when it was judged): a seed walks when most of its episodes keep the "
        f"torso upright by the v5 env's own rule at {rule.min_upright_share:.0%} of the steps or more and "
        f"move forward at {rule.min_speed:g} m/s or more (envs/gait.py, installed as prefrl.envs.gait).\n"
    )


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


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
    judge_final_gaits(everything)
    add_gaits(report)
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
    with args.out.with_suffix(".md").open("a") as md:
        md.write("\n" + gait_table(s))
    arms = "; ".join(
        f"{name}: {arm['ratio']:.2f} over {len(arm['seeds'])} seeds "
        f"(walking: {arm['gait']['seeds_walking']} of {arm['gait']['seeds_judged']} judged)"
        for name, arm in s["ratio_per_arm"].items()  # every arm there has a ratio
    )
    print(f"{s['status']}; each arm / SAC on the true reward: {arms}")


if __name__ == "__main__":
    with stop_signals_checkpoint():  # `kill` or Ctrl-C, even when started with `&`: runs checkpoint
        main(tyro.cli(Args))
