"""The run's SQLite database of queries, their segments and the answers (WAL mode).

Every answer is committed the moment it arrives, so a killed trainer or labeling server loses
nothing. The trainer posts queries and polls answers; the labeling server (a separate process) reads
queries and writes answers. Either may restart at any time.

Tables:
    segments(id, data)          one compressed npz blob per segment (obs, acts, true rewards, states, frames)
    queries(id, left_id, right_id, created, repeat_of, assigned_to, assigned_at)
    answers(id, query_id, choice, labeler, created, seconds)
    meta(key, value)            free-form run metadata (e.g. the task's instructions, the env id)
    clips(segment_id, path, error, created)   rendered clip of a segment (path relative to the store)
"""

from __future__ import annotations

import io
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefrl.segments import Segment
from prefrl.teachers import Answer, Preference, Query

SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    left_id INTEGER NOT NULL REFERENCES segments(id),
    right_id INTEGER NOT NULL REFERENCES segments(id),
    created REAL NOT NULL,
    repeat_of INTEGER REFERENCES queries(id),
    assigned_to TEXT,
    assigned_at REAL
);
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id INTEGER NOT NULL UNIQUE REFERENCES queries(id),
    choice TEXT NOT NULL,
    labeler TEXT NOT NULL,
    created REAL NOT NULL,
    seconds REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clips (
    segment_id INTEGER PRIMARY KEY REFERENCES segments(id),
    path TEXT,
    error TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS queries_by_pair ON queries(left_id, right_id);
CREATE INDEX IF NOT EXISTS queries_by_labeler ON queries(assigned_to);
"""


def segment_to_bytes(segment: Segment) -> bytes:
    arrays = {"obs": segment.obs, "acts": segment.acts, "true_rewards": segment.true_rewards}
    if segment.states is not None:
        arrays["states"] = segment.states
    if segment.frames is not None:
        arrays["frames"] = segment.frames
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def segment_from_bytes(data: bytes) -> Segment:
    with np.load(io.BytesIO(data)) as z:
        return Segment(
            obs=z["obs"],
            acts=z["acts"],
            true_rewards=z["true_rewards"],
            states=z["states"] if "states" in z else None,
            frames=z["frames"] if "frames" in z else None,
        )


class LabelStore:
    """Queries, segments and answers of one run, in ``path`` (created if missing).

    Safe to open from several processes at once; each instance holds its own connection and must be
    used from the thread that created it (open one per thread).
    """

    def __init__(self, path: str | Path, *, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- queries
    def add_queries(self, pairs: Sequence[tuple[Segment, Segment]]) -> list[Query]:
        """Store pairs (and their segments) as new queries in one transaction; returns them with ids."""
        now = time.time()
        queries = []
        with self._transaction():
            for left, right in pairs:
                ids = [
                    self._db.execute(
                        "INSERT INTO segments (data) VALUES (?)", (segment_to_bytes(s),)
                    ).lastrowid
                    for s in (left, right)
                ]
                cur = self._db.execute(
                    "INSERT INTO queries (left_id, right_id, created) VALUES (?, ?, ?)", (ids[0], ids[1], now)
                )
                assert cur.lastrowid is not None
                queries.append(Query(cur.lastrowid, left, right))
        return queries

    def add_repeat(self, query_id: int) -> int:
        """A second copy of a query (same segments), to measure agreement between labelers."""
        with self._transaction():
            row = self._db.execute(
                "SELECT left_id, right_id FROM queries WHERE id = ?", (query_id,)
            ).fetchone()
            if row is None:
                raise KeyError(f"no query {query_id}")
            cur = self._db.execute(
                "INSERT INTO queries (left_id, right_id, created, repeat_of) VALUES (?, ?, ?, ?)",
                (row[0], row[1], time.time(), query_id),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def query(self, query_id: int) -> Query:
        row = self._db.execute("SELECT left_id, right_id FROM queries WHERE id = ?", (query_id,)).fetchone()
        if row is None:
            raise KeyError(f"no query {query_id}")
        return Query(query_id, self.segment(row[0]), self.segment(row[1]))

    def segment(self, segment_id: int) -> Segment:
        row = self._db.execute("SELECT data FROM segments WHERE id = ?", (segment_id,)).fetchone()
        if row is None:
            raise KeyError(f"no segment {segment_id}")
        return segment_from_bytes(row[0])

    def pending_query_ids(self) -> list[int]:
        """Queries with no answer yet, oldest first (repeats included)."""
        rows = self._db.execute(
            "SELECT q.id FROM queries q LEFT JOIN answers a ON a.query_id = q.id "
            "WHERE a.id IS NULL ORDER BY q.id"
        )
        return [r[0] for r in rows]

    def num_queries(self, *, repeats: bool = True) -> int:
        """Queries asked; ``repeats=False`` leaves out copies shown again to measure agreement."""
        where = "" if repeats else " WHERE repeat_of IS NULL"
        return int(self._db.execute(f"SELECT COUNT(*) FROM queries{where}").fetchone()[0])

    # ---------------------------------------------------------------------------------- answers
    def add_answers(self, answers: Sequence[Answer], *, created: Sequence[float] | None = None) -> None:
        """Commit answers, all or none; raises KeyError for an unknown query, ValueError for one already
        answered.

        Args:
            created: each answer's time (imports keep the original ones); default now.
        """
        now = time.time()
        times = [now] * len(answers) if created is None else list(created)
        with self._transaction():
            for a, when in zip(answers, times, strict=True):
                if self._db.execute("SELECT 1 FROM queries WHERE id = ?", (a.query_id,)).fetchone() is None:
                    raise KeyError(f"no query {a.query_id}")
                try:
                    self._db.execute(
                        "INSERT INTO answers (query_id, choice, labeler, created, seconds) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (a.query_id, a.preference.name.lower(), a.labeler, when, float(a.seconds)),
                    )
                except sqlite3.IntegrityError as err:
                    raise ValueError(f"query {a.query_id} is already answered") from err

    def answers_after(self, answer_row: int) -> list[tuple[int, Answer]]:
        """Answers with a row id above ``answer_row``, as ``(row id, answer)``, oldest first."""
        rows = self._db.execute(
            "SELECT id, query_id, choice, labeler, seconds FROM answers WHERE id > ? ORDER BY id",
            (answer_row,),
        )
        return [(r[0], Answer(r[1], Preference.parse(r[2]), r[3], r[4])) for r in rows]

    def answered_pairs(self) -> Iterator[tuple[Query, Preference]]:
        """Every answered query that is not a repeat, with its answer, oldest first."""
        rows = self._db.execute(
            "SELECT q.id, a.choice FROM queries q JOIN answers a ON a.query_id = q.id "
            "WHERE q.repeat_of IS NULL ORDER BY a.id"
        ).fetchall()
        for query_id, choice in rows:
            yield self.query(query_id), Preference.parse(choice)

    def num_answers(self, *, labeler: str | None = None) -> int:
        """Answers stored, or those of one ``labeler``."""
        if labeler is None:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
        row = self._db.execute("SELECT COUNT(*) FROM answers WHERE labeler = ?", (labeler,)).fetchone()
        return int(row[0])

    def query_segment_ids(self, *, repeats: bool = True) -> list[tuple[int, int, int]]:
        """``(query id, left segment id, right segment id)`` of every query (or every original), by id."""
        where = "" if repeats else " WHERE repeat_of IS NULL"
        return [
            tuple(r)
            for r in self._db.execute(f"SELECT id, left_id, right_id FROM queries{where} ORDER BY id")
        ]

    def last_answer_row(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM answers").fetchone()[0])

    # ------------------------------------------------------------------------------------- meta
    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    # ------------------------------------------------------------- labeling GUI: claims, clips, stats
    def claim_queries(
        self, labeler: str, n: int, *, lease_s: float = 600.0, require_clips: bool = True
    ) -> list[int]:
        """Hand up to ``n`` unanswered queries to ``labeler``, in one transaction.

        Queries the labeler already holds (claimed, unanswered, claim younger than ``lease_s``) come
        first and have their claim renewed; the rest are the oldest queries nobody holds. So no query is
        handed to two labelers at once, and a repeat (``repeat_of``) never goes to the labeler who holds or
        answered another copy of the same pair. A claim left unanswered for ``lease_s`` lapses (the
        labeler closed the page) and the query goes to the next labeler who asks.

        Args:
            labeler: the labeler's name.
            n: how many queries the labeler wants to hold (the shown one and the prefetched ones).
            lease_s: seconds after which an unanswered claim lapses.
            require_clips: hand out only queries whose two clips are rendered (or failed to render:
                see :meth:`set_clip`).

        Returns:
            Query ids, the ones already held first, then by age.
        """
        now = time.time()
        expired = now - lease_s
        with self._transaction():
            held = [
                r[0]
                for r in self._db.execute(
                    "SELECT q.id FROM queries q WHERE q.assigned_to = ? AND q.assigned_at > ? "
                    "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.query_id = q.id) "
                    "ORDER BY q.assigned_at, q.id LIMIT ?",
                    (labeler, expired, n),
                )
            ]
            new: list[int] = []
            if len(held) < n:
                clips_ready = (
                    "AND EXISTS (SELECT 1 FROM clips c WHERE c.segment_id = q.left_id) "
                    "AND EXISTS (SELECT 1 FROM clips c WHERE c.segment_id = q.right_id) "
                    if require_clips
                    else ""
                )
                pair_sql = "SELECT left_id, right_id FROM queries WHERE id = ?"
                pairs = {tuple(self._db.execute(pair_sql, (q,)).fetchone()) for q in held}
                candidates = self._db.execute(
                    "SELECT q.id, q.left_id, q.right_id FROM queries q "
                    "WHERE (q.assigned_to IS NULL OR q.assigned_at <= ?) "
                    "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.query_id = q.id) "
                    "AND NOT EXISTS (SELECT 1 FROM queries o LEFT JOIN answers oa ON oa.query_id = o.id "
                    "  WHERE o.left_id = q.left_id AND o.right_id = q.right_id AND o.id != q.id "
                    "  AND ((o.assigned_to = ? AND oa.id IS NULL) OR oa.labeler = ?)) "
                    f"{clips_ready}ORDER BY q.id",
                    (expired, labeler, labeler),
                )
                for qid, left_id, right_id in candidates:
                    if len(held) + len(new) == n:
                        break
                    if (left_id, right_id) not in pairs:  # two copies of a pair never go to one labeler
                        pairs.add((left_id, right_id))
                        new.append(qid)
            self._db.executemany(
                "UPDATE queries SET assigned_to = ?, assigned_at = ? WHERE id = ?",
                [(labeler, now, qid) for qid in held + new],
            )
        return held + new

    def query_info(self, query_id: int) -> dict[str, Any]:
        """Segment ids, claim and answer of one query; raises KeyError for an unknown one."""
        row = self._db.execute(
            "SELECT q.left_id, q.right_id, q.repeat_of, q.assigned_to, q.assigned_at, a.choice, a.labeler "
            "FROM queries q LEFT JOIN answers a ON a.query_id = q.id WHERE q.id = ?",
            (query_id,),
        ).fetchone()
        if row is None:
            raise KeyError(f"no query {query_id}")
        keys = ("left_id", "right_id", "repeat_of", "assigned_to", "assigned_at", "choice", "answered_by")
        return dict(zip(keys, row, strict=True))

    def queue_length(self, *, lease_s: float = 600.0) -> int:
        """Unanswered queries that nobody holds (or whose claim lapsed)."""
        return int(
            self._db.execute(
                "SELECT COUNT(*) FROM queries q WHERE (q.assigned_to IS NULL OR q.assigned_at <= ?) "
                "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.query_id = q.id)",
                (time.time() - lease_s,),
            ).fetchone()[0]
        )

    def answer_records(self) -> list[dict[str, Any]]:
        """Every answer with its query's segment ids, ``repeat_of`` and when it was asked (``asked``, the
        query's ``created``), oldest first (for statistics)."""
        rows = self._db.execute(
            "SELECT a.query_id, q.left_id, q.right_id, q.repeat_of, q.created, a.choice, a.labeler, "
            "a.created, a.seconds FROM answers a JOIN queries q ON q.id = a.query_id ORDER BY a.id"
        )
        keys = (
            "query_id",
            "left_id",
            "right_id",
            "repeat_of",
            "asked",
            "choice",
            "labeler",
            "created",
            "seconds",
        )
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def segments_without_clips(self, limit: int = 16) -> list[int]:
        """Segments of unanswered queries that have no clip (nor a failed attempt), oldest query first."""
        rows = self._db.execute(
            "SELECT s FROM (SELECT q.id AS qid, q.left_id AS s FROM queries q UNION ALL "
            "SELECT q.id, q.right_id FROM queries q) "
            "WHERE NOT EXISTS (SELECT 1 FROM answers a WHERE a.query_id = qid) "
            "AND NOT EXISTS (SELECT 1 FROM clips c WHERE c.segment_id = s) ORDER BY qid, s LIMIT ?",
            (limit,),
        )
        return list(dict.fromkeys(r[0] for r in rows))

    def set_clip(self, segment_id: int, path: str | None, error: str | None = None) -> None:
        """Record a segment's rendered clip (``path`` relative to the store's folder) or why it failed."""
        self._db.execute(
            "INSERT OR REPLACE INTO clips (segment_id, path, error, created) VALUES (?, ?, ?, ?)",
            (segment_id, path, error, time.time()),
        )

    def clip(self, segment_id: int) -> tuple[str | None, str | None]:
        """``(path, error)`` of a segment's clip; ``(None, None)`` while it is not rendered yet."""
        row = self._db.execute("SELECT path, error FROM clips WHERE segment_id = ?", (segment_id,)).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")


class StoreTeacher:
    """People answering through the labeling GUI: queries live in the store, answers arrive there.

    ``post`` does nothing (the trainer already stored the queries); ``poll`` returns the answers the
    labeling server committed since the last poll. Its answers are already persisted.
    """

    stores_answers = True

    def __init__(self, store: LabelStore) -> None:
        self.store = store
        self._last_row = store.last_answer_row()

    def post(self, queries: Sequence[Query]) -> None:
        pass

    def poll(self) -> list[Answer]:
        rows = self.store.answers_after(self._last_row)
        if rows:
            self._last_row = rows[-1][0]
        return [a for _, a in rows]

    def pending(self) -> int:
        return len(self.store.pending_query_ids())
