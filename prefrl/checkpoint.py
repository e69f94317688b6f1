"""Atomic checkpoints of a run: agent, reward model, observation statistics and loop state.

A checkpoint is written into a temporary directory, renamed into place, and only then named in
``checkpoints/LATEST`` (itself replaced atomically), so a process killed at any moment leaves the
previous checkpoint intact. Labels need no checkpoint: they are committed to SQLite as they arrive.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEEP = 2  # checkpoints kept on disk


def latest_checkpoint(run_dir: Path) -> Path | None:
    pointer = run_dir / "checkpoints" / "LATEST"
    if not pointer.exists():
        return None
    path = run_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / "state.json").exists() else None


def write_checkpoint(
    run_dir: Path, step: int, state: dict[str, Any], write_files: Callable[[Path], None]
) -> Path:
    """Write ``state.json`` and whatever ``write_files(dir)`` saves, as ``checkpoints/step-<step>``."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    write_files(tmp)
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    final = root / f"step-{step:012d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / ".LATEST.tmp"
    pointer_tmp.write_text(final.name)
    os.replace(pointer_tmp, root / "LATEST")
    old = sorted(p for p in root.iterdir() if p.name.startswith("step-") and p != final)
    for stale in old[: max(0, len(old) - (KEEP - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    for leftover in root.glob(".tmp-*"):
        if leftover != tmp:
            shutil.rmtree(leftover, ignore_errors=True)
    return final


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / "state.json").read_text())
