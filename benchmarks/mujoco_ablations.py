"""What closes the gap to the true reward? Variants of the Hopper preference run, beside the baseline.

Each variant changes one setting of `benchmarks/mujoco_feedback.py`'s oracle run (same env, algo, steps
and seed) and is compared with that benchmark's true-reward run of the same seed. Resumable; writes
benchmarks/results/mujoco_ablations.json and .png.

    python -m benchmarks.mujoco_ablations [--seed 0] [--steps 1000000]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import tyro

from benchmarks.common import RESULTS, machine_info, run_all, run_is_complete, write_json
from prefrl.metrics import final_true_return
from prefrl.plotting import plot_runs

VARIANTS: dict[str, list[str]] = {
    "labels-350": ["--labels", "350"],  # the paper's smallest synthetic budget (Fig. 2)
    "labels-1400": ["--labels", "1400"],  # the paper's largest synthetic budget (Fig. 2)
    "random-queries": ["--labels", "700", "--query-selection", "random"],  # is disagreement worth it?
}


@dataclass
class Args:
    env: str = "prefrl/Hopper-v0"
    algo: str = "ppo"
    steps: int = 1_000_000
    seed: int = 0
    parallel: int = 2
    runs_dir: Path = Path("benchmarks/runs")
    out: Path = RESULTS / "mujoco_ablations.json"


def main(args: Args) -> None:
    slug = args.env.replace("/", "_")
    base = ["--env", args.env, "--algo", args.algo, "--teacher", "oracle", "--seed", str(args.seed)]
    jobs = [
        (args.runs_dir / f"{slug}-{args.algo}-{name}-s{args.seed}", base + extra, args.steps)
        for name, extra in VARIANTS.items()
    ]
    run_all(jobs, args.parallel)
    reference = {
        "oracle-700 (baseline)": args.runs_dir / f"{slug}-{args.algo}-oracle-700-s{args.seed}",
        "true-reward": args.runs_dir / f"{slug}-{args.algo}-true-reward-0-s{args.seed}",
    }
    runs = {**reference, **{name: run_dir for name, (run_dir, _, _) in zip(VARIANTS, jobs)}}
    missing = [str(d) for d in runs.values() if not run_is_complete(d, args.steps)]
    if missing:
        raise SystemExit(
            f"incomplete runs (run benchmarks/mujoco_feedback.py first for the references): {missing}"
        )
    finals = {name: round(final_true_return(d / "metrics.csv", args.steps), 1) for name, d in runs.items()}
    true = finals["true-reward"]
    result = {
        "benchmark": "mujoco_ablations",
        "env": args.env,
        "algo": args.algo,
        "steps": args.steps,
        "seed": args.seed,
        "variants": {name: " ".join(extra) for name, extra in VARIANTS.items()},
        "final_true_return": finals,
        "ratio_to_true_reward": {name: round(v / true, 3) for name, v in finals.items()},
        "note": "one seed: a direction, not a verdict",
        "machine": machine_info(),
    }
    write_json(args.out, result)
    plot_runs(
        list(runs.values()),
        args.out.with_suffix(".png"),
        title=f"{args.env}, {args.algo}: variants, seed {args.seed}",
    )
    print(json.dumps(result["ratio_to_true_reward"], indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
