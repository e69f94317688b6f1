"""The run's SQLite database of queries, their segments and the answers (WAL mode).

Every answer is committed the moment it arrives, so a killed trainer or labeling server loses
nothing. The trainer posts queries and polls answers; the labeling server (a separate process) reads
queries and writes answers. Either may restart at any time.

Tables:
    segments(id, data)          one compressed npz blob per segment (obs, acts, true rewards, states, frames)
    queries(id, left_id, right_id, created, repeat_of, assigned_to, assigned_at)
    answers(id, query_id, choice, labeler, created, seconds)
    meta(key, value)            free-form run metadata (e.g. the task's instructions)
"""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Sequence

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
                ids = [self._db.execute("INSERT INTO segments (data) VALUES (?)", (segment_to_bytes(s),)).lastrowid for s in (left, right)]
                cur = self._db.execute(
                    "INSERT INTO queries (left_id, right_id, created) VALUES (?, ?, ?)", (ids[0], ids[1], now)
                )
                assert cur.lastrowid is not None
                queries.append(Query(cur.lastrowid, left, right))
        return queries

    def add_repeat(self, query_id: int) -> int:
        """A second copy of a query (same segments), to measure agreement between labelers."""
        with self._transaction():
            row = self._db.execute("SELECT left_id, right_id FROM queries WHERE id = ?", (query_id,)).fetchone()
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
            "SELECT q.id FROM queries q LEFT JOIN answers a ON a.query_id = q.id WHERE a.id IS NULL ORDER BY q.id"
        )
        return [r[0] for r in rows]

    def num_queries(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM queries").fetchone()[0])

    # ---------------------------------------------------------------------------------- answers
    def add_answers(self, answers: Sequence[Answer]) -> None:
        """Commit answers; raises KeyError for an unknown query, ValueError for one already answered."""
        now = time.time()
        with self._transaction():
            for a in answers:
                if self._db.execute("SELECT 1 FROM queries WHERE id = ?", (a.query_id,)).fetchone() is None:
                    raise KeyError(f"no query {a.query_id}")
                try:
                    self._db.execute(
                        "INSERT INTO answers (query_id, choice, labeler, created, seconds) VALUES (?, ?, ?, ?, ?)",
                        (a.query_id, a.preference.name.lower(), a.labeler, now, float(a.seconds)),
                    )
                except sqlite3.IntegrityError as err:
                    raise ValueError(f"query {a.query_id} is already answered") from err

    def answers_after(self, answer_row: int) -> list[tuple[int, Answer]]:
        """Answers with a row id above ``answer_row``, as ``(row id, answer)``, oldest first."""
        rows = self._db.execute(
            "SELECT id, query_id, choice, labeler, seconds FROM answers WHERE id > ? ORDER BY id", (answer_row,)
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

    def num_answers(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def last_answer_row(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM answers").fetchone()[0])

    # ------------------------------------------------------------------------------------- meta
    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for the labeling server's own queries."""
        return self._db

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

    answers_persisted = True

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
