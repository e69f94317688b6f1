"""Which query rule shows the teacher the walker upright? (issue 11, a diagnosis, offline)

``benchmarks/label_coverage.py`` found that the Walker2d 200-label runs were shown the walker on the floor in
79-94 % of their labelled steps. This replays query selection on a finished run's own experience: from a
checkpoint's replay buffer it rebuilds the candidate pool the run held then (the newest ``POOL_CAPACITY``
segments, cut as the run cut them: disjoint, within episodes), loads that checkpoint's reward model and the
answers given before it, and lets each rule of :mod:`prefrl.query_selection` pick ``rounds`` batches of
``per_round`` pairs from ``oversample``·``per_round`` uniform candidates, as the run's updates do (each pick
joins the labelled set, which k-center keeps away from). Reported per rule: the share of the chosen clips'
steps with the torso at or above the fall height, and the share of pairs whose two clips each spend at least
90 % of their steps below it. Every rule sees the same candidates in each round.

It needs the run directory (not committed); what it wrote is (``benchmarks/results/query_coverage_*.json``).

    python -m benchmarks.query_coverage benchmarks/runs/offpolicy_200k/prefrl_Walker2d-v0-sac-oracle-200-s0 \
        --step 150000 [--out benchmarks/results/query_coverage_walker2d_200k.json]
"""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from benchmarks.common import RESULTS, machine_info, write_json
from benchmarks.label_coverage import Layout, layout_of
from prefrl.label_efficiency import spaces_of
from prefrl.label_store import LabelStore
from prefrl.observations import POOL_CAPACITY
from prefrl.preference_dataset import PreferenceDataset, preference_to_mu
from prefrl.query_selection import SELECTORS, make_selector
from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Segment, SegmentPool
from prefrl.teachers import Preference


@dataclass
class Args:
    runs: tyro.conf.Positional[tuple[Path, ...]]
    """Run directories of a planar walker task with a checkpoint at ``--step``."""
    step: int = 150_000
    """The checkpoint whose replay buffer, reward model and earlier answers are replayed."""
    rules: tuple[str, ...] = SELECTORS
    rounds: int = 20
    per_round: int = 8
    """Pairs chosen per round (a 200-label run's update asks about 8)."""
    oversample: int = 10
    seed: int = 0
    out: Path = RESULTS / "query_coverage_walker2d_200k.json"


def pool_at(buffer: Any, segment_length: int, horizon: int) -> SegmentPool:
    """The newest ``POOL_CAPACITY`` segments of a one-env replay buffer, cut disjoint within episodes."""
    obs, acts = buffer["observations"][:, 0], buffer["actions"][:, 0]
    per_episode = horizon // segment_length
    starts = [
        episode + k * segment_length
        for episode in range(0, len(obs) - horizon + 1, horizon)
        for k in range(per_episode)
    ][-POOL_CAPACITY:]
    pool = SegmentPool(POOL_CAPACITY)
    zeros = np.zeros(segment_length)
    pool.extend(Segment(obs[s : s + segment_length], acts[s : s + segment_length], zeros) for s in starts)
    return pool


def answers_before(run: Path, step: int) -> PreferenceDataset:
    """The answers the run had at ``step`` (the labels column of its metrics), oldest first."""
    with (run / "metrics.csv").open() as f:
        rows = [row for row in csv.DictReader(f) if int(row["step"]) <= step]
    if not rows:
        raise SystemExit(f"{run}: metrics.csv has no row at or before step {step}")
    count = int(rows[-1]["labels"])
    dataset = PreferenceDataset()
    with LabelStore(run / "labels.sqlite") as store:
        for i, (query, answer) in enumerate(store.answered_pairs()):
            if i >= count:
                break
            if answer != Preference.SKIP:
                dataset.add(query.left, query.right, preference_to_mu(answer))
    return dataset


def coverage(run: Path, args: Args) -> dict[str, Any]:
    spec = json.loads((run / "spec.json").read_text())
    layout = layout_of(spec["env"])
    checkpoint = run / "checkpoints" / f"step-{args.step:012d}"
    if not (checkpoint / "replay_buffer.npz").exists():
        raise SystemExit(f"{run}: no checkpoint at step {args.step} ({checkpoint})")
    with np.load(checkpoint / "replay_buffer.npz") as buffer:
        pool = pool_at(buffer, int(spec["segment_length"]), int(spec["horizon"]))
    labelled = answers_before(run, args.step)
    ensemble = RewardEnsemble.for_spaces(
        *spaces_of(pool[0]),
        ensemble_size=int(spec["ensemble_size"]),
        use_actions=(spec.get("reward_inputs") or "observations-actions") == "observations-actions",
        activation=spec.get("reward_activation") or "leaky-relu",
    )
    ensemble.load(checkpoint / "reward_model.pt")
    # The same candidates for every rule: drawn once per round here.
    rng = np.random.default_rng(args.seed)
    rounds = [pool.sample_pairs(args.per_round * args.oversample, rng) for _ in range(args.rounds)]
    result: dict[str, Any] = {
        "run": run.name,
        "step": args.step,
        "labels_before": len(labelled),
        "pool": {"segments": len(pool), **shown([(pool[i], pool[i]) for i in range(len(pool))], layout)},
        "rules": {},
    }
    for rule in args.rules:
        selector = make_selector(rule, ensemble, oversample=args.oversample)
        covered = copy.deepcopy(labelled)  # each rule adds its own picks
        chosen = []
        for candidates in rounds:
            picks = selector.choose(candidates, args.per_round, covered)
            for left, right in picks:
                covered.add(left, right, 0.5)  # k-center only reads where they are
            chosen += picks
        result["rules"][rule] = shown(chosen, layout)
    return result


def shown(pairs: list[tuple[Segment, Segment]], layout: Layout) -> dict[str, float]:
    def below(segment: Segment) -> float:
        return float((segment.obs[:, layout.height_obs] < layout.fall_height).mean())

    return {
        "share_of_steps_upright": round(1 - float(np.mean([below(s) for pair in pairs for s in pair])), 3),
        "share_of_pairs_both_below_90pct": round(
            float(np.mean([min(below(a), below(b)) >= 0.9 for a, b in pairs])), 3
        ),
    }


def main(args: Args) -> None:
    torch.set_num_threads(1)
    runs = [coverage(run, args) for run in args.runs]
    for run in runs:
        rules = ", ".join(
            f"{rule} {r['share_of_steps_upright']:.3f}/{r['share_of_pairs_both_below_90pct']:.2f}"
            for rule, r in run["rules"].items()
        )
        print(
            f"{run['run']} at {run['step']}: pool upright {run['pool']['share_of_steps_upright']:.3f}; "
            f"upright/both-down by rule: {rules}"
        )
    write_json(
        args.out,
        {
            "runs": runs,
            "settings": {
                "rounds": args.rounds,
                "per_round": args.per_round,
                "oversample": args.oversample,
                "seed": args.seed,
            },
            "measure": "steps with the torso at or above the fall height (Walker2d 0.8 m), of the chosen "
            "clips; pairs whose two clips each spend >= 90 % of their steps below it",
            "machine": machine_info(),
        },
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
