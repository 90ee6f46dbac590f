"""SQLite storage for a simulator: one table of JSON rows, a monotonically increasing version per write, atomic
`$batch` change sets (savepoints in one transaction per request). A file, or `:memory:` for tests."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any

from shared.connectors.wire import dumps, loads


@dataclass
class StoredRow:
    entity_set: str
    id: str
    key: str
    data: dict[str, Any]
    version: int
    created: str
    modified: str


def key_text(values: Mapping[str, Any], names: list[str]) -> str:
    """Keys compare case-insensitively, as in both apps' SQL collation. The text `json.dumps` makes of the list of
    values, put together from the same string encoder (a third of the cost: one per write)."""
    return "[" + ", ".join([_quoted(str(values.get(n, "")).lower()) for n in names]) + "]"


_DECIMAL_MARK = "\x00\x01decimal:"
_DECIMAL_QUOTED = '"\\u0000\\u0001decimal:'  # the mark as JSON text, after a string's opening quote


def _decimal(value: Any) -> str:
    if isinstance(value, Decimal):
        return _DECIMAL_MARK + format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON")


# A row's data as JSON, with a Decimal written as the number it is (what `wire.dumps` makes, read back by
# `wire.loads`), through one encoder made once rather than one per row written.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_decimal)


def _data_text(data: dict[str, Any]) -> str:
    try:
        text = _ENCODER.encode(data)
    except TypeError:
        return dumps(data)
    if _DECIMAL_QUOTED not in text:
        return text
    # Each marked string loses its mark and its quotes (what `wire.dumps` does with a regular expression, at a
    # quarter of the cost): the closing quote is the first after the mark, a Decimal's digits hold none.
    pieces = text.split(_DECIMAL_QUOTED)
    return pieces[0] + "".join([piece.replace('"', "", 1) for piece in pieces[1:]])


def _now() -> str:
    """`datetime.now(UTC).isoformat()`, its date and time of day made once a second (a write's time, per write)."""
    second, micro = divmod(time.time_ns() // 1_000, 1_000_000)
    if second != _SECOND[0]:
        _SECOND[:] = [second, datetime.fromtimestamp(second, UTC).isoformat()[:19]]
    return f"{_SECOND[1]}.{micro:06d}+00:00" if micro else f"{_SECOND[1]}+00:00"


_SECOND: list[Any] = [None, ""]  # the second last asked for (since the epoch) and its text


class Taken(Exception):
    """An insert refused by the store: the id or the key is another row's already."""

    def __init__(self, entity_set: str, row_id: str, key: str) -> None:
        super().__init__(f"{entity_set}: the id {row_id} or the key {key} is taken")
        self.entity_set, self.row_id, self.key = entity_set, row_id, key


class Store:
    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rows (entity_set TEXT, id TEXT, key TEXT, data TEXT, version INTEGER, "
            "created TEXT, modified TEXT, PRIMARY KEY (entity_set, id))"
        )
        self._db.execute("CREATE UNIQUE INDEX IF NOT EXISTS rows_key ON rows (entity_set, key)")
        self._db.execute("CREATE TABLE IF NOT EXISTS counter (version INTEGER)")
        # Deleted rows, for change tracking's `$deletedEntity` answers.
        self._db.execute("CREATE TABLE IF NOT EXISTS tombstones (entity_set TEXT, id TEXT, version INTEGER)")
        if self._db.execute("SELECT COUNT(*) FROM counter").fetchone()[0] == 0:
            self._db.execute("INSERT INTO counter VALUES (1000)")
        # The last version given, kept here rather than updated in the counter table by every write (a statement of
        # the six a bulk create costs): a file opened again goes on from the newest version it holds (a rolled-back
        # write leaves a gap, which nobody minds: versions only have to grow).
        self._version = max(
            int(self._db.execute("SELECT MAX(version) FROM counter").fetchone()[0] or 0),
            int(self._db.execute("SELECT MAX(version) FROM rows").fetchone()[0] or 0),
            int(self._db.execute("SELECT MAX(version) FROM tombstones").fetchone()[0] or 0),
        )
        self._depth = 0
        # An open change set's savepoint, taken only before its first write that is not an insert: until then the
        # rows it inserted (entity set, id) are all it would have to undo, by hand (`_ChangeSet`).
        self._savepoint_due = False
        self._inserted: list[tuple[str, str]] = []
        # Bumped by every write to an entity set (and, for all of them, by a rollback or a reset): what a caller
        # remembers of the rows "as of" a generation is still true while it is unchanged.
        self._generations: dict[str, int] = {}
        self._epoch = 0

    def generation(self, entity_set: str) -> tuple[int, int]:
        return self._epoch, self._generations.get(entity_set, 0)

    def _touch(self, entity_set: str) -> None:
        self._generations[entity_set] = self._generations.get(entity_set, 0) + 1

    def _row(self, r: tuple[Any, ...]) -> StoredRow:
        return StoredRow(r[0], r[1], r[2], loads(r[3]), r[4], r[5], r[6])

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Atomic: everything inside commits together or not at all (nested use joins the outer one)."""
        self._depth += 1
        if self._depth == 1:
            self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            if self._depth == 1:
                self._db.execute("ROLLBACK")
                self._epoch += 1
            raise
        else:
            if self._depth == 1:
                self._db.execute("COMMIT")
        finally:
            self._depth -= 1

    def batch(self) -> _Batch:
        """One SQLite transaction around a whole `$batch` request, committed however it ends: its change sets are
        savepoints in it (`change_set`), each undone alone when it fails, so what committed is exactly what a
        transaction per change set would have committed — for one BEGIN/COMMIT per request, not per change set."""
        return _Batch(self)

    def change_set(self) -> _ChangeSet:
        """Atomic: everything inside is written or nothing is. Inside `batch` (or any open transaction) a savepoint,
        rolled back alone on an error while the transaction goes on; otherwise a transaction of its own."""
        return _ChangeSet(self)

    def get(self, entity_set: str, row_id: str) -> StoredRow | None:
        r = self._db.execute("SELECT * FROM rows WHERE entity_set=? AND id=?", (entity_set, row_id.lower())).fetchone()
        return self._row(r) if r else None

    def find(self, entity_set: str, key: str) -> StoredRow | None:
        r = self._db.execute("SELECT * FROM rows WHERE entity_set=? AND key=?", (entity_set, key)).fetchone()
        return self._row(r) if r else None

    def all(self, entity_set: str) -> list[StoredRow]:
        cursor = self._db.execute("SELECT * FROM rows WHERE entity_set=? ORDER BY rowid", (entity_set,))
        return [self._row(r) for r in cursor]

    def page(self, entity_set: str, offset: int, limit: int) -> list[StoredRow]:
        """Rows in insertion order from `offset`: a page read without loading the whole table."""
        cursor = self._db.execute(
            "SELECT * FROM rows WHERE entity_set=? ORDER BY rowid LIMIT ? OFFSET ?", (entity_set, limit, offset)
        )
        return [self._row(r) for r in cursor]

    def insert_many(self, entity_set: str, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        """(id, key, data) rows in one statement: the bulk seed (`--generate`)."""
        self._savepoint()
        now = _now()
        first = self._next_version()
        self._touch(entity_set)
        self._version += len(rows)
        self._db.executemany(
            "INSERT INTO rows VALUES (?,?,?,?,?,?,?)",
            [(entity_set, i.lower(), k, dumps(d), first + n, now, now) for n, (i, k, d) in enumerate(rows)],
        )

    def insert(self, entity_set: str, row_id: str, key: str, data: dict[str, Any]) -> StoredRow:
        """A new row; `Taken` (nothing written, no version given) when its id or its key is another row's."""
        now = _now()
        version = self._version + 1
        try:
            self._db.execute(
                "INSERT INTO rows VALUES (?,?,?,?,?,?,?)",
                (entity_set, row_id.lower(), key, _data_text(data), version, now, now),
            )
        except sqlite3.IntegrityError:  # the primary key (entity_set, id) or the unique index (entity_set, key)
            raise Taken(entity_set, row_id, key) from None
        self._version = version
        self._touch(entity_set)
        if self._savepoint_due:
            self._inserted.append((entity_set, row_id.lower()))
        return StoredRow(entity_set, row_id.lower(), key, data, version, now, now)

    def update(self, row: StoredRow, data: dict[str, Any]) -> StoredRow:
        self._savepoint()
        now = _now()
        version = self._next_version()
        self._touch(row.entity_set)
        self._db.execute(
            "UPDATE rows SET data=?, version=?, modified=? WHERE entity_set=? AND id=?",
            (_data_text(data), version, now, row.entity_set, row.id),
        )
        return StoredRow(row.entity_set, row.id, row.key, data, version, row.created, now)

    def delete(self, row: StoredRow) -> None:
        self._savepoint()
        self._touch(row.entity_set)
        self._db.execute("INSERT INTO tombstones VALUES (?,?,?)", (row.entity_set, row.id, self._next_version()))
        self._db.execute("DELETE FROM rows WHERE entity_set=? AND id=?", (row.entity_set, row.id))

    def reset(self) -> None:
        self._savepoint()
        self._epoch += 1
        self._db.execute("DELETE FROM rows")
        self._db.execute("DELETE FROM tombstones")

    def _savepoint(self) -> None:
        """Before a write an open change set could not undo by hand: its savepoint, if not taken yet."""
        if self._savepoint_due:
            self._db.execute("SAVEPOINT change_set")
            self._savepoint_due = False

    def version(self) -> int:
        """The last version given to any write: a change-tracking token names it."""
        return self._version

    def changed_since(self, entity_set: str, version: int) -> tuple[list[StoredRow], list[str]]:
        """(rows written after `version`, in version order; ids of rows deleted after it)."""
        rows = self._db.execute(
            "SELECT * FROM rows WHERE entity_set=? AND version>? ORDER BY version", (entity_set, version)
        )
        gone = self._db.execute(
            "SELECT id FROM tombstones WHERE entity_set=? AND version>? ORDER BY version", (entity_set, version)
        )
        return [self._row(r) for r in rows], [str(g[0]) for g in gone]

    def count(self, entity_set: str) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM rows WHERE entity_set=?", (entity_set,)).fetchone()[0])


class _Batch:
    """`Store.batch`: a class, not a generator (entered once per `$batch`; the change sets' twin below once per
    change set, where a generator-based context manager's cost shows)."""

    __slots__ = ("_began", "_store")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._began = False

    def __enter__(self) -> None:
        store = self._store
        if store._depth == 0:
            store._db.execute("BEGIN")
            self._began = True
        store._depth += 1

    def __exit__(self, *exc: object) -> None:
        store = self._store
        store._depth -= 1
        if self._began:
            # Committed even on an exception: every change set inside already undid its own writes if it failed
            # (as when each was a transaction of its own), and the ones before it stay written.
            store._db.execute("COMMIT")


class _ChangeSet:
    """`Store.change_set`. Inside a transaction its savepoint is taken only before a write that is not an insert
    (`Store._savepoint`): a change set that only inserts (every bulk create) is undone, when it fails, by deleting
    the rows it inserted — no savepoint, no statement journal. Statements are atomic in SQLite, so a refused insert
    left nothing to undo; what the savepoint covers is rolled back to it first, then the rows inserted before it are
    deleted, which leaves the rows as they were before the change set (versions given stay given, as in any
    rollback)."""

    __slots__ = ("_outer", "_own", "_store")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._own = False  # a transaction of its own (none was open)
        self._outer: tuple[bool, list[tuple[str, str]]] | None = None  # an enclosing change set's state

    def __enter__(self) -> None:
        store = self._store
        if store._depth == 0:
            store._db.execute("BEGIN")
            self._own = True
        else:
            store._savepoint()  # an enclosing change set's, if due: what it does from here on is rolled back to it
            self._outer = (store._savepoint_due, store._inserted)
            store._savepoint_due, store._inserted = True, []
        store._depth += 1

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        store = self._store
        store._depth -= 1
        if self._own:
            store._db.execute("COMMIT" if kind is None else "ROLLBACK")
        else:
            assert self._outer is not None
            taken, inserted = not store._savepoint_due, store._inserted
            store._savepoint_due, store._inserted = self._outer
            if kind is None:
                if taken:
                    store._db.execute("RELEASE change_set")
                return
            if taken:
                store._db.execute("ROLLBACK TO change_set")
                store._db.execute("RELEASE change_set")
            for entity_set, row_id in reversed(inserted):
                store._db.execute("DELETE FROM rows WHERE entity_set=? AND id=?", (entity_set, row_id))
        if kind is not None:
            store._epoch += 1  # what a caller remembered "as of" a generation may have been rolled back


def number(value: Any) -> Any:
    return Decimal(str(value)) if isinstance(value, float) else value
