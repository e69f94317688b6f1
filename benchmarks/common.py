"""Shared helpers for benchmark scripts: machine description, JSON output, running prefrl runs."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from prefrl.sweep import Sweep, SweepRun

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent
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
    versions: dict[str, str | None] = {}
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
    """Writes ``data`` to ``path`` whole or not at all: a benchmark killed while writing leaves the previous
    results, never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)
    print(f"wrote {path}")


@contextmanager
def updating_json(path: Path) -> Iterator[dict[str, Any]]:
    """Yields the results in ``path`` (empty when none yet) to be changed in place, then writes them.

    Two runs of one benchmark started side by side each add their record to the same file; an exclusive
    lock (a hidden file beside it) is held from the read to the write, so that neither's record is lost.
    Nothing is written when the body raises."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(f".{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the lock file is closed
        data = json.loads(path.read_text()) if path.exists() else {}
        yield data
        write_json(path, data)


def setting(run: SweepRun, flag: str) -> str:
    """A sweep run's ``prefrl train`` setting, as the sweep passes it."""
    return run.args[run.args.index(flag) + 1]


def grid(specs: tuple[Path, ...], envs: tuple[str, ...] = (), *, order: Callable[[SweepRun], Any]) -> Sweep:
    """Every run of the sweep specs (on ``envs`` only, if given) as one sweep, sorted by ``order``; each
    spec must keep its runs' records (``keep``), since the benchmarks report from them."""
    from prefrl.sweep import Sweep, load_spec

    sweeps = [load_spec(path) for path in specs]
    for path, sweep in zip(specs, sweeps):
        if any(run.record_dir is None for run in sweep.runs):
            raise SystemExit(f"{path} has no `keep`: this benchmark reports from the kept records")
    runs = [run for sweep in sweeps for run in sweep.runs if not envs or setting(run, "--env") in envs]
    return Sweep(sweeps[0].out, sorted(runs, key=order), sweeps[0].runs_per_core)


def sweep_and_report(everything: Sweep, todo: Sweep | None, out: Path, cpus: int | None) -> dict[str, Any]:
    """Run ``todo`` (None: nothing) on a local Ray, then :func:`prefrl.report.write_report` every recorded run
    of ``everything`` to ``out`` (``.json``, ``.md``, ``.png``); the report's paths are relative to the
    repository. Ctrl-C stops the runs (they checkpoint) and reports what is recorded."""
    from prefrl.report import write_report
    from prefrl.sweep import run_sweep

    if todo is not None:
        try:
            run_sweep(todo, cpus=cpus)
        except KeyboardInterrupt:
            print("interrupted: the finished runs are recorded; reporting them", file=sys.stderr)
    keep = sorted({run.record_dir.parent for run in everything.runs if run.record_dir is not None})
    if not any(run.recorded_steps() >= run.steps for run in everything.runs):
        raise SystemExit("no finished run recorded yet: nothing to report")
    report = write_report([d for d in keep if d.exists()], out)
    for run in report["runs"]:
        run["run_dir"] = os.path.relpath(run["run_dir"], ROOT)
    return {**report, "records": [os.path.relpath(d, ROOT) for d in keep]}


@dataclass(frozen=True)
class Episode:
    states: np.ndarray
    """Simulator states ``(steps + 1, nq + nv)``, the reset state first."""
    true_return: float
    observations: np.ndarray
    """The observations the agent acted on ``(steps, *obs_shape)``, before its normalisation (what a
    reward model scores)."""
    actions: np.ndarray
    """``(steps, *action_shape)``."""


def play_final_policy(
    run_dir: Path, episodes: int, seed: int, *, deterministic: bool = True
) -> list[Episode]:
    """Play a run's latest checkpointed agent for ``episodes`` episodes of its env (MuJoCo tasks).

    The env is seeded with ``seed`` (pick one the run never trained on) and observation normalisation is
    frozen at the checkpoint's statistics; the return is the env's own (true) reward, which the agent never
    saw when it learned from preferences.
    """
    from stable_baselines3.common.vec_env import VecEnv, VecNormalize

    from prefrl import algos
    from prefrl.checkpoint import latest_checkpoint
    from prefrl.config import TrainConfig
    from prefrl.environment import make_vec_env

    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise SystemExit(
            f"{run_dir} holds no checkpoint to play (run directories are not committed): train it first"
        )
    config = TrainConfig.load(run_dir / "config.json")
    base = make_vec_env(config.env, 1, seed, config.make_kwargs() or None)
    venv: VecEnv = base
    if (checkpoint / "vecnormalize.pkl").exists():
        venv = VecNormalize.load(str(checkpoint / "vecnormalize.pkl"), base)
        venv.training, venv.norm_reward = False, False
    agent = algos.load_agent(config.algo, checkpoint / "agent.zip")
    played = []
    for _ in range(episodes):
        obs = venv.reset()
        states, total, done = [base.reset_infos[0]["sim_state"]], 0.0, False
        observations, actions = [], []
        while not done:
            action, _ = agent.predict(np.asarray(obs), deterministic=deterministic)
            raw = venv.get_original_obs() if isinstance(venv, VecNormalize) else obs
            observations.append(np.asarray(raw)[0])
            actions.append(np.asarray(action)[0])
            obs, rewards, dones, infos = venv.step(action)
            total, done = total + float(rewards[0]), bool(dones[0])
            states.append(infos[0]["sim_state"])  # (the step's own info, also at an episode's end)
        played.append(Episode(np.array(states), total, np.array(observations), np.array(actions)))
    venv.close()
    return played


def filmstrip(
    frames: np.ndarray, path: Path, *, fps: float, count: int = 12, columns: int = 6, title: str = ""
) -> None:
    """A PNG of ``count`` frames ``(n, H, W, 3)`` spaced evenly over a clip, in rows of ``columns``, each
    marked with its time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    rows, columns = -(-len(picks) // columns), min(columns, len(picks))
    height, width = frames.shape[1:3]
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.4 * columns, rows * 2.4 * height / width + 0.6), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, picks):
        ax.imshow(frames[index])
        ax.set_title(f"{index / fps:.2f} s", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(h_pad=1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
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
    queue = list(jobs)
    running: list[tuple[Path, subprocess.Popen[bytes]]] = []
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
