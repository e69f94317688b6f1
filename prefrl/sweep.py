"""``prefrl sweep SPEC``: a grid of ``prefrl train`` runs as tasks on Ray, resumable.

A spec is a small TOML file (or YAML, ``.yaml``/``.yml``, with the same keys)::

    out = "runs/hopper-grid"            # one directory per run inside it, named after its settings
    imports = []                        # modules that register your own envs, imported by every run
    steps = 1000000
    seeds = [0, 1, 2]
    runs_per_core = 1                   # how many runs share a core (each task asks 1/runs_per_core CPUs)
    keep = "results/hopper-grid-runs"   # optional: a record of every finished run, to commit (below)

    [grid]                              # every combination of these lists is a run (× seeds)
    env = ["prefrl/Hopper-v0", "prefrl/Walker2d-v0"]
    algo = ["ppo"]
    teacher = ["true-reward", "oracle"]
    labels = [350, 700]                 # true-reward runs ignore it: one per env × algo × seed

    [settings]                          # any other `prefrl train` setting, for every run
    reward-update-interval = 10000

    [[override]]                        # settings for the runs that match (RL Zoo's per-task settings)
    match = { env = "prefrl/InvertedPendulum-v0" }
    steps = 200000

Each run's directory is exactly what ``prefrl train`` makes, plus ``train.log`` (the run's output). Running
the same command again skips finished runs (their latest checkpoint has reached ``steps``, which any run made
by ``prefrl train`` leaves) and resumes interrupted ones from their checkpoints. With ``keep``, each finished
run's record (``config.json``, ``spec.json``, ``metrics.csv`` and ``record.json``: a few tens of kB, all that
``prefrl report`` reads) is copied to ``keep/NAME``, and a run whose record is there counts as finished even
when its directory is gone: commit ``keep`` and a long sweep goes on in a later sitting, or on another
machine, from what is committed. A run that fails is reported
with the end of its log and the others go on. Every run's settings are checked before anything starts, and a
bad one is a one-line error, as is a run directory that already holds a run with other settings.

Ray: by default the command starts a local Ray on this machine's cores (and stops it at the end); with
``--address`` it joins an existing cluster, whose machines must all see ``out`` at the same path.
"""

from __future__ import annotations

import fcntl
import importlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from prefrl.checkpoint import latest_checkpoint, read_state
from prefrl.config import NO_LABELS, ConfigError, TrainConfig
from prefrl.metrics import read_metrics

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

LOG_TAIL_LINES = 15
STOP_TIMEOUT_S = 300
"""How long an interrupted sweep waits for its running runs to write their checkpoints."""
RUNTIME_SETTINGS = ("threads", "fit_threads", "device")
"""Settings that say how a run is computed, not what: a resumed run takes them from the spec."""
RECORD_FILES = ("config.json", "spec.json", "metrics.csv")
"""What a run's record keeps: what ``prefrl report`` reads and what ``prefrl train`` was asked."""
OBJECT_STORE_BYTES = 200 * 2**20
"""Ray's object store for a local sweep: the runs pass nothing through it but their exit codes."""


