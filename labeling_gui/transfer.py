"""Moving pairs and answers between label stores: offline labeling, JSONL export and import.

A pair is identified across stores by a digest of its two segments' observations and actions (row ids
differ from store to store). So human answers collected once on a saved set of pairs
(``prefrl label --pairs FILE``) can be exported as JSONL and imported into any store holding the same pairs,
e.g. to compare them with a synthetic teacher's answers on those pairs.

JSONL export, one answer per line::

    {"query_id": 7, "pair": "<digest>", "choice": "left", "labeler": "ann", "created": 1.7e9,
     "seconds": 3.2, "repeat_of": null, "left_return": 12.5, "right_return": 3.1}
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from prefrl.label_store import LabelStore
from prefrl.segments import Segment
from prefrl.teachers import Answer, Preference

from .tasks import env_id_of

META_COPIED = ("env_id", "instructions", "fps")


def pair_digest(left: Segment, right: Segment) -> str:
    """A hex digest of the pair's observations and actions (order matters: left, then right)."""
    h = hashlib.sha256()
    for segment in (left, right):
        for array in (segment.obs, segment.acts):
            h.update(str((array.dtype.str, array.shape)).encode())
            h.update(array.tobytes())
    return h.hexdigest()[:32]


def store_path(source: Path) -> Path:
    """``labels.sqlite`` of a run directory, or the database file itself."""
    source = Path(source)
    path = source / "labels.sqlite" if source.is_dir() else source
    if not path.is_file():
        raise FileNotFoundError(
            f"{source} is neither a run directory with labels.sqlite nor a label database"
        )
    return path


def query_digests(store: LabelStore) -> dict[int, str]:
    """Digest of every query's pair, by query id (repeats share their original's digest)."""
    rows = store.query_segment_ids()
    by_segments: dict[tuple[int, int], str] = {}
    out = {}
    for qid, left_id, right_id in rows:
        key = (left_id, right_id)
        if key not in by_segments:
            by_segments[key] = pair_digest(store.segment(left_id), store.segment(right_id))
        out[qid] = by_segments[key]
    return out


def export_answers(store: LabelStore, out: TextIO) -> int:
    """Write every answer of ``store`` as one JSON line; returns how many."""
    digests = query_digests(store)
    returns: dict[int, float] = {}
    count = 0
    for r in store.answer_records():
        for sid in (r["left_id"], r["right_id"]):
            if sid not in returns:
                returns[sid] = store.segment(sid).true_return
        line = {
            "query_id": r["query_id"],
            "pair": digests[r["query_id"]],
            "choice": r["choice"],
            "labeler": r["labeler"],
            "created": r["created"],
            "seconds": r["seconds"],
            "repeat_of": r["repeat_of"],
            "left_return": returns[r["left_id"]],
            "right_return": returns[r["right_id"]],
        }
        out.write(json.dumps(line) + "\n")
        count += 1
    return count


@dataclass
class ImportStats:
    imported: int = 0
    already_answered: int = 0
    unknown_pairs: int = 0


def parse_answers(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Exported answers, checked: a malformed line raises ValueError naming its line number.

    Each item has the line's keys, ``choice`` as a Preference name in lower case, ``created`` and ``seconds``
    as floats (``seconds`` 0 and ``created`` now where missing) and ``line``, its line number. Blank lines
    are skipped.
    """
    return [_parse_line(i, text) for i, text in enumerate(lines, 1) if text.strip()]


def _parse_line(number: int, text: str) -> dict[str, Any]:
    try:
        item = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"line {number}: not JSON ({err.msg})") from None
    if not isinstance(item, dict):
        raise ValueError(f"line {number}: expected a JSON object")
    for key, kind in (("pair", str), ("choice", str), ("labeler", str)):
        if not isinstance(item.get(key), kind):
            raise ValueError(f"line {number}: {key!r} must be a string")
    try:
        item["choice"] = Preference.parse(item["choice"]).name.lower()
    except ValueError as err:
        raise ValueError(f"line {number}: {err}") from None
    for key in ("created", "seconds"):
        value = item.get(key, 0.0 if key == "seconds" else time.time())
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"line {number}: {key!r} must be a number >= 0")
        item[key] = float(value)
    item["line"] = number
    return item


def import_answers(store: LabelStore, lines: Iterable[str]) -> ImportStats:
    """Add exported answers to the matching unanswered queries of ``store``, all in one transaction.

    Every line is checked first: a malformed one raises ValueError (with its line number) and nothing is
    imported. An answer whose pair is not in the store counts as ``unknown_pairs``; one whose pair (and every
    repeat of it) is already answered counts as ``already_answered``.
    """
    items = parse_answers(lines)
    digests = query_digests(store)
    answered = {r["query_id"] for r in store.answer_records()}
    open_queries: dict[str, list[int]] = {}
    known = set(digests.values())
    for qid, digest in digests.items():  # originals (lower ids) first, then repeats
        if qid not in answered:
            open_queries.setdefault(digest, []).append(qid)
    stats = ImportStats()
    answers: list[Answer] = []
    created: list[float] = []
    for item in items:
        if item["pair"] not in known:
            stats.unknown_pairs += 1
        elif not open_queries.get(item["pair"]):
            stats.already_answered += 1
        else:
            qid = open_queries[item["pair"]].pop(0)
            answers.append(Answer(qid, Preference.parse(item["choice"]), item["labeler"], item["seconds"]))
            created.append(item["created"])
    store.add_answers(answers, created=created)  # one transaction: all or nothing
    stats.imported = len(answers)
    return stats


def copy_pairs(source: Path, store: LabelStore) -> int:
    """Copy the pairs (segments and queries, no answers) of the label database ``source`` into ``store``.

    Pairs already in ``store`` are skipped, so serving the same pairs file again resumes where labeling
    stopped. Repeats are not copied. The env id and instructions are copied when ``store`` has none.

    Returns:
        The number of pairs added.
    """
    with LabelStore(store_path(source)) as src:
        have = set(query_digests(store).values())
        src_digests = query_digests(src)
        pairs = []
        for qid, _, _ in src.query_segment_ids(repeats=False):
            if src_digests[qid] not in have:
                have.add(src_digests[qid])
                query = src.query(qid)
                pairs.append((query.left, query.right))
        meta = {key: src.get_meta(key) for key in META_COPIED}
        # Runs whose database predates the env_id meta still name their env in config.json.
        meta["env_id"] = env_id_of(src, store_path(source).parent)
    store.add_queries(pairs)
    for key, value in meta.items():
        if value is not None and store.get_meta(key) is None:
            store.set_meta(key, value)
    return len(pairs)
