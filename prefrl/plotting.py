"""Learning curves of one or more runs: true return, labels and reward-model accuracy vs env steps."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prefrl.config import NO_LABELS  # noqa: E402
from prefrl.metrics import read_metrics  # noqa: E402


def run_label(run_dir: Path) -> str:
    config = json.loads((run_dir / "config.json").read_text())
    teacher = config["teacher"]
    labels = "" if teacher in NO_LABELS else f", {config['labels']} labels"
    if teacher == "frozen":
        labels = f" reward of {Path(config['reward_from']).name}"
    if teacher not in NO_LABELS and config.get("query_selection", "disagreement") != "disagreement":
        labels += f", {config['query_selection']} queries"
    return f"{config['algo']} {teacher}{labels}, seed {config['seed']}"


def smooth(y: np.ndarray, weights: np.ndarray, window: int) -> np.ndarray:
    """Episode-weighted moving average over ``window`` rows."""
    kernel = np.ones(window)
    num = np.convolve(np.nan_to_num(y) * weights, kernel, mode="full")[: len(y)]
    den = np.convolve(weights, kernel, mode="full")[: len(y)]
    return num / np.maximum(den, 1e-12)


def plot_runs(run_dirs: list[Path], out: Path, *, title: str | None = None) -> None:
    """Write a PNG with one curve per run: true return (top), labels and val accuracy (bottom)."""
    for d in run_dirs:
        if not (d / "metrics.csv").exists():
            raise FileNotFoundError(f"{d} has no metrics.csv; is it a prefrl run directory?")
    fig, (ax_ret, ax_lab) = plt.subplots(2, 1, figsize=(8, 7), sharex=True, height_ratios=(2, 1))
    ax_acc = ax_lab.twinx()
    envs = set()
    for i, d in enumerate(run_dirs):
        m = read_metrics(d / "metrics.csv")
        envs.add(json.loads((d / "config.json").read_text())["env"])
        color = f"C{i % 10}"
        if len(m["step"]):
            window = max(1, len(m["step"]) // 20)
            ax_ret.plot(
                m["step"], smooth(m["true_return"], m["episodes"], window), color=color, label=run_label(d)
            )
            ax_ret.plot(m["step"], m["true_return"], color=color, alpha=0.15, lw=0.8)
            if np.nanmax(m["labels"]) > 0:
                ax_lab.plot(m["step"], m["labels"], color=color, ls="-")
                ax_acc.plot(m["step"], m["val_accuracy"], color=color, ls=":")
                ax_acc.plot(m["step"], m["fresh_accuracy"], color=color, ls="--", lw=0.8)
    ax_ret.set_ylabel("true episode return")
    ax_ret.set_title(title or ", ".join(sorted(envs)))
    ax_ret.legend(fontsize=8)
    ax_ret.grid(alpha=0.3)
    ax_lab.set_ylabel("labels (solid)")
    ax_acc.set_ylabel("reward model accuracy:\nheld out (dotted), new answers (dashed)", fontsize=8)
    ax_acc.set_ylim(0.4, 1.02)
    ax_lab.set_xlabel("env steps")
    ax_lab.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
