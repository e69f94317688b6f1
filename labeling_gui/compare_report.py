"""The comparison of label sources as a terminal table, a JSON file and a PNG (efficiency curves, agreement).

Reads the dictionary :func:`prefrl.labeling_gui.compare.compare_sources` returns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _seconds(source: dict[str, Any]) -> str:
    seconds = source["seconds_per_label"]
    if seconds is None:
        return "-"
    scale = source["settings"].get("pace_scale")
    return f"{seconds:.2f}" + (f" (x{scale:g} pace)" if scale else "")


def format_table(result: dict[str, Any]) -> str:
    """Per source: answers, agreement with the oracle, equal and can't-tell shares, seconds per label and the
    efficiency curve's held-out accuracy at each N; then the agreement matrix."""
    sources: dict[str, dict[str, Any]] = result["sources"]
    counts = sorted({p["labels"] for s in sources.values() for p in s["efficiency"][:-1]})
    header = ["source", "kind", "answers", "oracle agr.", "equal", "can't tell", "s/label"]
    header += [f"acc@{n}" for n in counts] + ["acc@all (N)"]
    rows = []
    for name, s in sources.items():
        by_n = {p["labels"]: p["accuracy"] for p in s["efficiency"]}
        last = s["efficiency"][-1] if s["efficiency"] else None
        row = [name, s["kind"], str(s["answers"]), _num(s["agreement_with_oracle"])]
        row += [_pct(s["share_equal"]), _pct(s["share_cant_tell"]), _seconds(s)]
        row += [_num(by_n[n]) if n in by_n and (last is None or n != last["labels"]) else "" for n in counts]
        row.append("-" if last is None else f"{_num(last['accuracy'])} ({last['labels']})")
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    held = result["pair_set"]
    lines = [
        f"{result['pairs']} pairs of {held['path']} ({held['env_id'] or 'env unknown'}); reward ensemble "
        f"fitted on each source's first N answers, accuracy against the oracle on {held['held_out']} "
        "held-out pairs",
        line(header),
        *(line(r) for r in rows),
        "",
        "agreement between sources (share of pairs both answered left or right on which they agree):",
    ]
    matrix = result["agreement"]
    names = matrix["sources"]
    width = max(len(n) for n in names) + 4
    lines.append(" " * width + "".join(f"{i + 1:>7}" for i in range(len(names))))
    for i, (name, rates) in enumerate(zip(names, matrix["rate"])):
        lines.append(f"{i + 1:>2} {name}".ljust(width) + "".join(f"{_num(r):>7}" for r in rates))
    return "\n".join(lines)


def plot_comparison(result: dict[str, Any], path: Path, *, title: str | None = None) -> None:
    """Efficiency curves (held-out accuracy against N) beside the agreement matrix, as a PNG."""
    sources: dict[str, dict[str, Any]] = result["sources"]
    fig, (ax_curve, ax_matrix) = plt.subplots(1, 2, figsize=(14, 5.8), width_ratios=(1.1, 1))
    for i, (name, source) in enumerate(sources.items()):
        points = [p for p in source["efficiency"] if p["accuracy"] is not None]
        style = "--" if source["kind"] in ("people", "scripted person") else "-"
        ax_curve.plot(
            [p["labels"] for p in points],
            [p["accuracy"] for p in points],
            style,
            marker="o",
            color=f"C{i % 10}",
            label=name,
        )
    ax_curve.set_xscale("log", base=2)
    ticks = sorted({p["labels"] for s in sources.values() for p in s["efficiency"]})
    ax_curve.set_xticks(ticks, [str(t) for t in ticks], fontsize=8)
    ax_curve.minorticks_off()
    ax_curve.set_xlabel("labels the reward ensemble was fitted on (the source's first N answers)")
    ax_curve.set_ylabel(f"held-out accuracy against the oracle ({result['pair_set']['held_out']} pairs)")
    ax_curve.grid(alpha=0.3)
    ax_curve.legend(fontsize=8)
    matrix = result["agreement"]
    names = matrix["sources"]
    rates = [[float("nan") if r is None else r for r in row] for row in matrix["rate"]]
    image = ax_matrix.imshow(rates, vmin=0.5, vmax=1.0, cmap="viridis")
    ax_matrix.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax_matrix.set_yticks(range(len(names)), names, fontsize=8)
    for i, row in enumerate(rates):
        for j, rate in enumerate(row):
            if rate == rate:
                color = "k" if rate > 0.8 else "w"  # readable on viridis' yellow and its blue
                ax_matrix.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax_matrix.set_title("agreement on pairs both answered left or right", fontsize=10)
    fig.colorbar(image, ax=ax_matrix, fraction=0.046)
    fig.suptitle(title or f"label sources on {result['pairs']} pairs ({result['pair_set']['env_id'] or '?'})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(result: dict[str, Any], path: Path) -> None:
    """Write ``result`` to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
