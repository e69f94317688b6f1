"""Label sources compared on the same pairs: people, the oracle, BPref's teachers and a scripted person.

``prefrl labels compare SET --people ann.jsonl bob.jsonl --out PREFIX``. SET is a label store (a run directory
or a ``labels.sqlite``): its pairs, repeats left out, are the one set that every source answers. Sources:

* **people**: files written by ``prefrl labels export`` after labeling SET's pairs in the GUI
  (``prefrl label --pairs SET``), one source per file, named after it. Answers are matched to pairs by the
  digest of both segments (:func:`~prefrl.labeling_gui.transfer.pair_digest`); a file with an answer for a
  pair outside the set, or a malformed line, is refused before anything is computed.
* **the oracle and BPref's teachers** (Lee et al. 2021: stochastic, myopic, mistake, skip, equal), answering
  the whole set as one batch (their thresholds are relative to the batch's largest absolute segment return).
* **a scripted person** (:class:`~prefrl.labeling_gui.scripted.ScriptedLabeler`): labels a copy of the set
  through the labeling server's HTTP API, as a browser does, waiting a person's 3-5 s before each answer
  (Christiano et al. 2017, App. B; scaled by ``pace_scale`` to save time) and choosing with BPref's noise on
  the true reward per step (:class:`~prefrl.labeling_gui.scripted.NoisyChoice`; the person of
  ``benchmarks/teachers_online.py``).

Per source: agreement with the oracle and with every other source, on the pairs both answered "left" or
"right" (as the stats page measures it); the shares of "equal" and "can't tell"; seconds per label (people and
the scripted person: the time each answer reports, and the median gap between one labeler's answers); and a
label-efficiency curve (:mod:`prefrl.label_efficiency`). A random share of the set (``held_out``) is kept out
of every fit; the curves are scored on it against the oracle's answers.
"""

from __future__ import annotations

import io
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI

from prefrl.label_efficiency import FIT_EPOCHS, efficiency_curve, spaces_of
from prefrl.label_store import LabelStore
from prefrl.segments import Pair
from prefrl.teachers import TEACHER_PRESETS, Preference, make_synthetic_teacher

from .scripted import NoisyChoice, ScriptedLabeler, true_reward_per_step
from .server import ServerSettings, create_app
from .tasks import env_id_of
from .transfer import copy_pairs, export_answers, parse_answers, query_digests, store_path

PERSON = "scripted-person"
DECIDED = (Preference.LEFT, Preference.RIGHT)
Log = Callable[[str], None]


@dataclass(frozen=True)
class PairSet:
    """The pairs every source answers, in the set's order, with each pair's digest."""

    path: Path
    pairs: list[Pair]
    digests: list[str]
    env_id: str | None
    index: dict[str, int]

    def __len__(self) -> int:
        return len(self.pairs)


def load_pair_set(source: Path) -> PairSet:
    """The pairs (queries, repeats and duplicates left out) of a run directory or ``labels.sqlite``.

    Raises:
        FileNotFoundError: no label store there.
        ValueError: fewer than 2 pairs, or segments of differing layouts.
    """
    path = store_path(source)
    with LabelStore(path) as store:
        digests = query_digests(store)
        pairs, kept = [], []
        for qid, _, _ in store.query_segment_ids(repeats=False):
            if digests[qid] not in kept:
                query = store.query(qid)
                pairs.append((query.left, query.right))
                kept.append(digests[qid])
        env_id = env_id_of(store, path.parent)
    if len(pairs) < 2:
        raise ValueError(f"{source} holds {len(pairs)} pairs; a comparison needs at least 2")
    layouts = {(s.obs.shape, s.acts.shape) for pair in pairs for s in pair}
    if len(layouts) > 1:
        raise ValueError(f"the segments of {source} differ in length or shape ({sorted(layouts)[:2]} ...)")
    return PairSet(path, pairs, kept, env_id, {d: i for i, d in enumerate(kept)})


