"""The run's learning curve, ``metrics.csv``: one row per batch of finished episodes.

Columns: step, wall_s, episodes, true_return (mean true episode return of the episodes finished in
this row), learned_return, labels (answers received), val_accuracy (reward model, last fit).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

COLUMNS = ("step", "wall_s", "episodes", "true_return", "learned_return", "labels", "val_accuracy")


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            path.write_text(",".join(COLUMNS) + "\n")

    def append(self, **row: float) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row[c] for c in COLUMNS])

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (after resuming from a checkpoint taken at ``step``)."""
        rows = read_metrics(self.path)
        keep = rows["step"] <= step if len(rows["step"]) else np.zeros(0, bool)
        with self.path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for i in np.flatnonzero(keep):
                writer.writerow([rows[c][i] for c in COLUMNS])


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """Columns of a metrics.csv as float arrays (empty arrays for a run with no episodes yet)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return {c: np.array([float(r[c]) if r[c] not in ("", "nan") else np.nan for r in rows]) for c in COLUMNS}


def final_true_return(
    path: Path, total_steps: int, fraction: float = 0.1, *, until: int | None = None
) -> float:
    """Mean true episode return over the last ``fraction`` of steps, weighted by episodes.

    Args:
        until: count only episodes finished by this step (to compare a run with a shorter one at the
            shorter one's steps: ``total_steps = until =`` its steps).
    """
    m = read_metrics(path)
    last = m["step"] >= (1 - fraction) * total_steps
    if until is not None:
        last &= m["step"] <= until
    if not last.any():
        raise ValueError(f"{path} has no episodes in the last {fraction:.0%} of {total_steps} steps")
    return float(np.average(m["true_return"][last], weights=m["episodes"][last]))
