"""Label sources compared on the same pairs of prefrl/Hopper-v0 (issue 13), as `prefrl labels compare` does.

No human labels were collected for this benchmark: the "person" is the scripted person
(:mod:`prefrl.labeling_gui.scripted`), answering through the labeling server's HTTP API with BPref's noise on
the true reward per step (β = 50, ε = 0.05) at a person's 3-5 s per pair scaled by 0.1. Beside it: the oracle
and BPref's five teachers (Lee et al. 2021). People's own files can be compared on the same pairs with
``prefrl labels compare benchmarks/runs/label_sources/pairs --people FILE.jsonl`` (README).

The pairs: 60-step segments (what synthetic teachers see on Hopper: 1.5 s clamped to 60 steps, App. A.1)
from four policies, so that pairs range from obvious to close calls: uniform random actions; PPO after about
half and all of a short true-reward run (``prefrl train --teacher true-reward --steps 150000``, its two kept
checkpoints, actions sampled from the policy); and the final policy with Gaussian noise (σ = 0.5) added to its
actions. Equal numbers of segments per policy, shuffled together and paired at random. Each source's answers
are scored as ``prefrl labels compare`` does (:mod:`prefrl.labeling_gui.compare`): agreement, shares of
"equal" and "can't tell", seconds per label, and the efficiency curve (held-out accuracy against the oracle of
the reward ensemble fitted on the source's first N answers; 30 % of the pairs held out; 3 fits per N).

Writes ``benchmarks/results/label_sources.json`` (``{pairs, sources: {name: {agreement_with_oracle, ...,
efficiency: [...]}}, agreement, ...}``) and ``.png``. Resumable: the PPO run resumes and the pairs are reused.

    python -m benchmarks.label_sources [--pairs 1000] [--ppo-steps 150000] [--pace-scale 0.1] [--fits 3]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from benchmarks.common import RESULTS, machine_info, run_all
from prefrl.environment import make_vec_env, random_actions
from prefrl.label_store import LabelStore
from prefrl.labeling_gui.compare import (
    CompareSettings,
    PersonSettings,
    compare_sources,
    gather_sources,
    load_pair_set,
)
from prefrl.labeling_gui.compare_report import format_table, plot_comparison, write_json
from prefrl.metrics import final_true_return
from prefrl.segments import Segment

ENV = "prefrl/Hopper-v0"
SEGMENT_LENGTH = 60
NO_HUMANS = (
    "No human labels were collected: the person source is the scripted person (labeling_gui/scripted.py), "
    "answering through the labeling server's HTTP API with BPref noise on the true reward per step, at a "
    "person's pace scaled down."
)


@dataclass
class Args:
    pairs: int = 1000
    ppo_steps: int = 150_000
    """Steps of the true-reward PPO run whose checkpoints give the trained policies."""
    noise: float = 0.5
    """Std of the Gaussian noise added to the final policy's actions (the fourth policy)."""
    pace_scale: float = 0.1
    """The scripted person waits 3-5 s x this before each answer."""
    fits: int = 3
    held_out: float = 0.3
    seed: int = 0
    runs_dir: Path = Path("benchmarks/runs/label_sources")
    out: Path = RESULTS / "label_sources.json"


def policy_checkpoints(args: Args) -> list[Path]:
    """The true-reward PPO run's two kept checkpoints (half-way and the end), trained first if needed."""
    run_dir = args.runs_dir / "ppo-true-reward"
    train = ["--env", ENV, "--algo", "ppo", "--teacher", "true-reward", "--seed", str(args.seed)]
    train += ["--checkpoint-interval", str(args.ppo_steps // 2)]
    run_all([(run_dir, train, args.ppo_steps)], parallel=1)
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    if len(checkpoints) < 2:
        raise SystemExit(f"{run_dir} should hold two checkpoints; found {len(checkpoints)}")
    return checkpoints[-2:]


def rollout_segments(
    count: int, seed: int, checkpoint: Path | None = None, noise: float = 0.0, n_envs: int = 4
) -> list[Segment]:
    """``count`` disjoint 60-step segments (with MuJoCo states, for clips) of one policy: random actions when
    ``checkpoint`` is None, else the checkpoint's PPO agent (sampled actions, plus Gaussian ``noise``)."""
    base = make_vec_env(ENV, n_envs, seed)
    venv: VecEnv = base
    agent = None
    if checkpoint is not None:
        venv = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), base)
        venv.training, venv.norm_reward = False, False
        agent = PPO.load(checkpoint / "agent.zip", device="cpu")
    rng = np.random.default_rng(seed)
    low, high = base.action_space.low, base.action_space.high  # type: ignore[attr-defined]
    segments: list[Segment] = []
    obs = venv.reset()
    raw = venv.get_original_obs() if isinstance(venv, VecNormalize) else obs
    buffers: list[list[tuple[Any, ...]]] = [[] for _ in range(n_envs)]
    while len(segments) < count:
        if agent is None:
            actions = random_actions(base, rng)
        else:
            actions, _ = agent.predict(obs, deterministic=False)
            actions = np.clip(actions + noise * rng.normal(size=actions.shape), low, high).astype(np.float32)
        obs, rewards, dones, infos = venv.step(actions)
        for i in range(n_envs):
            buffers[i].append((raw[i], actions[i], rewards[i], infos[i]["sim_state"]))
            if dones[i]:
                buffers[i] = []  # fixed horizon: a segment never spans two episodes
            elif len(buffers[i]) == SEGMENT_LENGTH:
                o, a, r, s = (np.array(x) for x in zip(*buffers[i]))
                segments.append(Segment(o.astype(np.float32), a, r.astype(np.float32), s))
                buffers[i] = []
        raw = venv.get_original_obs() if isinstance(venv, VecNormalize) else obs
    venv.close()
    return segments[:count]


