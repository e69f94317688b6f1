"""``prefrl label`` (serve the labeling page) and ``prefrl labels export|import`` (answers as JSONL).

    prefrl label --run-dir DIR [--host 127.0.0.1] [--port 8000] [--token T] [--repeat-share 0.1]
    prefrl label --pairs FILE [--run-dir DIR]        # a saved set of pairs, no training attached
    prefrl labels export SOURCE [--out answers.jsonl]
    prefrl labels import answers.jsonl --into TARGET
    prefrl labels compare SET [--people a.jsonl ...] [--out PREFIX]   # label sources on the same pairs

Importing this module registers both subcommands with :func:`prefrl.cli.register`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from prefrl.cli import parse, register
from prefrl.config import ConfigError

LOOPBACK_NAMES = {"localhost"}


@dataclass
class LabelArgs:
    """Serve the labeling page: people compare clip pairs of a run (or of a saved set of pairs)."""

    run_dir: Path | None = None
    """The run being trained (prefrl train ... --teacher human --run-dir DIR); with --pairs, where the
    answers go (default: next to the pairs file)."""
    pairs: Path | None = None
    """A saved set of pairs to label with no training attached: a run's labels.sqlite (or its directory)."""
    host: str = "127.0.0.1"
    """Address to bind; anything but loopback requires a token (one is generated if not given)."""
    port: int = 8000
    token: str | None = None
    """Required on every request when set (the page URL carries it as ?token=...)."""
    repeat_share: float = 0.0
    """Share of answered pairs shown again to a different labeler, to measure agreement (e.g. 0.1)."""
    clips: bool = True
    """Render clips (off: pairs are served without video, for scripted labelers)."""
    clip_width: int = 320
    clip_height: int = 240
    lease_s: float = 600.0
    """Seconds after which a pair handed to a labeler but not answered goes back to the queue."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_label_args(args: LabelArgs) -> tuple[Path, str | None]:
    """Check the arguments; returns ``(run dir, token)``. Copies the pairs of ``--pairs`` into the run dir."""
    if args.run_dir is None and args.pairs is None:
        raise ConfigError("give --run-dir DIR (a run being trained) or --pairs FILE (a saved set of pairs)")
    if not 0.0 <= args.repeat_share <= 1.0:
        raise ConfigError(f"--repeat-share must be in [0, 1]; got {args.repeat_share}")
    if args.clip_width % 2 or args.clip_height % 2 or min(args.clip_width, args.clip_height) < 16:
        raise ConfigError(
            "--clip-width and --clip-height must be even numbers >= 16 (H.264 needs even sizes)"
        )
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535; got {args.port}")
    token = args.token
    if token is not None and len(token) < 8:
        raise ConfigError("--token must be at least 8 characters")
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(18)
    run_dir = args.run_dir
    if args.pairs is not None:
        from prefrl.label_store import LabelStore

        from .transfer import copy_pairs, store_path

        try:
            source = store_path(args.pairs)
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
        run_dir = run_dir or source.parent / f"{source.stem}-offline"
        if (run_dir / "labels.sqlite").resolve() == source.resolve():
            raise ConfigError("--run-dir must differ from the directory of --pairs (answers go to a copy)")
        with LabelStore(run_dir / "labels.sqlite") as store:
            added = copy_pairs(source, store)
        print(f"offline labeling: {added} new pairs from {source} in {run_dir}")
    elif not run_dir.exists():  # type: ignore[union-attr]
        print(f"{run_dir} does not exist yet: waiting for `prefrl train --teacher human --run-dir {run_dir}`")
    assert run_dir is not None
    return run_dir, token


def cmd_label(argv: list[str]) -> None:
    import uvicorn

    from .server import ServerSettings, create_app

    args = tyro.cli(LabelArgs, args=argv, prog="prefrl label")
    run_dir, token = resolve_label_args(args)
    settings = ServerSettings(
        run_dir=run_dir,
        token=token,
        repeat_share=args.repeat_share,
        render_clips=args.clips,
        clip_size=(args.clip_width, args.clip_height),
        lease_s=args.lease_s,
    )
    app = create_app(settings)
    shown_host = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host  # all interfaces
    shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
    url = f"http://{shown_host}:{args.port}/" + (f"?token={token}" if token else "")
    if token and args.token is None:
        print(f"binding {args.host} (not loopback) needs a token; generated one: {token}")
    print(f"labeling {run_dir}: open {url}  (stats: {url.split('?')[0]}stats)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


@dataclass
class ExportArgs:
    """Write every answer of a run (or label database) as JSON lines."""

    source: Annotated[Path, tyro.conf.Positional]
    """A run directory or a labels.sqlite file."""
    out: Path | None = None
    """Output file (default: standard output)."""


@dataclass
class ImportArgs:
    """Add exported answers to the same pairs in another run (or label database)."""

    file: Annotated[Path, tyro.conf.Positional]
    """A JSONL file written by `prefrl labels export`."""
    into: Path
    """A run directory or labels.sqlite holding the pairs."""


BPrefTeacher = Literal["oracle", "stochastic", "myopic", "mistake", "skip", "equal"]


@dataclass
class CompareArgs:
    """Compare label sources on one set of pairs: people's exported answers, the oracle, BPref's synthetic
    teachers and a scripted person answering through the labeling server. Prints a table and writes
    PREFIX.json and PREFIX.png (label-efficiency curves, agreement matrix)."""

    pairs: Annotated[Path, tyro.conf.Positional]
    """The set of pairs: a run directory or labels.sqlite (its queries, repeats left out), e.g. the one whose
    pairs people labelled with `prefrl label --pairs`."""
    people: list[Path] = dataclasses.field(default_factory=list)
    """Files written by `prefrl labels export` after labeling these pairs; one source each, named after
    the file."""
    teachers: list[BPrefTeacher] = dataclasses.field(
        default_factory=lambda: ["stochastic", "myopic", "mistake", "skip", "equal"]
    )
    """BPref teachers to compare (the oracle is always included)."""
    person: bool = True
    """Include the scripted person (it labels the pairs through the labeling server's HTTP API)."""
    person_pace: tuple[float, float] = (3.0, 5.0)
    """A person's seconds per pair (App. B: 3-5 s), drawn uniformly before each answer."""
    pace_scale: float = 0.1
    """The scripted person waits person_pace x pace_scale (0: answers at once); reported as such."""
    person_beta: float = 50.0
    """The scripted person's BPref rationality on the true reward per step."""
    person_epsilon: float = 0.05
    """The scripted person's BPref mistake rate."""
    held_out: float = 0.2
    """Share of the pairs kept out of every fit; the curves are scored on them against the oracle."""
    labels: list[int] | None = None
    """The N of the efficiency curves, beside all of a source's answers (default 25 50 100 200 ...)."""
    epochs: int = 50
    """Epochs of each reward-model fit (a run's first fit)."""
    fits: int = 1
    """Fits per N, with their own seeds, averaged."""
    seed: int = 0
    threads: int = 1
    """Torch threads for the fits (1 suits the small MLPs)."""
    out: Path = Path("label_compare")
    """Output prefix: PREFIX.json and PREFIX.png."""


def cmd_compare(argv: list[str]) -> None:
    import torch

    from .compare import CompareSettings, PersonSettings, compare_sources, gather_sources, load_pair_set
    from .compare_report import format_table, plot_comparison, write_json

    args = parse(CompareArgs, argv, "prefrl labels compare")
    if not 0 < args.held_out < 1:
        raise ConfigError(f"--held-out must be in (0, 1); got {args.held_out}")
    if args.pace_scale < 0 or not 0 <= args.person_pace[0] <= args.person_pace[1]:
        raise ConfigError("--person-pace must be LOW HIGH with 0 <= LOW <= HIGH, and --pace-scale >= 0")
    if args.epochs < 1 or args.fits < 1 or args.threads < 1 or any(n < 1 for n in args.labels or []):
        raise ConfigError("--epochs, --fits, --threads and every --labels count must be >= 1")
    for path in args.people:
        if not path.is_file():
            raise ConfigError(f"{path} does not exist (give files written by `prefrl labels export`)")

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    torch.set_num_threads(args.threads)
    person = PersonSettings(args.person_beta, args.person_epsilon, args.person_pace, args.pace_scale)
    try:
        pair_set = load_pair_set(args.pairs)
        sources = gather_sources(
            pair_set,
            people=args.people,
            teachers=args.teachers,
            person=person if args.person else None,
            seed=args.seed,
            log=log,
        )
        settings = CompareSettings(
            args.held_out, tuple(args.labels) if args.labels else None, args.epochs, args.fits, args.seed
        )
        result = compare_sources(pair_set, sources, settings, log=log)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None
    print(format_table(result))
    json_path, png_path = (
        args.out.with_name(args.out.name + ".json"),
        args.out.with_name(args.out.name + ".png"),
    )
    write_json(result, json_path)
    plot_comparison(result, png_path)
    print(f"wrote {json_path} and {png_path}")


LABELS_USAGE = "usage: prefrl labels {export,import,compare} ...  (prefrl labels compare --help)"


def cmd_labels(argv: list[str]) -> None:
    from prefrl.label_store import LabelStore

    from .transfer import export_answers, import_answers, store_path

    if argv and argv[0] == "compare":
        cmd_compare(argv[1:])
        return
    if not argv or argv[0] not in ("export", "import"):
        if argv and argv[0] in ("-h", "--help"):
            print(LABELS_USAGE)
            return
        raise ConfigError(f"{LABELS_USAGE}; got {' '.join(argv) or 'nothing'}")
    try:
        if argv[0] == "export":
            ex = tyro.cli(ExportArgs, args=argv[1:], prog="prefrl labels export")
            with LabelStore(store_path(ex.source)) as store:
                if ex.out is None:
                    count = export_answers(store, sys.stdout)
                else:
                    with ex.out.open("w") as f:
                        count = export_answers(store, f)
            print(f"exported {count} answers" + (f" to {ex.out}" if ex.out else ""), file=sys.stderr)
        else:
            im = tyro.cli(ImportArgs, args=argv[1:], prog="prefrl labels import")
            if not im.file.is_file():
                raise ConfigError(f"{im.file} does not exist")
            with LabelStore(store_path(im.into)) as store, im.file.open() as f:
                stats = import_answers(store, f)
            print(
                f"imported {stats.imported} answers; {stats.already_answered} pairs were already answered, "
                f"{stats.unknown_pairs} answers are for pairs not in {im.into}"
            )
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None


SUBCOMMANDS = {
    "label": (cmd_label, "the labeling GUI for a run: prefrl label --run-dir DIR (prefrl label --help)"),
    "labels": (
        cmd_labels,
        "people's answers: prefrl labels export|import|compare (prefrl labels compare --help)",
    ),
}


def _register() -> None:
    for name, (command, summary) in SUBCOMMANDS.items():
        register(name, command, summary)
    # Under `python -m prefrl.cli` the running CLI is the module __main__, a second copy of prefrl.cli.
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if main is not None and spec is not None and spec.name == "prefrl.cli":
        for name, (command, summary) in SUBCOMMANDS.items():
            main.register(name, command, summary)


_register()
