"""Where the Pong preference run's time goes on a GPU machine (issue 10): the summary of ``gpu_profile.sh``.

``gpu_profile.sh`` runs on a lent GPU machine and brings back the three arms' ``metrics.csv`` and logs, the
GPU's utilisation (``nvidia-smi dmon``) while the asynchronous preference arm ran, and py-spy's samples of
that arm (every thread, idle waits included, 20 per second, raw collapsed stacks). This turns them into
``benchmarks/results/gpu_profile.json``: each arm's RL steps per second (pre-training excluded), the GPU's
busy share, and the share of the agent's thread spent in each part of the loop while A2C learns. The raw
files are kept beside it in ``benchmarks/results/gpu_profile_raw/`` (py-spy's gzipped).

    python -m benchmarks.gpu_profile /work/.device/N      # the folder the device call's files came back to
"""

from __future__ import annotations

import collections
import gzip
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

from benchmarks.common import RESULTS, write_json
from prefrl.metrics import read_metrics

ARMS = ("pong-true", "pong-oracle", "pong-oracle-sync")
LEARN = "OnPolicyAlgorithm.learn"
PARTS = {
    "env step (ALE emulation, preprocessing, Monitor)": "DummyVecEnv.step_wait",
    "learned reward per step (ensemble forward on the GPU)": "RewardEnsemble.reward",
    "frames kept for segments": "LearnedRewardVecEnv._collect",
    "policy forward": "ActorCriticPolicy.forward",
    "A2C gradient step": "A2C.train",
}
"""Parts of the agent's thread while A2C learns, each named by the frame that holds it."""


@dataclass
class Args:
    source: tyro.conf.Positional[Path]
    """The folder with gpu_profile.sh's (or gpu_fused_check.sh's) files."""
    out: Path = RESULTS / "gpu_profile.json"
    """Also names the folder the raw files are kept in (``<stem>_raw``)."""
    command: str = (
        "bash benchmarks/gpu_profile.sh  (on the lent machine); python -m benchmarks.gpu_profile DIR"
    )


def rl_rate(metrics: Path) -> dict[str, float]:
    """RL steps per second from the first logged row (after pre-training) to the last, and its spread."""
    m = read_metrics(metrics)
    steps, wall = m["step"], m["wall_s"]
    windowed = np.diff(steps) / np.diff(wall)
    return {
        "rl_steps_per_s": round(float((steps[-1] - steps[0]) / (wall[-1] - wall[0])), 1),
        "steps": int(steps[-1]),
        "rl_wall_s": round(float(wall[-1] - wall[0]), 1),
        "windowed_steps_per_s_p10_p90": [round(float(q), 1) for q in np.percentile(windowed, [10, 90])],
    }


def frame_name(frame: str) -> str:
    """``Class.method (path/file.py:12)`` without its line number."""
    return re.sub(r":\d+\)$", ")", frame).split(" (")[0]


def thread_shares(raw: Path) -> dict[str, object]:
    """Samples per thread, and the agent's thread while learning broken into :data:`PARTS`."""
    per_thread: collections.Counter[str] = collections.Counter()
    learning, parts = 0, collections.Counter()
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\):? ?", "", frames[0]) or "native"
        thread = re.sub(r"\d+$", "", thread).rstrip("-_ ") or thread
        per_thread[thread] += int(count)
        names = {frame_name(f) for f in frames[1:]}
        if thread == "MainThread" and LEARN in names:
            learning += int(count)
            for part, frame in PARTS.items():
                parts[part] += int(count) * (frame in names)
    main = per_thread["MainThread"]
    return {
        "samples_per_thread": dict(per_thread.most_common()),
        "agent_thread_learning_share": round(learning / main, 3),
        "agent_thread_while_learning": {part: round(parts[part] / learning, 3) for part in PARTS},
    }


def main(args: Args) -> None:
    arms = {
        arm: rl_rate(args.source / f"{arm}-metrics.csv")
        for arm in ARMS
        if (args.source / f"{arm}-metrics.csv").exists()
    }
    base = arms["pong-true"]["rl_steps_per_s"]
    summary: dict[str, object] = {
        f"ratio_{arm.removeprefix('pong-oracle').strip('-') or 'async'}": round(
            row["rl_steps_per_s"] / base, 3
        )
        for arm, row in arms.items()
        if arm != "pong-true"
    }
    dmon, pyspy = args.source / "dmon.txt", args.source / "pyspy.txt"
    if dmon.exists():
        busy = [
            int(line.split()[1])
            for line in dmon.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        summary["gpu_busy_percent_while_preference_arm_ran"] = {
            "mean": round(float(np.mean(busy)), 1),
            "max": int(np.max(busy)),
            "samples": len(busy),
        }
    if pyspy.exists():
        summary["profile_of_async_preference_arm"] = thread_shares(pyspy)
    raw = args.out.parent / f"{args.out.stem}_raw"
    raw.mkdir(parents=True, exist_ok=True)
    for path in args.source.iterdir():
        if path.name == "pyspy.txt":
            with path.open("rb") as src, gzip.open(raw / "pyspy.txt.gz", "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copyfile(path, raw / path.name)
    write_json(
        args.out,
        {
            "benchmark": args.out.stem,
            "what": "Pong A2C on a GPU machine (--device cuda), each arm alone on the whole machine for a "
            "few minutes (stopped by SIGINT): true reward, preferences with asynchronous (and synchronous) "
            "reward updates; RL steps per second exclude pre-training",
            "command": args.command,
            "arms": arms,
            **summary,
        },
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