def make_pairs(args: Args, store_file: Path) -> list[dict[str, Any]]:
    """Write the pair set (once; an existing one is reused); returns the policies, as stored with the set."""
    if store_file.exists():
        with LabelStore(store_file) as store:
            if store.num_queries(repeats=False) == args.pairs:
                return list(json.loads(store.get_meta("policies") or "[]"))
        raise SystemExit(f"{store_file} holds other pairs; delete it to draw {args.pairs} new ones")
    half, last = policy_checkpoints(args)
    per_policy = -(-2 * args.pairs // 4)
    step = {c: int(c.name.removeprefix("step-")) for c in (half, last)}
    policies: list[tuple[str, Path | None, float]] = [
        ("uniform random actions", None, 0.0),
        (f"PPO after {step[half]:,} steps of the true-reward run", half, 0.0),
        (f"PPO after {step[last]:,} steps of the true-reward run", last, 0.0),
        (f"PPO after {step[last]:,} steps, actions + N(0, {args.noise:g}^2) noise", last, args.noise),
    ]
    started = time.monotonic()
    segments, described = [], []
    for i, (name, checkpoint, noise) in enumerate(policies):
        drawn = rollout_segments(per_policy, args.seed + 10 + i, checkpoint, noise)
        returns = [s.true_return for s in drawn]
        described.append(
            {
                "policy": name,
                "segments": len(drawn),
                "segment_return_mean": round(float(np.mean(returns)), 1),
                "segment_return_std": round(float(np.std(returns)), 1),
            }
        )
        segments += drawn
    order = np.random.default_rng(args.seed).permutation(len(segments))[: 2 * args.pairs]
    pairs = [(segments[a], segments[b]) for a, b in zip(order[::2], order[1::2])]
    tmp = store_file.with_name(store_file.name + ".tmp")
    tmp.unlink(missing_ok=True)
    with LabelStore(tmp) as store:
        store.set_meta("env_id", ENV)
        store.set_meta("policies", json.dumps(described))
        store.add_queries(pairs)
    tmp.rename(store_file)
    seconds = time.monotonic() - started
    print(f"{args.pairs} pairs from {len(segments)} segments in {seconds:.0f} s", flush=True)
    return described


def main(args: Args) -> None:
    torch.set_num_threads(1)
    store_file = args.runs_dir / "pairs" / "labels.sqlite"
    store_file.parent.mkdir(parents=True, exist_ok=True)
    policies = make_pairs(args, store_file)
    pair_set = load_pair_set(store_file)
    started = time.monotonic()
    sources = gather_sources(
        pair_set, person=PersonSettings(pace_scale=args.pace_scale), seed=args.seed, log=print
    )
    labelled_s = time.monotonic() - started
    settings = CompareSettings(held_out=args.held_out, fits=args.fits, seed=args.seed)
    result = compare_sources(pair_set, sources, settings, log=print)
    print(format_table(result))
    returns = np.array([[s.true_return for s in pair] for pair in pair_set.pairs])
    oracle_final = result["sources"]["oracle"]["efficiency"][-1]["accuracy"]
    held = result["pair_set"]["held_out_decided_by_oracle"]
    data = {
        "benchmark": "label_sources",
        "human_labels": NO_HUMANS,
        **result,
        "pair_construction": {
            "env": ENV,
            "segment_length": SEGMENT_LENGTH,
            "policies": policies,
            "ppo_run": f"prefrl train --env {ENV} --algo ppo --teacher true-reward --steps {args.ppo_steps} "
            f"--seed {args.seed} --checkpoint-interval {args.ppo_steps // 2}",
            "ppo_final_true_return": final_true_return(
                args.runs_dir / "ppo-true-reward" / "metrics.csv", args.ppo_steps
            ),
            "pairing": "segments of all policies shuffled together and paired at random",
            "segment_return": {
                "min": float(returns.min()),
                "median": float(np.median(returns)),
                "max": float(returns.max()),
            },
            "median_return_gap": float(np.median(np.abs(returns[:, 0] - returns[:, 1]))),
        },
        "held_out_ci95_halfwidth": round(1.96 * float(np.sqrt(oracle_final * (1 - oracle_final) / held)), 3),
        "held_out_ci95_note": "binomial half-width of one held-out accuracy at the oracle's final one: "
        "differences between sources smaller than this are within the noise of the held-out set",
        "seconds_to_gather_answers": round(labelled_s, 1),
        "command": "python -m benchmarks.label_sources",
        "machine": machine_info(),
    }
    write_json(data, args.out)
    plot_comparison(
        data,
        args.out.with_suffix(".png"),
        title=f"label sources on {args.pairs} pairs of {ENV} (the person is scripted: no human labels)",
    )
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main(tyro.cli(Args))