@dataclass(frozen=True)
class SweepRun:
    """One run of the grid: its directory and its ``prefrl train`` arguments."""

    name: str
    run_dir: Path
    args: tuple[str, ...]
    steps: int
    imports: tuple[str, ...] = ()
    record_dir: Path | None = None
    """Where the finished run's record is kept (the spec's ``keep``), if anywhere."""

    def command(self) -> list[str]:
        """``prefrl train`` for a new run, ``prefrl resume`` for one begun earlier (this machine's Python)."""
        prefrl = [sys.executable, "-m", "prefrl"]
        if self.imports:
            boot = f"import importlib, sys; [importlib.import_module(m) for m in {list(self.imports)!r}]; "
            prefrl = [
                sys.executable,
                "-c",
                boot + "from prefrl.cli import main; sys.exit(main(sys.argv[1:]))",
            ]
        if (self.run_dir / "config.json").exists():
            runtime = [
                a for flag, value in zip(self.args, self.args[1:]) if _is_runtime(flag) for a in (flag, value)
            ]
            return [*prefrl, "resume", str(self.run_dir), *runtime, "--no-progress-bar"]
        return [*prefrl, "train", *self.args]

    def steps_done(self) -> int:
        """Env steps of the latest checkpoint, or of the kept record (0 before either)."""
        checkpoint = latest_checkpoint(self.run_dir)
        done = int(read_state(checkpoint)["step"]) if checkpoint is not None else 0
        return max(done, self.recorded_steps())

    def recorded_steps(self) -> int:
        """Env steps of the run's kept record (0 when there is none)."""
        if self.record_dir is None:
            return 0
        try:
            return int(json.loads((self.record_dir / "record.json").read_text())["steps"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return 0

    def keep_record(self) -> None:
        """Copy the finished run's record to ``record_dir`` (written whole or not at all)."""
        if self.record_dir is None or self.recorded_steps() >= self.steps:
            return
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is None:
            return
        self.record_dir.mkdir(parents=True, exist_ok=True)
        for name in RECORD_FILES:
            if (self.run_dir / name).exists():
                shutil.copyfile(self.run_dir / name, self.record_dir / f".{name}.tmp")
                os.replace(self.record_dir / f".{name}.tmp", self.record_dir / name)
        state = read_state(checkpoint)
        record = {"name": self.name, "steps": int(state["step"]), "wall_s": state.get("wall_s")}
        tmp = self.record_dir / ".record.json.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, self.record_dir / "record.json")  # last: the record counts once this exists

    def steps_seen(self) -> int:
        """Env steps of the last logged episodes (moves on between checkpoints)."""
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return self.recorded_steps()
        steps = read_metrics(path)["step"]
        return int(steps[-1]) if len(steps) else 0

    @property
    def finished(self) -> bool:
        return self.steps_done() >= self.steps

    @property
    def log(self) -> Path:
        return self.run_dir / "train.log"


def _is_runtime(flag: str) -> bool:
    return flag.startswith("--") and flag[2:].replace("-", "_") in RUNTIME_SETTINGS


@dataclass
class Sweep:
    out: Path
    runs: list[SweepRun]
    runs_per_core: float


def load_spec(path: Path) -> Sweep:
    """The sweep described by a TOML or YAML file, every run's settings checked (one-line ConfigError
    otherwise)."""
    return sweep_from_spec(_read_spec(Path(path)), where=str(path))


def sweep_from_spec(spec: dict[str, Any], *, where: str = "spec") -> Sweep:
    """The sweep of a spec already read (the keys of a spec file), every run's settings checked; ``where``
    names it in errors. Lets a script derive sweeps from a spec file (fewer steps, other teachers)."""
    known = {"out", "keep", "imports", "steps", "seeds", "runs_per_core", "grid", "settings", "override"}
    unknown = set(spec) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {', '.join(sorted(unknown))}; a spec has {', '.join(sorted(known))}"
        )
    if "out" not in spec or "grid" not in spec:
        raise ConfigError(f"{where}: a spec needs `out` (a directory) and a [grid] table")
    grid = spec["grid"]
    if "env" not in grid:
        raise ConfigError(f"{where}: [grid] needs `env`, a list of env ids")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: [grid] {key} must be a non-empty list; got {values!r}")
    seeds = spec.get("seeds", [0])
    runs_per_core = spec.get("runs_per_core", 1)
    if not isinstance(runs_per_core, int | float) or runs_per_core <= 0:
        raise ConfigError(f"{where}: runs_per_core must be a positive number; got {runs_per_core!r}")
    out = Path(spec["out"]).absolute()  # relative to the current directory, as --run-dir is
    if not isinstance(spec.get("keep", ""), str):
        raise ConfigError(f"{where}: keep must be a directory's path; got {spec['keep']!r}")
    keep = Path(spec["keep"]).absolute() if spec.get("keep") else None
    if keep is not None and keep == out:
        raise ConfigError(f"{where}: `keep` must be another directory than `out` ({out})")
    imports = tuple(spec.get("imports", []))
    for module in imports:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"{where}: cannot import {module!r} ({err}); check `imports`") from None
    runs, names = [], set()
    # Names carry the grid's keys: an override's values follow from the keys it matches, so they add none.
    varying = set(grid)
    for combination in _combinations(grid, seeds):
        settings = {"steps": spec.get("steps", TrainConfig.steps), **spec.get("settings", {}), **combination}
        for override in spec.get("override", []):
            match = override.get("match", {})
            if all(str(settings.get(k)) == str(v) for k, v in match.items()):
                settings.update({k: v for k, v in override.items() if k != "match"})
        if settings.get("teacher") in NO_LABELS:
            settings.pop("labels", None)
        name = run_name(settings, varying)
        if name in names:
            continue  # e.g. true-reward runs of a grid over label budgets
        names.add(name)
        args = _arguments(settings, out / name)
        config = _check(name, args)
        _check_against_earlier(name, out / name, config)
        if keep is not None:
            _check_against_earlier(name, keep / name, config)
        record_dir = keep / name if keep is not None else None
        runs.append(SweepRun(name, out / name, tuple(args), int(settings["steps"]), imports, record_dir))
    return Sweep(out, runs, float(runs_per_core))


