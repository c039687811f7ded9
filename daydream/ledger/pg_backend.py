"""A ledger on a PostgreSQL server: the ``Backend`` protocol on psycopg 3 (issue 17).

``PgBackend`` is ``SqliteBackend``'s sibling (``daydream.ledger.backend``): the same methods, so
``Ledger`` and its callers do not know which database they talk to. What differs sits here:

- Parameters. Runtime SQL is written with ``:name`` (and, in older statements, ``?``) in
  ``sqlite3``'s style; the cursors lent out translate it once per statement text (cached) to
  psycopg's ``%(name)s`` / ``%s``, leaving quoted strings, identifiers and ``::`` casts alone.
- The write lock. SQLite's ``BEGIN IMMEDIATE`` lets one writer in at a time; here every write
  transaction starts by locking the one row of ``chain_head`` (``SELECT … FOR UPDATE``, READ
  COMMITTED), which serialises appends from every process on every host into one chain: the
  append reads the last event under that lock, and moves the head before it commits.
- Snapshots (``verify``, copies) are ``REPEATABLE READ, READ ONLY`` transactions.
- ``IN`` lists are ``= ANY(:list)`` with one array parameter, so there is no length limit.
- U+0000 cannot be stored in PostgreSQL's TEXT: a payload or text holding one is refused with
  a clear error before anything is written (SQLite stores it; ``daydream copy`` refuses it too).

psycopg is an optional extra (``pip install 'daydream[postgres]'``); ``require_psycopg`` says so
in one line when it is missing. Connections run in autocommit mode at the driver level, so that,
as with ``sqlite3``, the backend says ``BEGIN`` itself.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from daydream.errors import DaydreamError, LedgerPathError, UsageError

T = TypeVar("T")

EXTRA_HINT = ("PostgreSQL ledgers need the 'postgres' extra (psycopg 3): pip install 'daydream[postgres]' "
              "or uv sync --extra postgres")
# A write transaction's first statement: the row lock every writer takes, in turn.
LOCK_HEAD = "SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE"
# What the ledger's appends ask first (daydream.ledger.store.LAST_EVENT; a test checks they agree).
LAST_EVENT = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
BEGIN_LOCKED = f"BEGIN; {LOCK_HEAD}; {LAST_EVENT}"
SCHEMA_RECHECK_S = 5.0
# Deadlocks and serialisation failures are retried like SQLite's "database is locked".
_RETRY_SQLSTATES = {"40001", "40P01"}
RETRY_FOR_S = 120.0


def is_postgres_url(db: str | Any) -> bool:
    """Whether ``--db`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def require_psycopg() -> Any:
    """The psycopg module, or a one-line ``UsageError`` naming the extra to install."""
    try:
        import psycopg
    except ImportError:
        raise UsageError(EXTRA_HINT) from None
    return psycopg


def _errors() -> Any:
    import psycopg.errors

    return psycopg.errors


def _number_loader(psycopg: Any) -> Any:
    """A loader giving NUMERIC values as int (when whole) or float, as SQLite gives its numbers.

    PostgreSQL's SUM of integers, AVG and ROUND(x, n) are NUMERIC, which psycopg would hand over as
    Decimal: readers (reports, --json output) expect the ints and floats SQLite returns.
    """
    global _NumberLoader
    if _NumberLoader is None:
        class NumberLoader(psycopg.adapt.Loader):
            def load(self, data: Any) -> Any:
                text = bytes(data).decode()
                if "." in text or "e" in text or "N" in text or "I" in text:
                    return float(text)
                return int(text)

        _NumberLoader = NumberLoader
    return _NumberLoader


_NumberLoader: Any = None


# ----------------------------------------------------------------------------- parameters
_TOKENS = re.compile(r"""('(?:[^']|'')*')|("(?:[^"]|"")*")|(::)|:([A-Za-z_][A-Za-z0-9_]*)|(\?)|(%)""")


def _convert(match: re.Match[str]) -> str:
    literal, ident, cast, name, qmark, percent = match.groups()
    if literal:  # psycopg reads % everywhere in the text, quoted or not
        return literal.replace("%", "%%")
    if ident or cast:
        return match.group(0)
    if name:
        return f"%({name})s"
    if qmark:
        return "%s"
    return "%%"


_converted: dict[str, str] = {}


def to_pyformat(sql: str) -> str:
    """``:name`` -> ``%(name)s`` and ``?`` -> ``%s`` outside quotes, ``%`` -> ``%%`` everywhere (cached per text)."""
    out = _converted.get(sql)
    if out is None:
        out = _TOKENS.sub(_convert, sql)
        if len(_converted) < 10_000:
            _converted[sql] = out
    return out


class LedgerNulCharacter(DaydreamError):
    """A text or payload holds U+0000, which PostgreSQL's TEXT cannot store."""

    def __init__(self, where: str = "a value to store") -> None:
        super().__init__(f"{where} contains the character U+0000 (NUL), which a PostgreSQL ledger cannot "
                         "store (TEXT refuses it); nothing was written: remove it, or use a SQLite ledger")


class NotYetOnPostgres(DaydreamError):
    """A command needs a part of the schema that PostgreSQL ledgers do not have yet (issue 17)."""


def _not_yet(exc: Exception | str) -> NotYetOnPostgres:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return NotYetOnPostgres(
        f"this command needs what PostgreSQL ledgers do not have yet ({first}): on PostgreSQL daydream keeps the "
        "events, texts, chain head, projections and views of its schema revision; a statement written for SQLite "
        "only can be run on a SQLite copy: daydream copy URL ledger.db")


_NOTHING = object()


class PgCursor:
    """A psycopg cursor that takes ``sqlite3``-style SQL (see ``to_pyformat``).

    In a write transaction, the last event was read with the lock (``prefetched``): the append's
    own ``LAST_EVENT`` query is answered from it, saving a round trip under the lock, as long as
    nothing but reads ran before it in the transaction.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.prefetched: Any = _NOTHING
        self._answer: Any = _NOTHING
        # Set when ``finish_append`` sent the COMMIT with the append's last round trip.
        self.committed = False

    def execute(self, sql: str, params: Any = None, /) -> "PgCursor":
        self._answer = _NOTHING
        if self.prefetched is not _NOTHING:
            if sql == LAST_EVENT and not params:
                self._answer, self.prefetched = self.prefetched, _NOTHING
                return self
            if not sql.lstrip()[:6].upper() == "SELECT":
                self.prefetched = _NOTHING  # a write: the last event may have changed
        if sql.lstrip()[:6].upper() == "PRAGMA":  # SQLite's own statements (projections check, rebuild)
            raise _not_yet(f"SQLite statement: {sql.strip()[:40]}")
        try:
            if params:
                self._raw.execute(to_pyformat(sql), params)
            else:  # without parameters psycopg sends the text as it is (no % escapes)
                self._raw.execute(sql)
        except (_errors().UndefinedTable, _errors().UndefinedFunction) as exc:
            # A view, projection table or SQLite function the PostgreSQL schema lacks: say so in
            # one line (with what to do) rather than as an internal error.
            raise _not_yet(exc) from None
        return self

    def executemany(self, sql: str, rows: Any, /) -> "PgCursor":
        self.prefetched = self._answer = _NOTHING
        self._raw.executemany(to_pyformat(sql), rows)
        return self

    def fetchone(self) -> Any:
        if self._answer is not _NOTHING:
            row, self._answer = self._answer, _NOTHING
            return row
        return self._raw.fetchone()

    def fetchmany(self, size: int = 1000, /) -> list[Any]:
        return self._raw.fetchmany(size)

    def fetchall(self) -> list[Any]:
        if self._answer is not _NOTHING:
            row, self._answer = self._answer, _NOTHING
            return [] if row is None else [row]
        return self._raw.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    @property
    def rowcount(self) -> int:
        return self._raw.rowcount

    @property
    def description(self) -> Any:
        return self._raw.description

    def close(self) -> None:
        self._raw.close()


class PgConnection:
    """What ``read`` and ``snapshot`` lend: ``execute`` and ``cursor`` in ``sqlite3``'s style.

    In a snapshot, ``cursor()`` gives a server-side cursor: ``verify`` and ``copy`` walk a whole
    ledger through ``fetchmany``, which then fetches batch by batch instead of loading every row
    into memory at ``execute`` (a client-side cursor's way).
    """

    def __init__(self, raw: Any, *, streaming: bool = False) -> None:
        self.raw = raw
        self._streaming = streaming
        self._cursors = 0

    def execute(self, sql: str, params: Any = None, /) -> PgCursor:
        return PgCursor(self.raw.cursor()).execute(sql, params)

    def cursor(self) -> PgCursor:
        if self._streaming:
            self._cursors += 1
            return PgCursor(self.raw.cursor(name=f"daydream_snapshot_{self._cursors}"))
        return PgCursor(self.raw.cursor())


class PgBackend:
    """A ledger in a PostgreSQL database, through psycopg 3; see the module docstring.

    Connections are pooled per backend (a few idle ones kept) and lent to one thread at a time.
    """

    name = "postgresql"
    max_list = 100_000
    IDLE = 4

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.psycopg = require_psycopg()
        self.url = url
        self.path = redact(url)  # what messages show (SqliteBackend's is the file): never the password
        self.readonly = readonly
        self.integrity_error = self.psycopg.IntegrityError
        self._idle: list[Any] = []
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"PgBackend({redact(self.url)!r}{', readonly' if self.readonly else ''})"

    # ----------------------------------------------------------------- connections
    def connect(self, *, autocommit: bool = True) -> Any:
        """A new psycopg connection (autocommit: the backend says BEGIN itself)."""
        try:
            conn = self.psycopg.connect(self.url, autocommit=autocommit, connect_timeout=30)
        except self.psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LedgerPathError(f"cannot connect to PostgreSQL ledger {redact(self.url)}: {first}") from None
        if self.readonly:
            conn.read_only = True
        conn.adapters.register_loader("numeric", _number_loader(self.psycopg))
        return conn

    def _take(self) -> Any:
        with self._guard:
            if self._idle:
                return self._idle.pop()
        return self.connect()

    def _give(self, conn: Any) -> None:
        try:
            if conn.closed or conn.broken:
                return
            if conn.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except self.psycopg.Error:
            conn.close()
            return
        with self._guard:
            if len(self._idle) < self.IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections (the backend stays usable)."""
        with self._guard:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # ----------------------------------------------------------------- reading
    @contextlib.contextmanager
    def read(self) -> Iterator[PgConnection]:
        """A connection for reads; each statement sees the newest commit (autocommit)."""
        conn = self._take()
        try:
            yield PgConnection(conn)
        finally:
            self._give(conn)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[PgConnection]:
        """A connection inside one REPEATABLE READ, READ ONLY transaction: one state for every statement."""
        conn = self._take()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgConnection(conn, streaming=True)
        finally:
            self._give(conn)

    def query(self, sql: str, params: Any = ()) -> list[tuple]:
        """Run one read statement and return all its rows as tuples."""
        with self.read() as conn:
            return conn.execute(sql, params).fetchall()

    def query_many(self, statements: Sequence[tuple[str, Any]]) -> list[list[tuple]]:
        """Run several read statements in one round trip (a pipeline); the rows of each."""
        conn = self._take()
        try:
            cursors = []
            try:
                with conn.pipeline():
                    for sql, params in statements:
                        cur = conn.cursor()
                        if params:
                            cur.execute(to_pyformat(sql), params)
                        else:
                            cur.execute(sql)
                        cursors.append(cur)
            except (_errors().UndefinedTable, _errors().UndefinedFunction) as exc:
                raise _not_yet(exc) from None
            return [cur.fetchall() for cur in cursors]
        finally:
            self._give(conn)

    # ----------------------------------------------------------------- writing
    def write(self, work: Callable[[PgCursor], T]) -> T:
        """Run ``work(cursor)`` in one transaction holding the chain head's row lock; all or nothing.

        A deadlock or serialisation failure (another host's transaction) is retried with backoff.
        """
        delay = 0.01
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            conn = self._take()
            try:
                cur = PgCursor(conn.cursor())
                try:
                    # BEGIN, the lock and the last event in one round trip: the lock is held for as
                    # many round trips as the transaction makes, and every other writer waits that long.
                    if self._has_head(conn):
                        started = conn.execute(BEGIN_LOCKED)
                        while started.nextset():
                            pass
                        cur.prefetched = started.fetchone()
                    else:
                        conn.execute("BEGIN")
                    result = work(cur)
                    if not cur.committed:
                        conn.execute("COMMIT")
                    return result
                except BaseException:
                    if not conn.closed and conn.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE:
                        conn.execute("ROLLBACK")
                    raise
            except self.psycopg.DataError as exc:
                if getattr(exc, "sqlstate", None) == "22021" or "0x00" in str(exc):
                    raise LedgerNulCharacter() from None
                raise
            except self.psycopg.OperationalError as exc:
                if getattr(exc, "sqlstate", None) not in _RETRY_SQLSTATES or time.monotonic() >= deadline:
                    raise
            finally:
                self._give(conn)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    _head_known: bool = False

    def _has_head(self, conn: Any) -> bool:
        # chain_head exists from migration 0006 on and is never dropped: once seen, always there.
        if not self._head_known:
            self._head_known = bool(conn.execute("SELECT to_regclass('chain_head') IS NOT NULL").fetchone()[0])
        return self._head_known

    # ----------------------------------------------------------------- statements by dialect
    def insert_events(self, cur: PgCursor, rows: list[tuple]) -> None:
        """Insert event rows given in ``EVENT_COLUMNS`` order."""
        for row in rows:
            if "\x00" in row[4] or "\x00" in row[1] or "\x00" in row[3]:
                raise LedgerNulCharacter(f"event seq {row[0]} ({row[3]})")
        # A savepoint, so that a unique violation (a stream taken for new already has events) leaves
        # the transaction usable: the append then looks the stream up to report the conflict, as on
        # SQLite, where a failed statement does not abort its transaction.
        # Small batches: savepoint, rows and release in one pipeline (one round trip under the lock).
        cur.prefetched = _NOTHING
        raw = cur._raw
        try:
            if len(rows) >= COPY_FROM:
                raw.execute("SAVEPOINT daydream_insert_events")
                with raw.copy(_COPY_EVENTS) as copy:
                    for row in rows:
                        copy.write_row(row)
                raw.execute("RELEASE SAVEPOINT daydream_insert_events")
            else:
                with raw.connection.pipeline():
                    raw.execute("SAVEPOINT daydream_insert_events")
                    raw.executemany(_INSERT_EVENTS, rows)
                    raw.execute("RELEASE SAVEPOINT daydream_insert_events")
        except self.psycopg.IntegrityError:
            raw.execute("ROLLBACK TO SAVEPOINT daydream_insert_events")
            raise

    def finish_append(self, cur: PgCursor, text_rows: list[tuple[str, str, int]], rows: list[tuple],
                      project: tuple[str, Any] | None, head: tuple[str, dict[str, Any]] | None,
                      *, commit: bool = False) -> bool | None:
        """The rest of an append after the chain was read, in ONE round trip: texts, events (under a
        savepoint, as ``insert_events``), the projection statement and the head's compare-and-set.

        Each round trip is paid while holding the chain lock, which every other writer waits for
        (issue 17: five of them here made four runners slower than one). Returns whether the head
        moved (``True`` when ``head`` is None); ``None`` for a batch of ``COPY_FROM`` events or more,
        which goes in by COPY: the texts and events are then stored and the caller does the rest.

        With ``commit`` (the append is the transaction's last work) the COMMIT goes in the same
        round trip, so the lock is held for one round trip after it was taken. The head's
        compare-and-set must then fail on the server, before the COMMIT: its UPDATE is wrapped so
        that moving no row divides by zero, which aborts the transaction (the COMMIT after it only
        ends it) and is reported as ``False``.
        """
        if text_rows:
            for row in text_rows:
                if "\x00" in row[1]:
                    raise LedgerNulCharacter(f"text {row[0][:16]}…")
        if len(rows) >= COPY_FROM:
            if text_rows:
                self.insert_texts(cur, text_rows)
            self.insert_events(cur, rows)
            return None
        for row in rows:
            if "\x00" in row[4] or "\x00" in row[1] or "\x00" in row[3]:
                raise LedgerNulCharacter(f"event seq {row[0]} ({row[3]})")
        cur.prefetched = _NOTHING
        raw = cur._raw
        head_cur = raw.connection.cursor()
        inserting = False
        try:
            with raw.connection.pipeline():
                if text_rows:
                    raw.executemany(_INSERT_TEXTS, text_rows)
                inserting = True
                raw.execute("SAVEPOINT daydream_insert_events")
                raw.executemany(_INSERT_EVENTS, rows)
                raw.execute("RELEASE SAVEPOINT daydream_insert_events")
                if project is not None:
                    raw.execute(to_pyformat(project[0]), project[1])
                if head is not None:
                    head_sql = f"WITH moved AS ({head[0]} RETURNING 1) SELECT 1 / (SELECT COUNT(*)::int FROM moved)" \
                        if commit else head[0]
                    head_cur.execute(to_pyformat(head_sql), head[1])
                if commit:
                    raw.execute("COMMIT")
                    cur.committed = True
        except self.psycopg.IntegrityError:
            # Only the events' insert can break a constraint (texts skip duplicates): the savepoint
            # leaves the transaction usable for the caller's conflict report (unless the queued
            # COMMIT already ended it, as a rollback: the report then reads outside it).
            cur.committed = False
            if inserting and self._in_error(raw.connection):
                raw.execute("ROLLBACK TO SAVEPOINT daydream_insert_events")
            raise
        except _errors().DivisionByZero:
            cur.committed = False
            if self._in_error(raw.connection):
                raw.connection.execute("ROLLBACK")
            return False
        except (_errors().UndefinedTable, _errors().UndefinedFunction) as exc:
            raise _not_yet(exc) from None
        return head is None or commit or head_cur.rowcount == 1

    _append_seen: tuple[float, bool] = (-1e9, False)

    def has_append_function(self) -> bool:
        """Whether the schema has ``daydream_append`` (migration 0012): once seen, always there;
        until then asked again at most every ``SCHEMA_RECHECK_S``."""
        at, found = self._append_seen
        if not found and time.monotonic() - at > SCHEMA_RECHECK_S:
            row = self.query("SELECT to_regproc('daydream_append') IS NOT NULL")
            found = bool(row and row[0][0])
            self._append_seen = (time.monotonic(), found)
        return found

    def run_statements(self, statements: Sequence[tuple[str, Any]]) -> None:
        """Write statements that touch no event (the workers table), in one round trip, each its
        own transaction, without the chain lock."""
        conn = self._take()
        try:
            with conn.pipeline():
                for sql, params in statements:
                    conn.execute(to_pyformat(sql), params)
        finally:
            self._give(conn)

    def append_groups(self, args: dict[str, Any], also: Sequence[tuple[str, Any]] = ()) -> tuple:
        """One call of ``daydream_append`` (see ``Ledger.append_groups``), after the ``also``
        statements, all in one round trip; each statement is its own transaction, and the chain
        lock is taken and released inside the function, on the server.

        Returns (seq and hash chained onto, groups appended, versions, hashes of the events)."""
        for i, payload in enumerate(args["payload"]):
            if "\x00" in payload or "\x00" in args["stream"][i] or "\x00" in args["type"][i]:
                raise LedgerNulCharacter(f"a {args['type'][i]} event")
        for sha, text in zip(args["sha256"], args["text"]):
            if "\x00" in text:
                raise LedgerNulCharacter(f"text {sha[:16]}…")
        errors = _errors()
        conn = self._take()
        try:
            cur = conn.cursor()
            try:
                with conn.pipeline():
                    for sql, params in also:
                        conn.execute(to_pyformat(sql), params)
                    cur.execute(_APPEND_CALL, args)
                return cur.fetchone()
            except errors.UndefinedFunction as exc:
                raise _not_yet(exc) from None
            except self.psycopg.Error as exc:
                state = getattr(exc, "sqlstate", None)
                detail = getattr(getattr(exc, "diag", None), "message_detail", None) or ""
                if state == "DD002":
                    from daydream.errors import ConcurrencyConflict

                    stream, expected, actual = detail.rsplit(" ", 2)
                    raise ConcurrencyConflict(stream, int(expected), int(actual)) from None
                if state == "DD001":
                    from daydream.errors import LedgerIntegrityError
                    from daydream.ledger.store import head_mismatch

                    last_seq, last_hash = detail.split(" ", 1)
                    with self.read() as reading:
                        why = head_mismatch(reading.cursor(), int(last_seq), last_hash)
                    raise LedgerIntegrityError(None, why + "; nothing was appended: run 'daydream verify'") from None
                raise
        finally:
            self._give(conn)

    def _in_error(self, conn: Any) -> bool:
        return conn.info.transaction_status == self.psycopg.pq.TransactionStatus.INERROR

    def insert_texts(self, cur: PgCursor, rows: list[tuple[str, str, int]]) -> None:
        """Store ``(sha256, text, chars)`` rows, skipping texts already stored."""
        for row in rows:
            if "\x00" in row[1]:
                raise LedgerNulCharacter(f"text {row[0][:16]}…")
        cur._raw.executemany(_INSERT_TEXTS, rows)

    def in_list(self, name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        """``= ANY(:name)`` with ``values`` as one array parameter."""
        return f"= ANY(:{name})", {name: list(values)}

    def has_table(self, cur: Any, name: str) -> bool:
        """Whether the ledger's schema has a table (or view) called ``name``."""
        return cur.execute("SELECT to_regclass(:name) IS NOT NULL", {"name": name}).fetchone()[0]

    _schema_seen: tuple[float, Any] = (0.0, None)

    def schema_version(self, cur: Any) -> Any:
        """Changes whenever the schema does: the revision in ``alembic_version``, read at most every
        ``SCHEMA_RECHECK_S`` (a round trip per append would be paid under the chain lock)."""
        at, version = self._schema_seen
        if time.monotonic() - at > SCHEMA_RECHECK_S:
            row = cur.execute("SELECT version_num FROM alembic_version").fetchone()
            version = row[0] if row else None
            self._schema_seen = (time.monotonic(), version)
        return version

    def columns(self, table: str) -> list[str]:
        """The column names of a table or view in the current schema, in order."""
        return [r[0] for r in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = :t ORDER BY ordinal_position", {"t": table})]

    def column_types(self, cur: Any, table: str) -> list[tuple[str, str]]:
        """(name, data type) of each column of a table in the current schema, in order."""
        return [(r[0], r[1]) for r in cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = :t ORDER BY ordinal_position", {"t": table}).fetchall()]

    def tables(self) -> tuple[str, ...]:
        """The tables in the connection's schema (``current_schema()``), sorted."""
        return tuple(r[0] for r in self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name"))

    # ----------------------------------------------------------------- SQLite's files
    def checkpoint(self, mode: str) -> tuple[int, int, int]:
        """Nothing to checkpoint on a server: the server manages its own log."""
        return (0, 0, 0)

    def compact(self) -> None:
        raise UsageError("compacting applies to SQLite ledger files; a PostgreSQL server manages its own "
                         "storage (VACUUM is the server's job)")

    def backup(self, dest: Path) -> None:
        """A SQLite copy of the ledger (events, texts, chain verified) at ``dest``, made by ``daydream copy``."""
        from daydream.transfer.copy import copy_ledger

        copy_ledger(self.url, str(dest))


# Positional, as SqliteBackend's: the rows are tuples from the append's hot path.
_INSERT_EVENTS = ("INSERT INTO events (seq, stream, version, type, payload, recorded_at, causation_seq, "
                  "prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)")
_COPY_EVENTS = ("COPY events (seq, stream, version, type, payload, recorded_at, causation_seq, prev_hash, hash) "
                "FROM STDIN")
# Migration 0012's function; the arrays are typed here so that empty and all-NULL lists are too.
_APPEND_CALL = (
    "SELECT before_seq, before_hash, accepted, versions, hashes FROM daydream_append("
    "%(recorded_at)s, %(recorded_json)s, %(group)s::int[], %(stream)s::text[], %(stream_json)s::text[], "
    "%(type)s::text[], %(type_json)s::text[], %(payload)s::text[], %(causation)s::bigint[], "
    "%(expected)s::bigint[], %(gen)s::text[], %(attempt)s::bigint[], %(statuses)s::text[], "
    "%(worker)s::text[], %(text_group)s::int[], %(sha256)s::text[], %(text)s::text[], %(chars)s::bigint[])")
# Batches from this size go in by COPY (measured faster than executemany's pipeline for large batches).
COPY_FROM = 50
_INSERT_TEXTS = "INSERT INTO texts (sha256, text, chars) VALUES (%s, %s, %s) ON CONFLICT (sha256) DO NOTHING"


__all__ = ["EXTRA_HINT", "LOCK_HEAD", "LedgerNulCharacter", "NotYetOnPostgres", "PgBackend", "PgConnection",
           "PgCursor", "is_postgres_url", "redact", "require_psycopg", "to_pyformat"]
