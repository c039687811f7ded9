"""The ledger's database at run time: connections, reads, write transactions, on the standard library.

Everything a command does after a ledger is open — appends, ``transact``'s compare-and-set,
texts, reads, ``verify``'s chain walk, backups, the runner's and the views' queries — goes through
one ``Backend`` object. ``SqliteBackend`` is the embedded default: plain ``sqlite3`` connections in a
small pool, each with WAL journaling, a generous busy timeout and foreign keys, in autocommit mode
at the driver level so that *we* choose ``BEGIN`` (a read snapshot) or ``BEGIN IMMEDIATE`` (a
write, which takes SQLite's one write lock up front, so concurrent writers never deadlock on a
lock upgrade). ``daydream.ledger.pg_backend.PgBackend`` (issue 17) sits beside it with the same
methods, for ``postgresql://`` URLs.

The connections and cursors handed out speak a subset of DB-API 2.0 that both ``sqlite3`` and
psycopg 3 offer: ``conn.execute(sql, params)``, ``conn.cursor()``, ``cur.execute / executemany /
fetchone / fetchmany / fetchall``, ``cur.rowcount`` and ``cur.description``. Runtime SQL is
written with named ``:name`` parameters and a mapping (``sqlite3``'s named style); a psycopg
backend translates ``:name`` to ``%(name)s`` in the cursor it hands out, in one place. Statements
that must differ by dialect live here, not in callers: inserting events and texts (executemany
here, COPY on PostgreSQL), ``IN`` lists (``= ANY(:list)`` there), what tables exist, checkpoints,
backups, compaction, and which driver error means "busy" or "constraint violated".

This deviates from the research note for issue 17 (``Backend`` on SQLAlchemy ``text()`` and
engines): SQLAlchemy costs ~260 ms to import, 6x a whole ``python -c "import click"``, and at run
time it only pooled connections (its checkout cost ~25 µs per single-event append). So run time
is DB-API only, and SQLAlchemy + Alembic are imported only where the schema is created, upgraded
or compared (``daydream.ledger.db``: init, migrate, opening a ledger whose revision is behind,
``verify --full``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from daydream.errors import LedgerPathError

T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any]

BUSY_TIMEOUT_S = 60.0
# Checkpoint the write-ahead log every ~160 MB instead of SQLite's 1,000 pages: a page rewritten by
# many appends is copied back once, not ten times (measured: +35% on batched appends with 40 MB).
# Above twice the runner's largest bound (daydream.run.checkpoints, 64 MiB), whose passes run off
# the writer's thread. The last connection to close still checkpoints and removes the log.
WAL_AUTOCHECKPOINT_BYTES = 160 * 2**20
# When a checkpoint lets the log start over, the next commit trims the file to this size, so the
# file's size tells how much log there is (daydream.run.checkpoints keeps it bounded during runs).
WAL_SIZE_LIMIT_BYTES = 2**20
# Page size of new ledgers: SQLite's default, 4 KiB. Every commit writes each page it touched to
# the log, whole, and a run's commits touch mostly scattered pages (a generation's stream in the
# (stream, version) index, its gen_state row and index entries, its texts by hash): the bytes
# written grow with the page size, not with the data. Measured (bench/run_stub.py --scale 100000,
# offline drafts, 4 per commit): 16 KiB pages wrote 36x the final ledger (20 GB, the figure issue 15
# reported) in 168 s; 4 KiB pages 9.7x in 99 s. Single-event appends are 2.5x faster with 4 KiB,
# batched appends the same or better. Older ledgers keep the page size they were made with.
PAGE_SIZE = 4096
# Page cache per connection, KiB (SQLite's default is 2,000). A transaction that changes more
# pages than its cache holds writes ("spills") them to the log before it commits, and again when
# it touches them after: planning 100,000 generations inserts their gen_state rows, kept in gen_id
# order (migration 0014), at scattered pages, and wrote 4.5 GB of log with the default, 2.0 GB
# with 16 MiB (bench/run_stub.py --scale; 2.4 GB before 0014). Filled only as pages are read.
CACHE_KIB = 16 * 1024

EVENT_COLUMNS = "seq, stream, version, type, payload, recorded_at, causation_seq, prev_hash, hash"


class Cursor(Protocol):
    """What callers may do with a cursor (``sqlite3.Cursor`` and psycopg's both qualify)."""

    rowcount: int
    description: Any

    def execute(self, sql: str, params: Params = ..., /) -> "Cursor": ...
    def executemany(self, sql: str, rows: Any, /) -> "Cursor": ...
    def fetchone(self) -> Any: ...
    def fetchmany(self, size: int = ..., /) -> list[Any]: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What callers may do with a connection lent by ``Backend.read`` or ``Backend.snapshot``."""

    def execute(self, sql: str, params: Params = ..., /) -> Cursor: ...
    def cursor(self) -> Cursor: ...


class Backend(Protocol):
    """One ledger database as the run time sees it; see the module docstring."""

    name: str
    readonly: bool
    integrity_error: type[Exception]
    max_list: int

    def read(self) -> contextlib.AbstractContextManager[Connection]: ...
    def snapshot(self) -> contextlib.AbstractContextManager[Connection]: ...
    def write(self, work: Callable[[Cursor], T]) -> T: ...
    def query(self, sql: str, params: Params = ()) -> list[tuple]: ...
    def query_many(self, statements: Sequence[tuple[str, Params]]) -> list[list[tuple]]: ...
    def in_list(self, name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]: ...
    def insert_events(self, cur: Cursor, rows: list[tuple]) -> None: ...
    def insert_texts(self, cur: Cursor, rows: list[tuple[str, str, int]]) -> None: ...
    def has_table(self, cur: Cursor | Connection, name: str) -> bool: ...
    def schema_version(self, cur: Cursor | Connection) -> Any: ...
    def columns(self, table: str) -> list[str]: ...
    def column_types(self, cur: Cursor | Connection, table: str) -> list[tuple[str, str]]: ...
    def backup(self, dest: Path) -> None: ...
    def close(self) -> None: ...
    # SQLite's files; a server-side backend says these do not apply (UsageError).
    def checkpoint(self, mode: str) -> tuple[int, int, int]: ...
    def compact(self) -> None: ...


def column_names(cur: Cursor) -> list[str]:
    """The names of the columns a cursor's last statement returned."""
    return [d[0] for d in cur.description or ()]


# ----------------------------------------------------------------------------- SQLite
class _Connection(sqlite3.Connection):
    """A sqlite3 connection that remembers the URI options it was opened with."""

    daydream_options = ""


def _uri(path: Path, options: str) -> str:
    return f"file:{quote(path.resolve().as_posix())}?{options}"


def connect_readonly(path: Path, uri_options: str | None = None) -> _Connection:
    """A read-only connection that works on read-only files and folders, and changes nothing.

    ``mode=ro`` first: it sees the write-ahead log and coexists with writers. SQLite cannot give
    that when it may not create the log's shared-memory file (a read-only folder), and then the file
    is opened ``immutable`` (no locks, no log) — but only when no log holds transactions that are
    not yet in the file, because an immutable reader would not see them. The options that worked
    are kept on the connection (``daydream_options``) so later connections skip the trial.
    """
    options = [uri_options] if uri_options else ["mode=ro", "mode=ro&immutable=1"]
    first_error: Exception | None = None
    for i, option in enumerate(options):
        if i and Path(f"{path}-wal").is_file() and Path(f"{path}-wal").stat().st_size > 0:
            raise LedgerPathError(
                f"cannot open ledger {str(path)!r} read-only ({first_error}): its write-ahead log "
                f"{str(path)}-wal holds recent transactions, and reading them needs write access to "
                "the folder; open it once where it is writable, or ask its owner for a backup")
        conn = sqlite3.connect(_uri(path, option), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False, factory=_Connection)
        conn.daydream_options = option
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as exc:
            conn.close()
            first_error = first_error or exc
            continue
        except sqlite3.DatabaseError as exc:  # "file is not a database": nothing to retry
            conn.close()
            raise LedgerPathError(f"cannot open ledger {str(path)!r}: {exc}") from None
        return conn
    raise LedgerPathError(f"cannot open ledger {str(path)!r} read-only: {first_error}")


def connect_readwrite(path: Path) -> sqlite3.Connection:
    """A read-write connection with the ledger's settings (WAL, busy timeout, foreign keys, pages)."""
    conn = sqlite3.connect(_uri(path, "mode=rwc"), uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Only takes effect while the file is still empty (a new ledger); a no-op afterwards.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_BYTES // page_size}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn


class SqliteBackend:
    """A ledger file through ``sqlite3``: a pool of configured connections, reads and writes.

    Connections are lent to one thread at a time (the runner's writer thread and its event loop
    share a backend) and kept for reuse, up to ``IDLE`` of them; a connection comes back with no
    transaction open. Cheap to create; ``close`` closes the idle ones, and the backend stays usable
    (new connections are made on demand), like a disposed SQLAlchemy engine was.
    """

    name = "sqlite"
    integrity_error = sqlite3.IntegrityError
    # Bound parameters per statement are limited; an IN list longer than this is split by callers.
    max_list = 900
    IDLE = 4

    def __init__(self, path: Path, *, readonly: bool = False, readonly_options: str | None = None) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._readonly_options = readonly_options
        self._idle: list[sqlite3.Connection] = []
        # Called with every new connection (tests trace statements with set_trace_callback).
        self.on_connect: list[Callable[[sqlite3.Connection], None]] = []

    @property
    def readonly_options(self) -> str | None:
        """The URI options read-only connections open with, once the first one found them."""
        return self._readonly_options

    def __repr__(self) -> str:
        return f"SqliteBackend({str(self.path)!r}{', readonly' if self.readonly else ''})"

    # ----------------------------------------------------------------- connections
    def connect(self) -> sqlite3.Connection:
        """A new connection with the ledger's settings (the pool's, and Alembic's during migrations)."""
        if self.readonly:
            conn: sqlite3.Connection = connect_readonly(self.path, self._readonly_options)
            if self._readonly_options is None:
                self._readonly_options = conn.daydream_options  # type: ignore[attr-defined]
            conn.execute("PRAGMA foreign_keys = ON")
        else:
            conn = connect_readwrite(self.path)
        for hook in self.on_connect:
            hook(conn)
        return conn

    def _take(self) -> sqlite3.Connection:
        try:
            return self._idle.pop()  # atomic under the GIL: no lock needed
        except IndexError:
            return self.connect()

    def _give(self, conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:  # a failed COMMIT, or a reader that left early
                conn.rollback()
        except sqlite3.Error:
            conn.close()
            return
        if len(self._idle) < self.IDLE:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close the idle connections (in-use ones close when given back past the pool's size)."""
        while self._idle:
            try:
                self._idle.pop().close()
            except IndexError:
                break

    # ----------------------------------------------------------------- reading
    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads; each statement sees the newest commit (autocommit)."""
        conn = self._take()
        try:
            yield conn
        finally:
            self._give(conn)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one read transaction: every statement sees the same state."""
        conn = self._take()
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            self._give(conn)  # rolls the read transaction back

    def query(self, sql: str, params: Params = ()) -> list[tuple]:
        """Run one read statement and return all its rows as tuples."""
        conn = self._take()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            self._give(conn)

    def query_many(self, statements: Sequence[tuple[str, Params]]) -> list[list[tuple]]:
        """Run several read statements, each seeing the newest commit; the rows of each."""
        conn = self._take()
        try:
            return [conn.execute(sql, params).fetchall() for sql, params in statements]
        finally:
            self._give(conn)

    # ----------------------------------------------------------------- writing
    def write(self, work: Callable[[sqlite3.Cursor], T]) -> T:
        """Run ``work(cursor)`` inside ``BEGIN IMMEDIATE … COMMIT``; all or nothing.

        When ``work`` raises, the transaction is rolled back and the exception propagates. A lock
        that stays busy past SQLite's own busy timeout is waited for again (with backoff) for as
        long once more, then the error propagates.
        """
        delay = 0.01
        deadline = time.monotonic() + BUSY_TIMEOUT_S * 2
        while True:
            conn = self._take()
            try:
                cur = conn.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    result = work(cur)
                except BaseException:
                    if conn.in_transaction:
                        conn.rollback()
                    raise
                cur.execute("COMMIT")
                return result
            except sqlite3.OperationalError as exc:
                message = str(exc)
                if ("locked" not in message and "busy" not in message) or time.monotonic() >= deadline:
                    raise
            finally:
                self._give(conn)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    # ----------------------------------------------------------------- statements by dialect
    def insert_events(self, cur: sqlite3.Cursor, rows: list[tuple]) -> None:
        """Insert event rows given in ``EVENT_COLUMNS`` order (the append's hot path)."""
        cur.executemany(_INSERT_EVENTS, rows)

    def insert_texts(self, cur: sqlite3.Cursor, rows: list[tuple[str, str, int]]) -> None:
        """Store ``(sha256, text, chars)`` rows, skipping texts already stored."""
        cur.executemany(_INSERT_TEXTS, rows)

    def in_list(self, name: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        """``IN (…)`` for ``values`` (at most ``max_list``) as SQL and its named parameters."""
        params = {f"{name}{i}": v for i, v in enumerate(values)}
        return f"IN ({','.join(':' + k for k in params)})", params

    def columns(self, table: str) -> list[str]:
        """The column names of a table or view, in order (empty when there is none)."""
        return [r[0] for r in self.query("SELECT name FROM pragma_table_info(:t)", {"t": table})]

    def column_types(self, cur: sqlite3.Cursor | sqlite3.Connection, table: str) -> list[tuple[str, str]]:
        """(name, declared type) of each column of a table in the main database, in order."""
        return [(r[1], r[2]) for r in cur.execute(f"PRAGMA main.table_info({table})").fetchall()]

    def schema_version(self, cur: sqlite3.Cursor | sqlite3.Connection) -> int:
        """A number that changes whenever the schema does (``PRAGMA schema_version``)."""
        return cur.execute("PRAGMA schema_version").fetchone()[0]

    def has_table(self, cur: sqlite3.Cursor | sqlite3.Connection, name: str) -> bool:
        """Whether the ledger has a table called ``name`` (for schemas older than a revision)."""
        return cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name",
                           {"name": name}).fetchone() is not None

    # ----------------------------------------------------------------- files
    def checkpoint(self, mode: str) -> tuple[int, int, int]:
        """Run ``PRAGMA wal_checkpoint(mode)`` outside any transaction: (busy, log pages, copied)."""
        if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"unknown checkpoint mode {mode!r}")
        with self.read() as conn:
            row = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        return tuple(row) if row else (0, 0, 0)  # type: ignore[return-value]

    def backup(self, dest: Path) -> None:
        """A consistent copy of the database at ``dest`` (``VACUUM INTO``), safe while others write."""
        with self.read() as conn:
            try:
                conn.execute("VACUUM INTO :dest", {"dest": os.fspath(dest)})
            except sqlite3.Error as exc:
                raise LedgerPathError(f"cannot write backup {str(dest)!r}: {exc}") from None

    def compact(self) -> None:
        """Fold the write-ahead log into the file, leave WAL mode and VACUUM: one self-contained file."""
        self.close()
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("VACUUM")
        finally:
            conn.close()


# Positional on purpose: the rows come from the append's hot path as tuples, and binding a tuple
# is cheaper than building and binding a dict per row. A PostgreSQL backend uses COPY here.
_INSERT_EVENTS = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# ON CONFLICT … DO NOTHING is spelled the same on PostgreSQL (INSERT OR IGNORE is not).
_INSERT_TEXTS = "INSERT INTO texts (sha256, text, chars) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING"


__all__ = ["BUSY_TIMEOUT_S", "Backend", "Connection", "Cursor", "EVENT_COLUMNS", "PAGE_SIZE", "SqliteBackend",
           "WAL_AUTOCHECKPOINT_BYTES", "WAL_SIZE_LIMIT_BYTES", "column_names", "connect_readonly",
           "connect_readwrite"]
