"""What learning from preferences costs in wall time: a whole preference run against the same agent on the
true reward, same env, steps and seed, each arm given the same CPU set (the arms run one after the other).

MuJoCo: Hopper (fixed-horizon variant), PPO, 1M steps, 700 oracle labels, with asynchronous reward updates
(the default) and, as the before picture, synchronous ones. Atari: Pong A2C, steps per second over the RL
steps after pre-training (``--atari``; about 40 min on 2 cores). Writes benchmarks/results/wall_time.json:

    {runs: [{env, algo, teacher, reward_updates, steps, wall_s, cpus, complete}],
     summary: {mujoco_wall_ratio, mujoco_wall_ratio_sync, atari_steps_per_s_ratio, status}}

Resumable: rerun the same command; finished arms are kept and an interrupted one goes on from its checkpoint
(its wall time adds up across sittings, so measure on an otherwise idle machine). Rows of arms measured in an
earlier sitting stay in the JSON when their run directories are gone, so the arms can be run in different
sittings (``--arms`` with no value runs no MuJoCo arm).

    python -m benchmarks.wall_time [--steps 1000000] [--arms true-reward async sync] [--atari]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import tyro

from benchmarks.common import RESULTS, machine_info, run_all, run_is_complete, write_json
from prefrl.checkpoint import latest_checkpoint, read_state
from prefrl.metrics import read_metrics


@dataclass
class Args:
    steps: int = 1_000_000
    seed: int = 0
    labels: int = 700
    arms: list[str] = field(default_factory=lambda: ["true-reward", "async", "sync"])
    """MuJoCo arms to run, in order: true-reward, async (preferences, background updates), sync."""
    atari: bool = False
    """Also run the Pong pair (A2C, 3.3k labels)."""
    atari_steps: int = 500_000
    atari_pretrain_epochs: int = 10
    """The measure is RL steps per second after pre-training, which the pre-training's length does not
    change: 10 epochs instead of the paper's 200 (about 80 min on 2 cores) keep the benchmark short."""
    runs_dir: Path = Path("benchmarks/runs/wall_time")
    out: Path = RESULTS / "wall_time.json"
    report_only: bool = False
    max_minutes: float | None = None
    """Stop cleanly after this long (resume with the same command)."""


HOPPER, PONG = "prefrl/Hopper-v0", "prefrl/PongNoScore-v0"


def arms(args: Args) -> list[tuple[Path, dict[str, object], list[str], int]]:
    """(run dir, record, train args, steps) of every arm asked for, in the order they run."""
    out = []
    for arm in args.arms:
        teacher = "true-reward" if arm == "true-reward" else "oracle"
        updates = "sync" if arm == "sync" else "async"
        train = ["--env", HOPPER, "--algo", "ppo", "--teacher", teacher, "--seed", str(args.seed)]
        if teacher != "true-reward":
            train += ["--labels", str(args.labels), "--reward-updates", updates]
        record = {"env": HOPPER, "algo": "ppo", "teacher": teacher, "reward_updates": updates}
        out.append((args.runs_dir / f"hopper-ppo-{arm}-s{args.seed}", record, train, args.steps))
    if args.atari:
        for teacher in ("true-reward", "oracle"):
            train = ["--env", PONG, "--algo", "a2c", "--teacher", teacher, "--seed", str(args.seed)]
            if teacher == "oracle":
                train += ["--labels", "3300", "--pretrain-epochs", str(args.atari_pretrain_epochs)]
            record = {"env": PONG, "algo": "a2c", "teacher": teacher, "reward_updates": "async"}
            out.append((args.runs_dir / f"pong-a2c-{teacher}-s{args.seed}", record, train, args.atari_steps))
    return out


def main(args: Args) -> None:
    jobs = arms(args)
    if not args.report_only:
        # One arm at a time, each on the whole machine: the same CPU set for every arm.
        run_all(
            [(run_dir, train, steps) for run_dir, _, train, steps in jobs],
            parallel=1,
            on_progress=lambda: report(args, jobs),
            max_minutes=args.max_minutes,
        )
    report(args, jobs)


def arm_key(row: dict[str, object]) -> tuple[object, ...]:
    return row["env"], row["teacher"], row["reward_updates"]