def run_name(settings: dict[str, Any], varying: set[str]) -> str:
    """``ENV-ALGO-TEACHER[-LABELS][-KEY=VALUE...]-sSEED``, naming the settings that vary across runs."""
    env = str(settings["env"]).replace("/", "_")
    teacher = settings.get("teacher", "oracle")
    labels = "" if teacher in NO_LABELS else f"-{settings.get('labels', TrainConfig.labels)}"
    named = ("env", "algo", "teacher", "labels", "seed")
    extra = "".join(f"-{k}={settings[k]}" for k in sorted(varying) if k not in named and k in settings)
    return f"{env}-{settings.get('algo', 'ppo')}-{teacher}{labels}{extra}-s{settings.get('seed', 0)}"


def _combinations(grid: dict[str, list[Any]], seeds: list[int]) -> Iterator[dict[str, Any]]:
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        for seed in seeds:
            yield {**dict(zip(keys, values)), "seed": seed}


def _arguments(settings: dict[str, Any], run_dir: Path) -> list[str]:
    args = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return [*args, "--run-dir", str(run_dir), "--no-progress-bar"]


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no sweep spec at {path}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
        if not isinstance(spec, dict):
            raise ConfigError(
                f"{path}: a spec is a mapping of keys (out, grid, ...); got {type(spec).__name__}"
            )
        return spec
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None


def _check(name: str, args: list[str]) -> TrainConfig:
    """The run's settings parsed and resolved exactly as ``prefrl train`` does, writing nothing."""
    from prefrl.cli import parse
    from prefrl.spec import resolve

    try:
        config = parse(TrainConfig, list(args), "prefrl train")
        resolve(config)
    except ConfigError as err:
        raise ConfigError(f"run {name}: {err}") from None
    return config


def _check_against_earlier(name: str, run_dir: Path, config: TrainConfig) -> None:
    """A run begun (or recorded) by an earlier sweep must have the settings the spec gives it now: ``prefrl
    resume`` keeps a run's settings and a kept record counts as done, so a changed spec, a setting added or
    one taken out, would otherwise be ignored without a word."""
    try:
        earlier = TrainConfig.load(run_dir / "config.json").to_json()
    except (FileNotFoundError, ConfigError):
        return  # a new run; or a broken one, which fails when it runs and is reported then
    now = config.to_json()
    for field in now:
        if field in (*RUNTIME_SETTINGS, "run_dir", "progress_bar", "format"):
            continue
        if json.dumps(earlier.get(field)) != json.dumps(now[field]):
            key = field.replace("_", "-")
            raise ConfigError(
                f"run {name}: {run_dir} holds a run with {key} = {earlier.get(field)!r}, the spec now says "
                f"{now[field]!r}; set another `out`, or delete that run directory to start it again"
            )


