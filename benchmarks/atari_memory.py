"""Resident memory of an Atari preference set of 3,000 labelled pairs (Christiano et al. 2017, App. A.2).

The paper keeps the newest 3,000 labels. Kept as stacks (``PreferenceDataset``), each 25-step segment of
84×84×4 observations is 705 kB and 3,000 pairs take 4.2 GB; ``FramePreferenceDataset`` stores each frame once.
Each scenario runs in a fresh process on real frames of random play and reports the process's resident memory
(VmRSS from /proc) before and after:

* ``dataset``: 3,000 pairs of 6,000 distinct segments, none shared between pairs and no two consecutive
  (the worst case: each pair holds 2·(25+3) frames), everything else dropped; only the dataset holds frames.
* ``trainer``: what a run holds: 16 envs feeding a pool of 2,000 recent segments, from which pairs are drawn
  as the trainer draws them, the dataset keeping the newest 3,000 of 6,000 labels (pool and dataset share
  one frame store).

Both run on Pong (random play repeats many frames, e.g. while waiting for a serve, and equal frames are stored
once) and on Seaquest (few repeats). Writes benchmarks/results/atari_memory.json and .png (target: ≤ 1.2 GB
for the preference set).

    python -m benchmarks.atari_memory [--envs prefrl/PongNoScore-v0 prefrl/SeaquestNoScore-v0] [--pairs 3000]
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

from benchmarks.common import RESULTS, machine_info, write_json

SEGMENT_LENGTH = 25
FRAME_BYTES = 84 * 84
TARGET_BYTES = 1.2e9
SCENARIOS = ("dataset", "trainer")


@dataclass
class Args:
    envs: list[str] = field(default_factory=lambda: ["prefrl/PongNoScore-v0", "prefrl/SeaquestNoScore-v0"])
    env: str = "prefrl/PongNoScore-v0"
    """Internal: the env of one scenario."""
    pairs: int = 3_000
    """Labelled pairs kept (the paper keeps the newest 3,000)."""
    pool: int = 2_000
    """Segments in the trainer's pool of recent behaviour."""
    out: Path = RESULTS / "atari_memory.json"
    scenario: str | None = None
    """Internal: run one scenario in this process and print its figures as JSON."""


def rss() -> tuple[int, int]:
    """(resident, peak resident) bytes of this process."""
    lines = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def oracle_mu(left: object, right: object) -> float:
    a, b = left.true_return, right.true_return  # type: ignore[attr-defined]
    return 0.5 if a == b else float(a > b)


def scenario_dataset(args: Args) -> dict[str, float]:
    """The worst case: every pair holds its own 2·(25+3) frames."""
    from prefrl.atari import FrameSharingRewardVecEnv
    from prefrl.environment import make_vec_env
    from prefrl.frame_storage import FramePreferenceDataset
    from prefrl.segments import SegmentPool

    pool = SegmentPool(4)  # only the newest few segments stay outside the dataset
    base = make_vec_env(args.env, 1, 0)
    venv = FrameSharingRewardVecEnv(base, None, segment_length=SEGMENT_LENGTH, pool=pool)
    data = FramePreferenceDataset(args.pairs, store=venv.frame_store)
    rng = np.random.default_rng(0)
    venv.reset()
    gc.collect()
    before, _ = rss()
    waiting, produced, seen, last_uid, start = [], 0, 0, -1, time.time()
    while len(data) < args.pairs:
        venv.step(rng.integers(0, venv.action_space.n, 1))  # type: ignore[attr-defined]
        produced += 1
        newest = pool[len(pool) - 1] if len(pool) else None
        if newest is None or newest.uid == last_uid:
            continue
        last_uid, seen = newest.uid, seen + 1
        if seen % 2:
            continue  # every other segment, so that no two kept segments share frames
        waiting.append(newest)
        if len(waiting) == 2:
            data.add(waiting[0], waiting[1], oracle_mu(*waiting))
            waiting = []
    pool.clear()
    del waiting, newest
    venv.close()
    gc.collect()
    after, peak = rss()
    return {
        "pairs": len(data),
        "frames_held": len(data.store),  # type: ignore[arg-type]
        "frame_bytes": data.store.nbytes,  # type: ignore[union-attr]
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_peak_bytes": peak,
        "rss_growth_bytes": after - before,
        "env_steps": produced,
        "wall_s": round(time.time() - start, 1),
    }


