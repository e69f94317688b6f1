"""How well would other reward fits have predicted a person's next answers? (issue 11, a diagnosis)

A run taught from few labels fails either because its reward model cannot tell from so few answers what the
person wants, or because the agent cannot reach what the reward asks. This separates the two offline, from
the run's own answers: it replays them in the order they came and in the run's cadence (its initial labels,
then the rest in equal batches, one per reward update), fitting the reward ensemble after each batch as a
run would, and before each fit it scores the batch it has not yet trained on
(:attr:`~prefrl.reward_model.FitStats.fresh_accuracy`). The share of those answers it predicted is what the
run's reward knew about the person at each update; 1 minus the person's own noise is the ceiling (the
scripted person of ``benchmarks.backflip`` answers about 6-10 % of its pairs against its score).

Each fit setting (``--fits``: App. A's, an L2 penalty adapted to 1/e held-out pairs; B-Pref's, no L2 and
nothing held out; or ``b-pref-net``, B-Pref's with its larger reward network; ``--epochs`` per fit after
the first, which takes the run's pre-training epochs) is replayed with each of ``--activations`` (the
predictors' hidden units, ``--reward-activation``: App. A.1's leaky ReLU, or tanh), ``--reward-inputs``
(App. A.1's r̂(o, a), or r̂(o) of the observation alone; unset: the run's own) and ``--seeds`` (initial
weights and bootstrap samples), so the settings are compared on the same answers. The agent's clips are
those of the run, so this measures the reward fit, not what another fit would have made the agent do.

Writes ``benchmarks/results/reward_fit_replay.json``
(``{labels_from, pairs, cadence, settings: [{fit, epochs, activation, reward_inputs, fresh_accuracy,
each_seed, fresh_pairs}]}``).
By default it replays the 100 answers of the SAC backflip run that landed no flip, kept with the results
(``backflip_sac_100_labels.sqlite``: its run directory is not committed).

    python -m benchmarks.reward_fit_replay [--labels-from PATH] [--epochs 10 50] [--fits app-a b-pref]
        [--activations leaky-relu tanh] [--reward-inputs observations-actions observations]
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from benchmarks.common import RESULTS, machine_info, write_json
from prefrl.config import RewardActivation, RewardInputs
from prefrl.label_efficiency import spaces_of
from prefrl.label_store import LabelStore
from prefrl.preference_dataset import VALIDATION_SHARE, PreferenceDataset, preference_to_mu
from prefrl.reward_model import RewardEnsemble
from prefrl.segments import Segment
from prefrl.teachers import Preference

Fit = Literal["app-a", "b-pref", "b-pref-net"]
FIT_SETTINGS: dict[str, dict[str, Any]] = {
    "app-a": {"l2_coef": 1e-4, "validation_share": VALIDATION_SHARE},  # Christiano et al. 2017, App. A
    "b-pref": {"l2_coef": 0.0, "validation_share": 0.0},  # Lee et al. 2021's reward training
    # ... and B-Pref's reward network too (BPref reward_model.py: 3 hidden layers of 256, batches of 128
    # pairs) instead of App. A's 2 of 64, for prefrl's 64. Its tanh on each step's output is left out.
    "b-pref-net": {"l2_coef": 0.0, "validation_share": 0.0, "hidden": (256, 256, 256), "batch_size": 128},
}


@dataclass
class Args:
    labels_from: Path = RESULTS / "backflip_sac_100_labels.sqlite"
    """A run's ``labels.sqlite``; its ``spec.json`` beside it, if there, gives the cadence and the ensemble
    (else ``--spec-from``)."""
    spec_from: Path = RESULTS / "backflip_sac_100_spec.json"
    """The run's resolved settings (``spec.json``) when ``--labels-from`` has none beside it."""
    fits: list[Fit] = field(default_factory=lambda: ["b-pref", "app-a"])
    epochs: list[int] = field(default_factory=lambda: [10, 50])
    """Epochs of each fit after the first (prefrl's default: 10; B-Pref's Walker2d runs: 50)."""
    activations: list[RewardActivation] = field(default_factory=lambda: ["leaky-relu"])
    """The predictors' hidden units, each replayed (``leaky-relu``, App. A.1; ``tanh``)."""
    reward_inputs: list[RewardInputs] | None = None
    """What the predictors see, each replayed (``observations-actions``: r̂(o, a), App. A.1;
    ``observations``: r̂(o)); unset: what the run's own model saw."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    out: Path = RESULTS / "reward_fit_replay.json"


def cadence(spec: dict[str, object], answers: int) -> tuple[int, int]:
    """(answers before the first fit, answers per later fit) as the run took them: its initial labels, then
    the rest spread over one batch per reward update of its learning steps."""
    first = min(int(spec["initial_labels"]), answers)  # type: ignore[call-overload]
    learning = int(spec["steps"]) - int(spec.get("unsupervised_steps") or 0)  # type: ignore[call-overload]
    updates = max(1, learning // int(spec["reward_update_interval"]))  # type: ignore[call-overload]
    return first, max(1, round((answers - first) / updates))


def run_reward_inputs(spec: dict[str, object]) -> str:
    """What the run's own reward model saw (runs from before the setting existed saw observations and
    actions)."""
    return str(spec.get("reward_inputs") or "observations-actions")


def replay(
    pairs: list[tuple[Segment, Segment, Preference]],
    spec: dict[str, object],
    fit: Fit,
    epochs: int,
    seed: int,
    activation: str = "leaky-relu",
    reward_inputs: str | None = None,
) -> tuple[float, int]:
    """Fresh-label accuracy over the whole replay (each fit's, weighted by its new left/right answers) and
    how many answers were scored."""
    first, batch = cadence(spec, len(pairs))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    obs_space, act_space = spaces_of(pairs[0][0])
    ensemble = RewardEnsemble.for_spaces(
        obs_space,
        act_space,
        ensemble_size=int(spec["ensemble_size"]),  # type: ignore[call-overload]
        use_actions=(reward_inputs or run_reward_inputs(spec)) == "observations-actions",
        activation=activation,
        **FIT_SETTINGS[fit],
    )
    data = PreferenceDataset()
    scores, counts = [], []
    bounds = [*range(first or batch, len(pairs), batch), len(pairs)]
    for start, end in zip([0, *bounds[:-1]], bounds):
        for left, right, answer in pairs[start:end]:
            if answer != Preference.SKIP:
                data.add(left, right, preference_to_mu(answer))
        if not len(data):
            continue
        epochs_now = int(spec["pretrain_epochs"]) if not ensemble.num_fits else epochs  # type: ignore[call-overload]
        stats = ensemble.fit(data, epochs=epochs_now, rng=rng)
        if stats.fresh_pairs:
            scores.append(stats.fresh_accuracy)
            counts.append(stats.fresh_pairs)
    if not counts:
        return float("nan"), 0
    return float(np.average(scores, weights=counts)), int(sum(counts))


def main(args: Args) -> None:
    spec_path = args.labels_from.parent / "spec.json"
    spec_path = spec_path if spec_path.exists() else args.spec_from
    if not args.labels_from.exists():
        raise SystemExit(f"--labels-from {args.labels_from}: no such label store")
    if not spec_path.exists():
        raise SystemExit(f"no spec.json beside {args.labels_from} and --spec-from {spec_path} does not exist")
    spec = json.loads(spec_path.read_text())
    with LabelStore(args.labels_from) as store:
        pairs = [(query.left, query.right, answer) for query, answer in store.answered_pairs()]
    if not pairs:
        raise SystemExit(f"{args.labels_from} holds no answers")
    torch.set_num_threads(1)
    start = time.time()
    settings = []
    inputs: list[str] = list(args.reward_inputs) if args.reward_inputs else [run_reward_inputs(spec)]
    for fit, epochs, activation, seen in itertools.product(args.fits, args.epochs, args.activations, inputs):
        results = [replay(pairs, spec, fit, epochs, seed, activation, seen) for seed in args.seeds]
        accuracy = float(np.mean([r[0] for r in results]))
        settings.append(
            {
                "fit": fit,
                "epochs": epochs,
                "activation": activation,
                "reward_inputs": seen,
                "fresh_accuracy": round(accuracy, 4),
                "each_seed": [round(r[0], 4) for r in results],
                "fresh_pairs": results[0][1],
            }
        )
        seeds = [round(r[0], 3) for r in results]
        print(
            f"{fit}, {epochs} epochs a fit, {activation}, {seen}: {accuracy:.3f} of new answers predicted "
            f"({seeds})"
        )
    first, batch = cadence(spec, len(pairs))
    write_json(
        args.out,
        {
            "labels_from": str(args.labels_from),
            "env": spec.get("env"),
            "pairs": len(pairs),
            "cadence": {"first_fit": first, "per_fit": batch, "pretrain_epochs": spec["pretrain_epochs"]},
            "fresh_accuracy": "share of the left/right answers new since the previous fit that a member "
            "predicted before training on them, averaged over the members, then over the fits weighted by "
            "their new answers, then over seeds",
            "settings": settings,
            "wall_s": round(time.time() - start, 1),
            "machine": machine_info(),
        },
    )


if __name__ == "__main__":
    main(tyro.cli(Args))