# ------------------------------------------------------------------------------------------- running
def run_task(run: SweepRun, cwd: str, env: dict[str, str]) -> int:
    """One run, as a subprocess. Cancelling the task (``ray.cancel``) interrupts the run, which writes a
    checkpoint and exits; the subprocess dies with its Ray worker.

    The run's ``prefrl`` process holds a lock on its log until it exits: the same run started again (a sweep
    run again after one killed outright) waits for the earlier process to end, and only then chooses between
    ``train`` and ``resume``.
    """
    run.run_dir.mkdir(parents=True, exist_ok=True)
    with open(run.log, "ab") as out:
        fcntl.flock(out, fcntl.LOCK_EX)  # the child shares this open file, so it holds the lock too
        if run.finished:
            return 0
        command = run.command()
        shown = command[next(i for i, a in enumerate(command) if a in ("train", "resume")) :]
        when = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"== {when} on {os.uname().nodename}: prefrl {' '.join(shown)}\n".encode())
        out.flush()  # also tells the sweep's table that the run has started
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **env},
            preexec_fn=die_with_parent,
        )
        try:
            while True:
                try:
                    return proc.wait(timeout=1.0)  # short waits let ray.cancel's KeyboardInterrupt in
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # prefrl writes a checkpoint and exits 130
            return proc.wait()


def die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: the child gets SIGTERM when its parent dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def local_cpus(requested: int | None = None) -> int | None:
    """Cores for a local Ray: ``requested``, else those this process may run on where that is fewer than the
    machine has (``taskset``; Ray itself counts the machine's cores and container quotas, not affinity), else
    None (Ray's own count)."""
    if requested is not None:
        return requested
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return allowed if allowed is not None and allowed < (os.cpu_count() or allowed) else None


def run_sweep(
    sweep: Sweep, *, address: str | None = None, cpus: int | None = None, poll_s: float = 2.0
) -> dict[str, str]:
    """Run every unfinished run of ``sweep`` on Ray; returns each run's end: finished, failed or skipped.
    ``cpus`` bounds a local Ray's cores (default: :func:`local_cpus`)."""
    import ray

    sweep.out.mkdir(parents=True, exist_ok=True)
    status = {run.name: "skipped (finished earlier)" for run in sweep.runs if run.finished}
    for run in sweep.runs:
        if run.name in status:
            run.keep_record()  # a run finished before `keep` was set
    todo = [run for run in sweep.runs if run.name not in status]
    if not todo:
        return status
    quiet = logging.WARNING  # the table says what happens
    # ray.init installs a SIGTERM handler of its own that ends the process at once: keep ours, so that
    # `kill` stops the runs with a checkpoint as Ctrl-C does.
    stop_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=quiet)
        except ConnectionError as err:
            raise ConfigError(
                f"cannot reach a Ray cluster at {address} ({err}); start one with `ray start --head`, "
                "or leave out --address to run on this machine"
            ) from None
    else:  # a cluster of its own, even where `ray start` left one running
        ray.init(
            address="local",
            num_cpus=local_cpus(cpus),
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=quiet,
        )
    if threading.current_thread() is threading.main_thread():
        for sig, handler in stop_handlers.items():
            signal.signal(sig, handler)
    remote = ray.remote(num_cpus=1 / sweep.runs_per_core, max_retries=0)(run_task)
    cwd = os.getcwd()  # on a cluster, the same path on every machine
    env = {"PYTHONPATH": os.pathsep.join(p for p in (cwd, os.environ.get("PYTHONPATH")) if p)}
    for key in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        if key in os.environ:
            env[key] = os.environ[key]
    start = time.time()
    pending = {remote.remote(run, cwd, env): run for run in todo}
    table = _LiveTable(sweep, status, start)
    try:
        while pending:
            done, _ = ray.wait(list(pending), timeout=poll_s, num_returns=len(pending))
            for ref in done:
                run = pending.pop(ref)
                try:
                    code = ray.get(ref)
                except ray.exceptions.RayError as err:  # its worker or machine died
                    status[run.name] = f"failed ({type(err).__name__})"
                    continue
                status[run.name] = "finished" if code == 0 and run.finished else f"failed (exit {code})"
                if status[run.name] == "finished":
                    run.keep_record()
            table.show(pending.values())
    except KeyboardInterrupt:
        table.close()
        print(f"stopping: {len(pending)} runs write their checkpoints", file=sys.stderr, flush=True)
        for ref in pending:
            ray.cancel(ref)  # a running run is interrupted (see run_task), a waiting one dropped
        ray.wait(list(pending), num_returns=len(pending), timeout=STOP_TIMEOUT_S)
        raise
    finally:
        table.close()
        ray.shutdown()
    return status