def scenario_trainer(args: Args) -> dict[str, float]:
    """A run's pool and dataset: pairs drawn from the recent pool while 16 envs keep playing."""
    from prefrl.atari import FrameSharingRewardVecEnv
    from prefrl.environment import make_vec_env
    from prefrl.frame_storage import FramePreferenceDataset, FrameSegmentPool

    pool = FrameSegmentPool(args.pool)
    base = make_vec_env(args.env, 16, 0)
    venv = FrameSharingRewardVecEnv(base, None, segment_length=SEGMENT_LENGTH, pool=pool)
    data = FramePreferenceDataset(args.pairs, store=venv.frame_store)
    rng = np.random.default_rng(0)
    venv.reset()
    gc.collect()
    before, _ = rss()
    labels, start, steps = 0, time.time(), 0
    # 2·pairs labels over a stream long enough to replace the pool ~5 times: the newest `pairs` are kept.
    steps_per_label = max(1, 5 * args.pool * SEGMENT_LENGTH // (2 * args.pairs * 16))
    while labels < 2 * args.pairs:
        venv.step(rng.integers(0, venv.action_space.n, 16))  # type: ignore[attr-defined]
        steps += 16
        if len(pool) >= 2 and (steps // 16) % steps_per_label == 0:
            for left, right in pool.sample_pairs(1, rng):
                data.add(left, right, oracle_mu(left, right))
                labels += 1
    gc.collect()
    after, peak = rss()
    result = {
        "pairs": len(data),
        "labels_added": labels,
        "pool_segments": len(pool),
        "frames_held": len(venv.frame_store),
        "frame_bytes": venv.frame_store.nbytes,
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "rss_peak_bytes": peak,
        "rss_growth_bytes": after - before,
        "env_steps": steps,
        "wall_s": round(time.time() - start, 1),
    }
    venv.close()
    return result


def run_scenario(name: str, args: Args) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.atari_memory",
        "--scenario",
        name,
        "--env",
        args.env,
        "--pairs",
        str(args.pairs),
        "--pool",
        str(args.pool),
    ]
    print(" ".join(cmd[2:]), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(results: dict[str, dict[str, dict[str, float]]], naive: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar([0], [naive / 1e9], width=0.5, color="#999999")
    ax.text(0, naive / 1e9 + 0.05, f"{naive / 1e9:.2f} GB", ha="center")
    colours = {"dataset": "#3b75af", "trainer": "#59a14f"}
    names = {"dataset": "worst case: the 3,000 pairs alone", "trainer": "a run: pool of 2,000 + 3,000 pairs"}
    ticks = ["stacks kept whole\n(computed)"]
    for g, (env, scenarios) in enumerate(results.items(), start=1):
        ticks.append(env.split("/")[1].replace("NoScore-v0", "") + "\nframes shared")
        for j, (name, figures) in enumerate(scenarios.items()):
            x, value = g + (j - 0.5) * 0.35, figures["rss_growth_bytes"] / 1e9
            ax.bar([x], [value], width=0.33, color=colours[name], label=names[name] if g == 1 else None)
            ax.text(x, value + 0.05, f"{value:.2f}", ha="center", fontsize=8)
    ax.axhline(TARGET_BYTES / 1e9, color="#d62728", ls="--", label="target 1.2 GB")
    ax.set_xticks(range(len(ticks)), ticks)
    ax.set_ylabel("resident memory added (GB)")
    ax.set_title("3,000 labelled pairs of 25-step Atari segments (84×84×4)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(args: Args) -> None:
    if args.scenario:
        figures = {"dataset": scenario_dataset, "trainer": scenario_trainer}[args.scenario](args)
        print(json.dumps({"env": args.env, **figures}))
        return
    results = {
        env: {name: run_scenario(name, Args(env=env, pairs=args.pairs, pool=args.pool)) for name in SCENARIOS}
        for env in args.envs
    }
    naive = args.pairs * 2 * SEGMENT_LENGTH * 4 * FRAME_BYTES
    worst_env = max(results, key=lambda env: results[env]["dataset"]["rss_growth_bytes"])
    worst = results[worst_env]["dataset"]
    summary = {
        "preference_set_rss_gb": round(worst["rss_growth_bytes"] / 1e9, 3),
        "preference_set_env": worst_env,
        "preference_set_rss_gb_by_env": {
            e: round(r["dataset"]["rss_growth_bytes"] / 1e9, 3) for e, r in results.items()
        },
        "process_rss_gb": round(worst["rss_after_bytes"] / 1e9, 3),
        "bytes_per_pair": round(worst["rss_growth_bytes"] / worst["pairs"]),
        "bound_bytes_per_pair": 2 * (SEGMENT_LENGTH + 3) * FRAME_BYTES,
        "bound_preference_set_gb": round(args.pairs * 2 * (SEGMENT_LENGTH + 3) * FRAME_BYTES / 1e9, 3),
        "stacked_bytes_per_pair": 2 * SEGMENT_LENGTH * 4 * FRAME_BYTES,
        "stacked_preference_set_gb": round(naive / 1e9, 3),
        "trainer_pool_and_dataset_rss_gb_by_env": {
            e: round(r["trainer"]["rss_growth_bytes"] / 1e9, 3) for e, r in results.items()
        },
        "target_gb": TARGET_BYTES / 1e9,
        "meets_target": bool(worst["rss_growth_bytes"] <= TARGET_BYTES),
        "measure": "VmRSS growth of a fresh process while the set is built from frames of random play; "
        "process_rss_gb includes the interpreter, torch and the env",
    }
    write_json(
        args.out,
        {"benchmark": "atari_memory", "scenarios": results, "summary": summary, "machine": machine_info()},
    )
    plot(results, naive, args.out.with_suffix(".png"))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
