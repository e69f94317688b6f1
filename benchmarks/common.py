"""Shared helpers for benchmark scripts: machine description, JSON output, running prefrl runs."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("prefrl", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "mujoco", "ale-py", "numpy")


def machine_info() -> dict[str, object]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "date": time.strftime("%Y-%m-%d"),
    }


def write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {path}")


def run_is_complete(run_dir: Path, steps: int) -> bool:
    state_file = run_dir / "checkpoints" / "LATEST"
    if not state_file.exists():
        return False
    state = json.loads((run_dir / "checkpoints" / state_file.read_text().strip() / "state.json").read_text())
    return int(state["step"]) >= steps


def launch(
    run_dir: Path, train_args: list[str], steps: int, log: Path, resume_args: list[str] | None = None
) -> subprocess.Popen[bytes] | None:
    """Start (or resume, with ``resume_args``) one run in a subprocess; None if it is already complete."""
    if run_is_complete(run_dir, steps):
        return None
    prefrl = [sys.executable, "-m", "prefrl"]
    if (run_dir / "config.json").exists():
        cmd = [*prefrl, "resume", str(run_dir), *(resume_args or [])]
    else:
        cmd = [
            *prefrl,
            "train",
            *train_args,
            "--steps",
            str(steps),
            "--run-dir",
            str(run_dir),
            "--no-progress-bar",
        ]
    log.parent.mkdir(parents=True, exist_ok=True)
    print(" ".join(cmd[2:]), flush=True)
    return subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def run_all(
    jobs: list[tuple[Path, list[str], int]],
    parallel: int,
    on_progress: Callable[[], None] | None = None,
    max_minutes: float | None = None,
    resume_args: list[str] | None = None,
) -> None:
    """Run jobs ``(run_dir, train_args, steps)``, ``parallel`` at a time; raise if one fails.

    Runs begun earlier are resumed, with ``resume_args`` (e.g. ``["--threads", "2"]``).

    ``on_progress`` is called every few minutes and whenever a run ends (e.g. to rewrite a report).
    After ``max_minutes`` the runs still going are interrupted cleanly (SIGINT: they checkpoint), and
    the same call later resumes them.
    """
    deadline = time.time() + 60 * max_minutes if max_minutes else float("inf")
    queue, running = list(jobs), []
    last_report = time.time()
    while (queue or running) and time.time() < deadline:
        while queue and len(running) < parallel:
            run_dir, args, steps = queue.pop(0)
            proc = launch(run_dir, args, steps, run_dir.parent / f"{run_dir.name}.log", resume_args)
            if proc is not None:
                running.append((run_dir, proc))
        for run_dir, proc in list(running):
            if proc.poll() is not None:
                running.remove((run_dir, proc))
                if proc.returncode != 0:
                    raise RuntimeError(f"run {run_dir} failed (exit {proc.returncode}); see {run_dir}.log")
                last_report = 0.0
        if on_progress is not None and time.time() - last_report > 300:
            on_progress()
            last_report = time.time()
        time.sleep(2)
    for run_dir, proc in running:  # out of time: stop cleanly, the next call resumes
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        print(f"stopped {run_dir} (resume with the same command)", flush=True)
    if on_progress is not None:
        on_progress()
