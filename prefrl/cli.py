"""``prefrl``: train from preferences, resume, plot, label.

    prefrl train --env ENV --algo ALGO --teacher TEACHER --labels N --steps N --seed S --run-dir DIR
    prefrl resume DIR [--threads N] [--fit-threads N] [--device DEV]
    prefrl plot DIR [DIR ...] --out FILE.png
    prefrl sweep SPEC.toml [--address ADDR]
    prefrl report DIR [DIR ...] --out PREFIX
    prefrl envs

Bad input ends with a one-line ``prefrl: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import tyro

from prefrl.config import ConfigError, TrainConfig

USAGE = "usage: prefrl {train,resume,plot,sweep,report,envs,...} ...\n\n"
SUMMARIES = {
    "train": "train an agent from preferences (prefrl train --help)",
    "resume": (
        "continue an interrupted run: prefrl resume DIR [--threads N] [--device DEV] (prefrl resume --help)"
    ),
    "plot": "learning curves: prefrl plot DIR [DIR ...] --out FILE.png",
    "sweep": "a grid of runs on Ray, resumable: prefrl sweep SPEC.toml [--address auto]",
    "report": "normalised scores with IQM and bootstrap CIs (rliable): prefrl report DIR ... --out PREFIX",
    "envs": "list prefrl's task variants",
}
"""One line per subcommand for ``prefrl --help`` (commands added by :func:`register` bring their own)."""


class UsageError(ConfigError):
    pass


T = TypeVar("T")


def parse(cls: type[T], args: list[str], prog: str) -> T:
    """``tyro.cli(cls, args)``, with a bad value as one line (:class:`UsageError`) instead of a boxed message.

    ``--help`` still prints tyro's full help.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(cls, args=args, prog=prog)
    except SystemExit as stop:
        if stop.code in (0, None):
            raise
        raise UsageError(_first_message(captured.getvalue(), prog)) from None


def _first_message(text: str, prog: str) -> str:
    """The first paragraph of tyro's error (boxed on a terminal, ruled off in plain text) on one line."""
    rule = set("─-━═ ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and lines[0].startswith("╭"):
        lines = lines[1:]  # "╭─ Title ───╮"
    elif len(lines) > 1 and set(lines[1]) <= rule:
        lines = lines[2:]  # "Title" above a rule
    paragraph = []
    for line in lines:
        content = line.strip("│╰╯ ").strip()
        if not content or set(content) <= rule:
            break
        paragraph.append(content)
    message = " ".join(paragraph) or "bad arguments"
    return f"{message} (see `{prog} --help`)"


def cmd_train(args: list[str]) -> None:
    from prefrl.spec import resolve
    from prefrl.trainer import PreferenceTrainer

    spec = resolve(parse(TrainConfig, args, "prefrl train"))  # every check, before anything is written
    _report(PreferenceTrainer(spec).train())


@dataclass
class ResumeArgs:
    """Continue a run killed or stopped early, from its latest checkpoint; no label is lost."""

    run_dir: Annotated[Path, tyro.conf.Positional]
    device: str | None = None
    """Torch device from now on (default: the run's)."""
    threads: int | None = None
    """Torch threads for the agent from now on (default: the run's)."""
    fit_threads: int | None = None
    """Torch threads for reward-model fits from now on (default: the run's)."""
    progress_bar: bool = True
    """Show a progress bar."""


def cmd_resume(args: list[str]) -> None:
    from prefrl.trainer import PreferenceTrainer

    parsed = parse(ResumeArgs, args, "prefrl resume")
    config_path = parsed.run_dir / "config.json"
    if not config_path.exists():
        raise ConfigError(f"{parsed.run_dir} holds no prefrl run (no config.json); check the path")
    config = TrainConfig.load(config_path)
    config.run_dir = parsed.run_dir
    # How the run is computed may change on resume (another machine); what it computes may not.
    for name in ("device", "threads", "fit_threads"):
        if getattr(parsed, name) is not None:
            setattr(config, name, getattr(parsed, name))
    config.progress_bar = parsed.progress_bar
    _report(PreferenceTrainer(config, resume=True).train())


@dataclass
class PlotArgs:
    """True return vs env steps (with labels and reward-model accuracy) for each run, on one figure."""

    run_dirs: Annotated[list[Path], tyro.conf.Positional]
    out: Path = Path("learning_curves.png")
    title: str | None = None


def cmd_plot(args: list[str]) -> None:
    from prefrl.plotting import plot_runs

    parsed = parse(PlotArgs, args, "prefrl plot")
    try:
        plot_runs(parsed.run_dirs, parsed.out, title=parsed.title)
    except FileNotFoundError as err:
        raise ConfigError(str(err)) from None
    print(f"wrote {parsed.out}")


def cmd_envs(args: list[str]) -> None:
    import gymnasium as gym

    import prefrl.envs  # noqa: F401

    for env_id in sorted(k for k in gym.registry if k.startswith("prefrl/")):
        print(env_id)


def _report(stats: object) -> None:
    final = getattr(stats, "final_true_return", None)
    final_text = "n/a" if final is None else f"{final:.1f}"
    print(
        f"done: {stats.steps} steps, {stats.labels} labels, final true return {final_text}, "  # type: ignore[attr-defined]
        f"{stats.wall_s:.0f} s; run dir {stats.run_dir}"  # type: ignore[attr-defined]
    )


def cmd_sweep(args: list[str]) -> None:
    from prefrl import sweep

    sweep.main(args)


def cmd_report(args: list[str]) -> None:
    from prefrl import report

    report.main(args)


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "train": cmd_train,
    "resume": cmd_resume,
    "plot": cmd_plot,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "envs": cmd_envs,
}


def register(name: str, command: Callable[[list[str]], None], summary: str) -> None:
    """Add a subcommand and its line in ``prefrl --help`` (the labeling GUI adds ``label`` and ``labels``)."""
    COMMANDS[name] = command
    SUMMARIES[name] = summary


def usage() -> str:
    """``prefrl --help``: every subcommand with its one-line summary."""
    width = max(map(len, COMMANDS)) + 2
    lines = (f"  {name:<{width}} {SUMMARIES[name]}".rstrip() for name in COMMANDS)
    return USAGE + "\n".join(lines) + "\n"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum: int, frame: object) -> None:
    """The first stop signal becomes a KeyboardInterrupt, which the trainer turns into a checkpoint; the
    ones after it are ignored until that checkpoint is written. A ``kill`` of a whole process group reaches a
    run and the script driving it, which passes the stop on as SIGINT: that second signal must not abort the
    first one's checkpoint (``kill -9`` still ends the process at once, keeping the previous checkpoint)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_signals_checkpoint() -> Iterator[None]:
    """SIGINT and SIGTERM (Ctrl-C, ``kill``, a scheduler or ``docker stop``) raise KeyboardInterrupt, which
    the trainer turns into a checkpoint, even where the parent left SIGINT ignored (a job run with ``&``).

    Only the first stop signal counts; the handlers in place before come back when the context exits.
    Scripts that drive runs themselves (the long benchmarks) wrap their ``main`` in it too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        import prefrl.labeling_gui.cli  # noqa: F401  (registers its subcommands when present)
    except ImportError:
        pass
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    try:
        if command is None:
            raise UsageError(f"unknown command {argv[0]!r}; choose one of: {', '.join(COMMANDS)}")
        with stop_signals_checkpoint():
            command(argv[1:])
    except ConfigError as err:
        print(f"prefrl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("prefrl: interrupted; continue with `prefrl resume RUN_DIR`", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
