"""Figures for the stats page: labels per labeler, time per label, agreement, and the run's learning curve.

Agreement between labelers is measured on pairs shown to more than one labeler (the repeated share, see
``prefrl label --repeat-share``). Agreement with the oracle compares each "left"/"right" answer with the
choice of a perfectly rational teacher on the env's true rewards stored with the segments (the BPref
oracle; Lee et al. 2021): a measure of how well people judge what the task's reward measures, and of
label noise when the instructions ask for that same thing.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import MutableMapping
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from prefrl.label_store import LabelStore
from prefrl.metrics import read_metrics

DECIDED = ("left", "right")
MAX_CURVE_POINTS = 400


def _oracle_choice(left_return: float, right_return: float) -> str:
    if left_return > right_return:
        return "left"
    return "right" if right_return > left_return else "equal"


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def true_returns(
    store: LabelStore, segment_ids: set[int], cache: MutableMapping[int, float]
) -> dict[int, float]:
    """True return of each segment, decoded once and kept in ``cache``."""
    for sid in segment_ids - cache.keys():
        cache[sid] = store.segment(sid).true_return
    return {sid: cache[sid] for sid in segment_ids}


def labeler_stats(store: LabelStore, cache: MutableMapping[int, float]) -> dict[str, Any]:
    """Per-labeler counts, median seconds and oracle agreement, and inter-labeler agreement.

    Returns:
        ``{"labelers": [{name, labels, median_seconds, oracle_agreement, oracle_compared}], "agreement":
        {"labelers": rate or None, "pairs_compared": n}, "oracle": {"agreement": rate or None,
        "compared": n}, "answers": n}``
    """
    records = store.answer_records()
    returns = true_returns(store, {r["left_id"] for r in records} | {r["right_id"] for r in records}, cache)
    by_labeler: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_pair: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    oracle_hits = oracle_total = 0
    for r in records:
        by_labeler[r["labeler"]].append(r)
        by_pair[(r["left_id"], r["right_id"])].append(r)
        oracle = _oracle_choice(returns[r["left_id"]], returns[r["right_id"]])
        r["oracle_compared"] = r["choice"] in DECIDED and oracle in DECIDED
        r["oracle_hit"] = r["oracle_compared"] and r["choice"] == oracle
        oracle_total += r["oracle_compared"]
        oracle_hits += r["oracle_hit"]
    labelers = []
    for name, rows in sorted(by_labeler.items(), key=lambda kv: -len(kv[1])):
        compared = sum(r["oracle_compared"] for r in rows)
        labelers.append(
            {
                "name": name,
                "labels": len(rows),
                "median_seconds": float(np.median([r["seconds"] for r in rows])),
                "oracle_agreement": _ratio(sum(r["oracle_hit"] for r in rows), compared),
                "oracle_compared": compared,
                "skipped": sum(r["choice"] == "skip" for r in rows),
            }
        )
    agree = compared_pairs = 0
    for rows in by_pair.values():
        for a, b in combinations([r for r in rows if r["choice"] != "skip"], 2):
            if a["labeler"] != b["labeler"]:
                compared_pairs += 1
                agree += a["choice"] == b["choice"]
    return {
        "answers": len(records),
        "labelers": labelers,
        "agreement": {"labelers": _ratio(agree, compared_pairs), "pairs_compared": compared_pairs},
        "oracle": {"agreement": _ratio(oracle_hits, oracle_total), "compared": oracle_total},
    }


def learning_curve(run_dir: Path) -> dict[str, Any]:
    """The run's ``metrics.csv`` (true return, labels and reward-model accuracy by env step), thinned.

    Returns:
        ``{"step": [...], "true_return": [...], "labels": [...], "val_accuracy": [...],
        "fresh_accuracy": [...]}`` (NaN as None), or empty lists when the run has no metrics yet (e.g.
        offline labeling).
    """
    keys = ("step", "true_return", "labels", "val_accuracy", "fresh_accuracy")
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {k: [] for k in keys}
    try:
        metrics = read_metrics(path)
    except (ValueError, KeyError):  # a half-written row while the trainer appends
        return {k: [] for k in keys}
    n = len(metrics["step"])
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_CURVE_POINTS)).astype(int)) if n else np.zeros(0, int)
    return {k: [None if math.isnan(float(v)) else float(v) for v in metrics[k][idx]] for k in keys}


def run_stats(store: LabelStore, run_dir: Path, cache: MutableMapping[int, float]) -> dict[str, Any]:
    """Everything the stats page shows: :func:`labeler_stats`, queue figures and :func:`learning_curve`."""
    stats = labeler_stats(store, cache)
    curve = learning_curve(run_dir)
    accuracies = [a for a in curve["val_accuracy"] if a is not None]
    fresh = [a for a in curve["fresh_accuracy"] if a is not None]
    stats.update(
        queries=store.num_queries(),
        pending=len(store.pending_query_ids()),
        queue=store.queue_length(),
        curve=curve,
        reward_model_accuracy=accuracies[-1] if accuracies else None,
        reward_model_fresh_accuracy=fresh[-1] if fresh else None,
    )
    return stats