def report(args: Args, jobs: list[tuple[Path, dict[str, object], list[str], int]]) -> None:
    """Write the JSON from the arms' run directories; an arm whose directory is gone (run directories are
    not committed) keeps the row recorded in an earlier sitting."""
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    earlier = previous.get("runs", [])
    runs = []
    here = set()
    for run_dir, record, _, steps in jobs:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            continue
        here.add(arm_key(record))
        state = read_state(checkpoint)
        row = {**record, "steps": int(state["step"]), "wall_s": round(float(state["wall_s"]), 1)}
        row["cpus"] = sorted(os.sched_getaffinity(0))
        row["complete"] = run_is_complete(run_dir, steps)
        row["measured"] = date.fromtimestamp(checkpoint.stat().st_mtime).isoformat()
        if record["env"] == PONG:
            row["rl_steps_per_s"] = _rl_steps_per_s(run_dir)
        runs.append(row)
    # A row measured again in another sitting is kept, not dropped: published figures stay beside the new
    # ones (a row of the same sitting is the same run, reported before it went on).
    measured = {arm_key(row): row["measured"] for row in runs}
    superseded = previous.get("superseded", []) + [
        row for row in earlier if arm_key(row) in here and row.get("measured") != measured[arm_key(row)]
    ]
    runs = [row for row in earlier if arm_key(row) not in here] + runs

    def wall(teacher: str, updates: str) -> float | None:
        for row in runs:
            if (row["env"], row["teacher"], row["reward_updates"], row["complete"]) == (
                HOPPER,
                teacher,
                updates,
                True,
            ):
                return float(row["wall_s"])
        return None

    base = wall("true-reward", "async")
    ratio = lambda arm: None if base is None or wall("oracle", arm) is None else wall("oracle", arm) / base  # noqa: E731
    pong = {row["teacher"]: row.get("rl_steps_per_s") for row in runs if row["env"] == PONG}
    atari_ratio = None
    if pong.get("oracle") and pong.get("true-reward"):
        atari_ratio = pong["oracle"] / pong["true-reward"]
    asked = {arm_key(record) for _, record, _, _ in jobs}
    complete = all(row["complete"] for row in runs) and asked <= {arm_key(row) for row in runs}
    hopper_dirs = {record["teacher"]: run_dir for run_dir, record, _, _ in jobs if record["env"] == HOPPER}
    extra = previous.get("summary", {}).get("mujoco_extra_wall_s")
    if "true-reward" in hopper_dirs and "oracle" in hopper_dirs:
        extra = _extra_wall_s(hopper_dirs["oracle"], hopper_dirs["true-reward"]) or extra
    summary = {
        "mujoco_wall_ratio": ratio("async"),
        "mujoco_wall_ratio_sync": ratio("sync"),
        "atari_steps_per_s_ratio": atari_ratio,
        "status": "complete" if complete else "partial",
        "targets": {"mujoco_wall_ratio": "<= 1.05", "atari_steps_per_s_ratio": ">= 0.8"},
        "mujoco_extra_wall_s": extra,
    }
    out = {"runs": runs, "summary": summary, "machine": machine_info(), "superseded": superseded}
    write_json(args.out, out)


def _extra_wall_s(preference_dir: Path, baseline_dir: Path) -> dict[str, list[float]] | None:
    """Where the preference arm's extra wall time accrues: its wall seconds less the true-reward arm's at the
    same steps, every 100k steps. A flat line after the start is a fixed start-up cost (random-policy
    segments, the first fit); a rising one is a per-step cost."""
    paths = [preference_dir / "metrics.csv", baseline_dir / "metrics.csv"]
    if not all(path.exists() for path in paths):
        return None
    (ours, base) = (read_metrics(path) for path in paths)
    marks = np.arange(100_000, int(min(ours["step"][-1], base["step"][-1])) + 1, 100_000)
    if len(marks) == 0:
        return None
    gap = np.interp(marks, ours["step"], ours["wall_s"]) - np.interp(marks, base["step"], base["wall_s"])
    return {"step": [int(m) for m in marks], "seconds": [round(float(g), 1) for g in gap]}


def _rl_steps_per_s(run_dir: Path) -> float | None:
    """Env steps per wall second over the RL part of a run (pre-training excluded)."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return None
    m = read_metrics(path)
    if len(m["step"]) < 2:
        return None
    return float(np.diff(m["step"][[0, -1]])[0] / np.diff(m["wall_s"][[0, -1]])[0])


if __name__ == "__main__":
    main(tyro.cli(Args))