@dataclass
class SourceAnswers:
    """One source's answers to (some of) the set's pairs.

    Attributes:
        name: the source's name in tables and plots.
        kind: "oracle", "synthetic teacher", "scripted person" or "people".
        answers: pair index → the source's (first) answer, in the order they were given.
        seconds: the time each answer reports taking (people and the scripted person).
        created: each labeler's answer times, oldest first.
        repeats: later answers to pairs already answered (another labeler's, on the GUI's repeated share).
        settings: what produced the answers (teacher parameters, file, pace).
    """

    name: str
    kind: str
    answers: dict[int, Preference] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    created: dict[str, list[float]] = field(default_factory=dict)
    repeats: list[tuple[int, Preference]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def read_answers(
    lines: Sequence[str], pair_set: PairSet, *, name: str, kind: str, origin: str
) -> SourceAnswers:
    """Exported answers (``prefrl labels export`` JSONL) as a source; ``origin`` names them in errors.

    Raises:
        ValueError: a malformed line, no answers, or answers for pairs that are not in the set.
    """
    try:
        items = parse_answers(lines)
    except ValueError as err:
        raise ValueError(f"{origin}: {err}") from None
    if not items:
        raise ValueError(f"{origin} holds no answers")
    unknown = [item["line"] for item in items if item["pair"] not in pair_set.index]
    if unknown:
        raise ValueError(
            f"{origin}: {len(unknown)} of {len(items)} answers (first on line {unknown[0]}) are for pairs "
            f"that are not among the {len(pair_set)} pairs of {pair_set.path}; compare answers given on "
            f"these pairs (labelled with `prefrl label --pairs {pair_set.path}`)"
        )
    source = SourceAnswers(name, kind, settings={"file": origin})
    for item in items:
        index, choice = pair_set.index[item["pair"]], Preference.parse(item["choice"])
        if index in source.answers:
            source.repeats.append((index, choice))
            continue
        source.answers[index] = choice
        source.seconds.append(item["seconds"])
        source.created.setdefault(item["labeler"], []).append(item["created"])
    return source


def read_people(path: Path, pair_set: PairSet, name: str) -> SourceAnswers:
    """A people's file written by ``prefrl labels export``."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from None
    return read_answers(text.splitlines(), pair_set, name=name, kind="people", origin=str(path))


def synthetic_answers(name: str, pair_set: PairSet, rng: np.random.Generator) -> SourceAnswers:
    """The BPref teacher ``name`` (or the oracle), answering the whole set as one batch."""
    left = np.stack([pair[0].true_rewards for pair in pair_set.pairs]).astype(np.float64)
    right = np.stack([pair[1].true_rewards for pair in pair_set.pairs]).astype(np.float64)
    choices = make_synthetic_teacher(name, rng).answer(left, right)
    kind = "oracle" if name == "oracle" else "synthetic teacher"
    answers = {i: Preference(int(c)) for i, c in enumerate(choices)}
    return SourceAnswers(name, kind, answers, settings={"bpref": TEACHER_PRESETS[name]})


@dataclass(frozen=True)
class PersonSettings:
    """The scripted person: BPref noise on the true reward per step
    (:func:`~prefrl.labeling_gui.scripted.true_reward_per_step`), and a person's pace (App. B: 3-5 s).

    ``pace_scale`` shrinks the pace to save time (0: answer at once); the seconds reported are the scaled
    ones.
    """

    beta: float = 50.0
    epsilon: float = 0.05
    pace_s: tuple[float, float] = (3.0, 5.0)
    pace_scale: float = 0.1


@contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on a free loopback port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    # log_config=None: a server inside this process leaves the process's logging as it is (uvicorn's own
    # configuration would close every handler already installed, and with it the streams some hold).
    config = uvicorn.Config(app, log_level="warning", lifespan="on", log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the labeling server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def scripted_person_answers(
    pair_set: PairSet, person: PersonSettings, rng: np.random.Generator, *, name: str = PERSON
) -> SourceAnswers:
    """The scripted person labels a copy of the set through the labeling server, as people do; its answers
    are then exported and read back as a people's file is."""
    choose_rng, pace_rng = rng.spawn(2)
    pace = (person.pace_s[0] * person.pace_scale, person.pace_s[1] * person.pace_scale)
    with tempfile.TemporaryDirectory(prefix="prefrl-compare-") as tmp:
        store_file = Path(tmp) / "labels.sqlite"
        with LabelStore(store_file) as store:
            copy_pairs(pair_set.path, store)
        choose = NoisyChoice(true_reward_per_step, beta=person.beta, epsilon=person.epsilon, rng=choose_rng)
        stop = threading.Event()
        timeout_s = 120 + 3 * len(pair_set) * (pace[1] + 0.05)
        timer = threading.Timer(timeout_s, stop.set)
        timer.start()
        try:
            with _serve(create_app(ServerSettings(run_dir=Path(tmp), render_clips=False))) as url:
                labeler = ScriptedLabeler(
                    url, store_file, choose, name=name, pace_s=pace if pace[1] > 0 else None, rng=pace_rng
                )
                answered = labeler.run(stop, max_answers=len(pair_set))
        finally:
            timer.cancel()
        if answered < len(pair_set):
            raise RuntimeError(
                f"the scripted person answered {answered} of {len(pair_set)} in {timeout_s:.0f} s"
            )
        with LabelStore(store_file) as store:
            exported = io.StringIO()
            export_answers(store, exported)
    source = read_answers(
        exported.getvalue().splitlines(), pair_set, name=name, kind="scripted person", origin=name
    )
    source.settings = {
        "score": "true reward per step of the segment",
        "beta": person.beta,
        "epsilon": person.epsilon,
        "pace_s": list(person.pace_s),
        "pace_scale": person.pace_scale,
        "via": "the labeling server's HTTP API (POST /api/claim, /api/answer), clips not rendered",
    }
    return source


# --------------------------------------------------------------------------------------- the comparison
@dataclass(frozen=True)
class CompareSettings:
    """How the sources are scored.

    Attributes:
        held_out: share of the set kept out of every fit, scored against the oracle.
        counts: the N of the efficiency curves, beside "all" (default 25, 50, 100, ... all).
        epochs: epochs of each reward-model fit.
        fits: fits per N (seeds), averaged.
        seed: seed of the held-out split, the teachers' noise and the fits.
    """

    held_out: float = 0.2
    counts: tuple[int, ...] | None = None
    epochs: int = FIT_EPOCHS
    fits: int = 1
    seed: int = 0


def oracle_truth(pair_set: PairSet) -> list[Preference]:
    """The oracle's answer to every pair (larger true return; ties are "equal")."""
    answers = synthetic_answers("oracle", pair_set, np.random.default_rng(0)).answers
    return [answers[i] for i in range(len(pair_set))]


def agreement(a: dict[int, Preference], b: dict[int, Preference]) -> tuple[float | None, int]:
    """Share of pairs on which ``a`` and ``b`` give the same answer, among those both answered left or right;
    and how many such pairs there are."""
    both = [i for i in a.keys() & b.keys() if a[i] in DECIDED and b[i] in DECIDED]
    if not both:
        return None, 0
    return float(np.mean([a[i] == b[i] for i in both])), len(both)


def _median_gap(created: dict[str, list[float]]) -> float | None:
    gaps = [g for times in created.values() for g in np.diff(sorted(times))]
    return float(np.median(gaps)) if gaps else None


def _source_summary(source: SourceAnswers, truth: dict[int, Preference], size: int) -> dict[str, Any]:
    answers = list(source.answers.values())
    oracle_rate, compared = agreement(source.answers, truth)
    summary: dict[str, Any] = {
        "kind": source.kind,
        "answers": len(answers),
        "coverage": len(answers) / size,
        "agreement_with_oracle": oracle_rate,
        "compared_with_oracle": compared,
        "share_equal": float(np.mean([a == Preference.EQUAL for a in answers])),
        "share_cant_tell": float(np.mean([a == Preference.SKIP for a in answers])),
        "seconds_per_label": float(np.median(source.seconds)) if source.seconds else None,
        "seconds_between_answers": _median_gap(source.created),
        "labelers": sorted(source.created),
        "repeats": len(source.repeats),
        "repeat_agreement": agreement(dict(source.repeats), source.answers)[0] if source.repeats else None,
        "settings": source.settings,
    }
    scale = source.settings.get("pace_scale")
    if scale and summary["seconds_per_label"] is not None:
        summary["seconds_per_label_at_full_pace"] = summary["seconds_per_label"] / scale
    return summary


def held_out_split(size: int, share: float, seed: int) -> set[int]:
    """The indices of the pairs kept out of every fit (at least one, and at least one left to fit on)."""
    if not 0 < share < 1:
        raise ValueError(f"the held-out share must be in (0, 1); got {share}")
    count = min(size - 1, max(1, round(share * size)))
    return set(np.random.default_rng([seed, 1]).permutation(size)[:count].tolist())


def compare_sources(
    pair_set: PairSet, sources: Sequence[SourceAnswers], settings: CompareSettings, *, log: Log | None = None
) -> dict[str, Any]:
    """Every figure of the comparison, as the JSON written by ``prefrl labels compare``.

    Returns:
        ``{pairs, pair_set, settings, sources: {name: {kind, answers, agreement_with_oracle, share_equal,
        share_cant_tell, seconds_per_label, ..., efficiency: [{labels, trained_on, accuracy, accuracies}]}},
        agreement: {sources, rate, compared}}``
    """
    log = log or (lambda message: None)
    truth_list = oracle_truth(pair_set)
    truth = dict(enumerate(truth_list))
    held = held_out_split(len(pair_set), settings.held_out, settings.seed)
    held_pairs = [pair_set.pairs[i] for i in sorted(held)]
    held_truth = [truth_list[i] for i in sorted(held)]
    decided = sum(t in DECIDED for t in held_truth)
    if not decided:
        raise ValueError("the oracle calls every held-out pair equal; raise the held-out share")
    obs_space, act_space = spaces_of(pair_set.pairs[0][0])
    out: dict[str, Any] = {
        "pairs": len(pair_set),
        "pair_set": {
            "path": str(pair_set.path),
            "env_id": pair_set.env_id,
            "segment_length": len(pair_set.pairs[0][0]),
            "held_out": len(held),
            "held_out_decided_by_oracle": decided,
        },
        "settings": {
            "held_out": settings.held_out,
            "counts": [*settings.counts, "all"] if settings.counts else "25, 50, 100, ... all",
            "epochs": settings.epochs,
            "fits": settings.fits,
            "seed": settings.seed,
            "ensemble": "prefrl.reward_model.RewardEnsemble, 3 MLPs (64, 64), as training uses",
        },
        "sources": {},
    }
    for source in sources:
        summary = _source_summary(source, truth, len(pair_set))
        train = [(i, a) for i, a in source.answers.items() if i not in held]
        started = time.monotonic()
        curve = efficiency_curve(
            [pair_set.pairs[i] for i, _ in train],
            [a for _, a in train],
            held_pairs,
            held_truth,
            observation_space=obs_space,
            action_space=act_space,
            counts=None if settings.counts is None else (*settings.counts, len(train)),
            epochs=settings.epochs,
            fits=settings.fits,
            seed=settings.seed,
        )
        summary["efficiency"] = [
            {
                "labels": p.labels,
                "trained_on": p.trained_on,
                "accuracy": p.accuracy,
                "accuracies": list(p.accuracies),
            }
            for p in curve
        ]
        out["sources"][source.name] = summary
        final = curve[-1].accuracy if curve else None
        log(
            f"{source.name}: {len(curve)} points x {settings.fits} fits, {time.monotonic() - started:.0f} s; "
            f"held-out accuracy with all {len(train)} answers " + ("n/a" if final is None else f"{final:.3f}")
        )
    names = [s.name for s in sources]
    pairwise = [[agreement(a.answers, b.answers) for b in sources] for a in sources]
    out["agreement"] = {
        "sources": names,
        "rate": [[rate for rate, _ in row] for row in pairwise],
        "compared": [[count for _, count in row] for row in pairwise],
    }
    return out


def gather_sources(
    pair_set: PairSet,
    *,
    people: Sequence[Path] = (),
    teachers: Sequence[str] = tuple(TEACHER_PRESETS),
    person: PersonSettings | None = PersonSettings(),
    seed: int = 0,
    log: Log | None = None,
) -> list[SourceAnswers]:
    """The oracle, then ``teachers``, the scripted person (unless None) and each people's file.

    People's files are read first, so that a bad one is refused before the scripted person starts.
    """
    log = log or (lambda message: None)
    unknown = [t for t in teachers if t not in TEACHER_PRESETS]
    if unknown:
        raise ValueError(f"unknown teacher {unknown[0]!r}; choose from {', '.join(TEACHER_PRESETS)}")
    used = {"oracle", *teachers, *([PERSON] if person else [])}
    files = []
    for path in people:
        name, n = Path(path).stem, 2
        while name in used:
            name, n = f"{Path(path).stem}-{n}", n + 1
        used.add(name)
        files.append(read_people(Path(path), pair_set, name))
    rng = np.random.default_rng([seed, 2])
    names = ["oracle", *dict.fromkeys(t for t in teachers if t != "oracle")]
    sources = [synthetic_answers(name, pair_set, r) for name, r in zip(names, rng.spawn(len(names)))]
    if person is not None:
        pace = person.pace_s[0] * person.pace_scale, person.pace_s[1] * person.pace_scale
        log(
            f"the scripted person labels {len(pair_set)} pairs through the labeling server, "
            f"{pace[0]:.2g}-{pace[1]:.2g} s each (a person's {person.pace_s[0]:g}-{person.pace_s[1]:g} s "
            f"x {person.pace_scale:g})"
        )
        started = time.monotonic()
        sources.append(scripted_person_answers(pair_set, person, rng.spawn(1)[0]))
        log(f"the scripted person answered in {time.monotonic() - started:.0f} s")
    return sources + files
