"""The run's learning curve, ``metrics.csv``: one row per batch of finished episodes.

Columns: step, wall_s, episodes, true_return (mean true episode return of the episodes finished in
this row), learned_return, labels (answers received), val_accuracy (reward model, last fit, on its held-out
pairs), fresh_accuracy (reward model, last fit, on the answers new since the fit before, scored before it
trained on them: :attr:`~prefrl.reward_model.FitStats.fresh_accuracy`). A file written before a column
existed reads that column as NaN, and gains it, NaN in the old rows, when a resumed run appends to it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

COLUMNS = (
    "step",
    "wall_s",
    "episodes",
    "true_return",
    "learned_return",
    "labels",
    "val_accuracy",
    "fresh_accuracy",
)


class MetricsLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            path.write_text(",".join(COLUMNS) + "\n")
        else:
            with path.open() as f:
                header = f.readline().strip().split(",")
            if tuple(header) != COLUMNS:  # written by an older prefrl: rewrite it with every column
                self._rewrite(read_metrics(path))

    def append(self, **row: float) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([row[c] for c in COLUMNS])

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (after resuming from a checkpoint taken at ``step``)."""
        rows = read_metrics(self.path)
        keep = rows["step"] <= step if len(rows["step"]) else np.zeros(0, bool)
        self._rewrite({c: rows[c][keep] for c in COLUMNS})

    def _rewrite(self, rows: dict[str, np.ndarray]) -> None:
        with self.path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for i in range(len(rows["step"])):
                writer.writerow([rows[c][i] for c in COLUMNS])


def read_metrics(path: Path) -> dict[str, np.ndarray]:
    """Columns of a metrics.csv as float arrays (empty arrays for a run with no episodes yet; NaN for a
    column the file does not have)."""
    with path.open() as f:
        rows = list(csv.DictReader(f))

    def value(row: dict[str, str], column: str) -> float:
        text = row.get(column)
        return float(text) if text not in (None, "", "nan") else np.nan

    return {c: np.array([value(r, c) for r in rows], dtype=np.float64) for c in COLUMNS}


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