class _LiveTable:
    """Runs done, running and failed, with steps and time left: a live table on a terminal, else a line when
    a run starts or ends and every :attr:`LINE_EVERY_S` seconds (a log shows progress during long runs)."""

    LINE_EVERY_S = 300.0

    def __init__(self, sweep: Sweep, status: dict[str, str], start: float) -> None:
        self.sweep, self.status, self.start, self._last = sweep, status, start, ""
        self._last_time = 0.0
        self._start_steps = self._steps()
        self._live: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=1)
            self._live.start()

    def show(self, pending: Any) -> None:
        pending = list(pending)
        running = [run for run in pending if self._started(run)]
        done = sum(s == "finished" or s.startswith("skipped") for s in self.status.values())
        failed = sum(s.startswith("failed") for s in self.status.values())
        total, steps = sum(run.steps for run in self.sweep.runs), self._steps()
        elapsed = time.time() - self.start
        rate = (steps - self._start_steps) / elapsed if elapsed > 0 else 0.0  # steps per second this sitting
        left = f"about {(total - steps) / rate / 60:.0f} min left" if rate > 0 else "time left unknown yet"
        line = (
            f"{done} done, {len(running)} running, {len(pending) - len(running)} waiting, {failed} failed; "
            f"{steps:,}/{total:,} steps; {left}"
        )
        if self._live is None:
            now = time.time()
            if line.split(";")[0] != self._last.split(";")[0] or now - self._last_time >= self.LINE_EVERY_S:
                print(line, file=sys.stderr, flush=True)
                self._last_time = now
            self._last = line
            return
        from rich.table import Table

        table = Table(title=line)
        for column in ("run", "status", "steps"):
            table.add_column(column)
        for run in self.sweep.runs:
            state = self.status.get(run.name, "running" if run in running else "waiting for a core")
            table.add_row(run.name, state, f"{max(run.steps_done(), run.steps_seen()):,}/{run.steps:,}")
        self._live.update(table)

    def _started(self, run: SweepRun) -> bool:
        """Its task has begun: :func:`run_task` writes a line to the run's log when it starts it."""
        try:
            return run.log.stat().st_mtime >= self.start
        except FileNotFoundError:
            return False

    def _steps(self) -> int:
        return sum(min(run.steps, max(run.steps_done(), run.steps_seen())) for run in self.sweep.runs)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


@dataclass
class SweepArgs:
    """Run a grid of `prefrl train` runs on Ray (see prefrl/sweep.py for the spec's format)."""

    spec: Annotated[Path, tyro.conf.Positional]
    address: str | None = None
    """An existing Ray cluster (e.g. auto, or HOST:6379); default: start a local Ray on this machine."""
    cpus: int | None = None
    """Cores a local Ray uses (default: those this process may run on); e.g. 1 to leave a core free."""
    check_only: bool = False
    """Only check the spec and list its runs."""


def main(args: list[str]) -> None:
    from prefrl.cli import parse

    parsed = parse(SweepArgs, args, "prefrl sweep")
    if parsed.cpus is not None and parsed.cpus < 1:
        raise ConfigError(f"--cpus must be >= 1; got {parsed.cpus}")
    if parsed.cpus is not None and parsed.address:
        raise ConfigError(
            "--cpus applies to a local Ray; a cluster at --address has the cores it was started with"
        )
    sweep = load_spec(parsed.spec)
    if parsed.check_only:
        for run in sweep.runs:
            print(f"{run.name}: {'finished' if run.finished else 'to run'}")
        return
    try:
        status = run_sweep(sweep, address=parsed.address, cpus=parsed.cpus)
    except KeyboardInterrupt:
        print("prefrl: sweep interrupted; run the same command again to continue it", file=sys.stderr)
        raise SystemExit(130) from None
    failed = {name: s for name, s in status.items() if s.startswith("failed")}
    for run in sweep.runs:
        print(f"{run.name}: {status[run.name]}")
        if run.name in failed and run.log.exists():
            tail = run.log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            print("\n".join(f"    {line}" for line in tail))
    print(f"{len(sweep.runs) - len(failed)} of {len(sweep.runs)} runs finished; runs in {sweep.out}")
    if failed:
        raise SystemExit(1)
