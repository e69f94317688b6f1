"""Does SURF buy labels? Its two additions measured on the reward model alone (issue 11's ablation).

SURF (Park et al. 2022) adds to PEBBLE's reward learning (a) pseudo-labels: unlabelled pairs that a member
already orders with P̂ > τ join its batches with that order as label, and (b) temporal cropping of the
segments. Whether they pay shows first in the reward model: fitted on the oracle's first N labels, does it
order held-out pairs better? This is the label-efficiency measure of ``prefrl labels compare``
(:mod:`prefrl.label_efficiency`), on the same 1,000 pairs of 60-step ``prefrl/Hopper-v0`` segments as
``benchmarks/label_sources.py`` (from random, half-trained, trained and noisy PPO policies; that script makes
them), in four arms with the same seeds, initial weights and data splits per N:

* ``plain``: prefrl's fit (3 MLPs, bootstrap, adaptive L2, 50 epochs);
* ``pseudo-labels``: + SURF's pseudo-labels, τ = 0.99, μ = 4 unlabelled pairs per labelled one in each
  batch, λ = 1 (SURF's scripts), 10 unlabelled pairs per label (SURF's ``inv_label_ratio``); and with
  τ = 0.95 (SURF's config file);
* ``crop``: + temporal cropping, windows of 55-60 of the 60 steps (SURF's ``crop_range`` 5);
* ``surf``: both.

The unlabelled pairs are random pairings of the training pairs' segments (never the held-out ones'); 30 % of
the pairs are held out and the oracle (larger true return) orders them. The agent is not involved: a
better-ordering reward model is necessary, not sufficient, for a better agent.

Writes ``benchmarks/results/surf_offline.{json,png}``.

    python -m benchmarks.surf_offline [--fits 3] [--counts 25 50 100 200 400]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import tyro

from benchmarks.common import RESULTS, machine_info, write_json
from prefrl.label_efficiency import efficiency_curve, spaces_of
from prefrl.labeling_gui.compare import load_pair_set
from prefrl.reward_model import SemiSupervision
from prefrl.teachers import Preference

ARMS = {
    "plain": (None, False),
    "pseudo-labels": (SemiSupervision(threshold=0.99, ratio=4, weight=1.0), True),
    "pseudo-labels tau=0.95": (SemiSupervision(threshold=0.95, ratio=4, weight=1.0), True),
    "crop": (SemiSupervision(crop=5), False),
    "surf": (SemiSupervision(threshold=0.99, ratio=4, weight=1.0, crop=5), True),
}
"""Each arm's fit settings, and whether it gets unlabelled pairs (pseudo-labels are on exactly then)."""


@dataclass
class Args:
    pairs: Path = Path("benchmarks/runs/label_sources/pairs/labels.sqlite")
    """The pair set of ``benchmarks/label_sources.py`` (run it first to make it)."""
    counts: tuple[int, ...] = (25, 50, 100, 200, 400)
    fits: int = 3
    held_out: float = 0.3
    seed: int = 0
    out: Path = RESULTS / "surf_offline.json"


def oracle(pair: tuple) -> Preference:
    left, right = pair
    if left.true_return == right.true_return:
        return Preference.EQUAL
    return Preference.LEFT if left.true_return > right.true_return else Preference.RIGHT


def main(args: Args) -> None:
    torch.set_num_threads(1)
    if not args.pairs.exists():
        raise SystemExit(f"no pair set at {args.pairs}: run `python -m benchmarks.label_sources` first")
    pairs = load_pair_set(args.pairs).pairs
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    n_held = int(len(pairs) * args.held_out)
    held = [pairs[i] for i in order[:n_held]]
    train = [pairs[i] for i in order[n_held:]]
    segments = [s for pair in train for s in pair]
    rng = np.random.default_rng(args.seed + 1)
    unlabeled = []
    for _ in range(10 * max(args.counts) // len(segments) + 1):
        shuffled = rng.permutation(len(segments))
        unlabeled += [(segments[a], segments[b]) for a, b in zip(shuffled[::2], shuffled[1::2])]
    obs_space, act_space = spaces_of(train[0][0])
    arms = {}
    for name, (semi, pseudo) in ARMS.items():
        started = time.monotonic()
        points = efficiency_curve(
            train,
            [oracle(p) for p in train],
            held,
            [oracle(p) for p in held],
            observation_space=obs_space,
            action_space=act_space,
            counts=args.counts,
            fits=args.fits,
            seed=args.seed,
            semi=semi,
            unlabeled=unlabeled if pseudo else (),
        )
        arms[name] = {
            "settings": None
            if semi is None
            else {k: v for k, v in vars(semi).items() if k != "unlabeled" and (pseudo or k == "crop")},
            "curve": [
                {"labels": p.labels, "accuracy": p.accuracy, "accuracies": list(p.accuracies)} for p in points
            ],
            "seconds": round(time.monotonic() - started, 1),
        }
        print(name, [(p.labels, round(p.accuracy or 0, 3)) for p in points], flush=True)
    plain = {p["labels"]: p["accuracy"] for p in arms["plain"]["curve"]}
    gains = {
        name: {str(p["labels"]): round(p["accuracy"] - plain[p["labels"]], 4) for p in arm["curve"]}
        for name, arm in arms.items()
        if name != "plain"
    }
    held_decided = sum(oracle(p) != Preference.EQUAL for p in held)
    best = max(plain.values())
    data = {
        "benchmark": "surf_offline",
        "pairs": len(pairs),
        "held_out_pairs": held_decided,
        "arms": arms,
        "gain_over_plain": gains,
        "held_out_ci95_halfwidth": round(1.96 * float(np.sqrt(best * (1 - best) / held_decided)), 3),
        "note": "held-out accuracy against the oracle of the ensemble fitted on the oracle's first N labels, "
        f"mean of {args.fits} fits; the unlabelled pairs are 10 per label, random pairings of the training "
        "segments; the agent is not involved",
        "command": "python -m benchmarks.surf_offline",
        "machine": machine_info(),
    }
    write_json(args.out, data)
    plot(data, args.out.with_suffix(".png"))


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, arm in data["arms"].items():
        labels = [p["labels"] for p in arm["curve"]]
        ax.plot(labels, [p["accuracy"] for p in arm["curve"]], marker="o", label=name)
    ax.set_xscale("log")
    counts = [p["labels"] for p in data["arms"]["plain"]["curve"]]
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.minorticks_off()
    ax.set_xlabel("oracle labels")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(
        f"SURF's additions, reward model only\n({data['held_out_pairs']} held-out Hopper pairs)", fontsize=10
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(tyro.cli(Args))
