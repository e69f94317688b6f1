"""The per-step learned reward on Atari frame stacks: the CNN ensemble member by member against the fused
network (:class:`prefrl.cnn_reward.FusedCNNEnsemble`), on the CPU and, where there is one, the GPU.

The agent asks for the reward once per vectorised step (16 stacks on Pong), so what counts is the time of
one small call. Writes ``benchmarks/results/reward_step_speed.json`` (``--out``): for each device and batch
size, the best-of-``repeats`` mean time per call of each path and the largest difference between them.

    python -m benchmarks.reward_step_speed [--devices cpu cuda] [--out PATH]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import tyro

from benchmarks.common import RESULTS, machine_info, write_json
from prefrl.cnn_reward import FusedCNNEnsemble, cnn_ensemble


@dataclass
class Args:
    devices: tuple[str, ...] = ("cpu", "cuda")
    """Devices to time on; one torch cannot see is skipped."""
    batch_sizes: tuple[int, ...] = (16, 80)
    calls: int = 50
    repeats: int = 5
    threads: int = 1
    out: Path = RESULTS / "reward_step_speed.json"


def per_call_ms(fn: Callable[[], object], calls: int, repeats: int) -> float:
    fn()  # warm-up: kernels chosen, caches filled
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return round(best * 1e3, 3)


def main(args: Args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    for device in args.devices:
        if device == "cuda" and not torch.cuda.is_available():
            print("no CUDA device: cuda skipped")
            continue
        frames = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        ensemble = cnn_ensemble(frames, gym.spaces.Discrete(6), device=device)
        ensemble.eval()
        fused = FusedCNNEnsemble(ensemble)
        for n in args.batch_sizes:
            obs = rng.integers(0, 256, (n, 4, 84, 84), dtype=np.uint8)
            acts = np.zeros(n, np.int64)
            diff = np.abs(ensemble.member_rewards(obs, acts).T - fused.members(obs, acts)).max()
            by_member = partial(ensemble.member_rewards, obs, acts)
            members_ms = per_call_ms(by_member, args.calls, args.repeats)
            fused_ms = per_call_ms(partial(fused, obs, acts), args.calls, args.repeats)
            row = {
                "device": device,
                "batch": n,
                "members_ms": members_ms,
                "fused_ms": fused_ms,
                "speedup": round(members_ms / fused_ms, 2),
                "max_abs_difference": float(diff),
            }
            print(row)
            rows.append(row)
    info = machine_info()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    write_json(
        args.out,
        {
            "benchmark": "reward_step_speed",
            "what": "one call of the per-step learned reward on Pong-sized frame stacks (3 CNN members, eval "
            "mode): member by member (RewardEnsemble.member_rewards) against the fused grouped network",
            "threads": args.threads,
            "rows": rows,
            "machine": info,
        },
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
