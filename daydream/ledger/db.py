"""Opening a ledger file: path checks, connection settings and schema migrations.

Every connection gets WAL journaling, a generous ``busy_timeout`` and foreign keys, and runs in
autocommit mode at the driver level so that *we* choose ``BEGIN`` (reads) or ``BEGIN IMMEDIATE``
(writes). The schema is owned by Alembic; ``migrate()`` runs it from code, so ``daydream init`` and
the tests go through exactly the same path.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import QueuePool

from daydream.errors import (DaydreamError, LedgerForeignFile, LedgerMigrationError, LedgerNotInitialised,
                             LedgerPathError, LedgerReadOnly, LedgerSchemaTooNew)

SQLITE_MAGIC = b"SQLite format 3\x00"
# "dayd" in the file header (PRAGMA application_id, set by migration 0006): tells a ledger from
# another application's SQLite file without reading its tables.
APPLICATION_ID = 0x64617964
# Tables every ledger has had since 0001 (how ledgers from before 0006 are recognised).
LEDGER_TABLES = ("alembic_version", "events", "texts")
BUSY_TIMEOUT_S = 60.0
# Checkpoint the write-ahead log every ~40 MB instead of SQLite's 1,000 pages: a page rewritten by
# many appends is copied back once, not ten times (measured: +35% on batched appends). The last
# connection to close still checkpoints and removes the log.
WAL_AUTOCHECKPOINT_BYTES = 40 * 2**20
# When a checkpoint lets the log start over, the next commit trims the file to this size, so the
# file's size tells how much log there is (daydream.run.checkpoints keeps it bounded during runs).
WAL_SIZE_LIMIT_BYTES = 2**20
# Page size of new ledgers. Appends insert at scattered places of the (stream, version) index, and
# each commit writes every page it touched to the log: 16 KiB pages mean fewer, fuller pages per
# commit (bench/ledger_append.py: +12% batched appends vs 4 KiB), and essays of a few KB fit a
# page instead of spilling to overflow pages. The price: single-event appends ~30% slower (more
# bytes per tiny commit, still ~0.1 ms) and essay_rankings at 1M events 35 -> 43 ms.
PAGE_SIZE = 16384
DEFAULT_DB = "ledger.db"


def default_db_path() -> str:
    """The ledger path used when ``--db`` is not given: ``$DAYDREAM_DB`` or ``./ledger.db``."""
    return os.environ.get("DAYDREAM_DB") or DEFAULT_DB


def migrations_dir() -> Path:
    """Where the Alembic scripts live: the repo's ``migrations/`` or the copy inside a wheel."""
    here = Path(__file__).resolve().parents[1]  # the daydream package
    for candidate in (here.parent / "migrations", here / "_migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise LedgerPathError(f"cannot find the migrations folder next to {here}")


def check_path(path: str | os.PathLike[str], *, create: bool) -> Path:
    """Refuse paths that cannot hold a ledger, before SQLite gets a chance to create or damage files.

    With ``create=False`` the file must already exist. Whether an existing file may be written is
    ``check_writable``'s question, asked only by commands that write.
    """
    p = Path(path)
    if p.is_dir():
        raise LedgerPathError(f"ledger path {str(p)!r} is a directory, expected a SQLite file")
    if p.exists():
        try:
            with open(p, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise LedgerPathError(f"cannot read ledger {str(p)!r}: {exc.strerror}") from None
        if head and head != SQLITE_MAGIC:
            raise LedgerPathError(f"{str(p)!r} is not a SQLite database (it has other content)")
        return p
    if not create:
        raise LedgerPathError(f"no ledger at {str(p)!r}: run 'daydream init --db {p}' first")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise LedgerPathError(f"cannot create ledger {str(p)!r}: folder {str(parent)!r} does not exist")
    # Root passes os.access checks everywhere, so probe for real with a scratch file.
    probe = parent / f".daydream-probe-{os.getpid()}"
    try:
        with open(probe, "xb"):
            pass
    except OSError as exc:
        raise LedgerPathError(
            f"cannot create ledger {str(p)!r}: folder {str(parent)!r} is not writable ({exc.strerror})"
        ) from None
    else:
        probe.unlink(missing_ok=True)
    return p


def check_writable(path: Path) -> None:
    """Raise ``LedgerReadOnly`` unless this process can write the ledger file and its journal files.

    A WAL ledger is written through ``<file>-wal`` and ``<file>-shm`` beside it, so the folder must
    be writable too unless both already exist and are writable. Asked before the first connection,
    so a command that must write fails with one clear line instead of SQLite's "attempt to write a
    readonly database" halfway through its work. (``os.access`` honours read-only mounts and, for
    root, only the capabilities actually held.)
    """
    p = Path(path)
    try:
        os.close(os.open(p, os.O_RDWR))
    except OSError as exc:
        mode = ""
        with contextlib.suppress(OSError):
            mode = f", mode {stat.filemode(p.stat().st_mode)}"
        raise LedgerReadOnly(f"ledger {str(p)!r} is read-only ({exc.strerror.lower()}{mode})") from None
    sidecars = [Path(f"{p}{suffix}") for suffix in ("-wal", "-shm")]
    if all(s.exists() and os.access(s, os.W_OK) for s in sidecars):
        return
    folder = p.parent if str(p.parent) else Path(".")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LedgerReadOnly(f"ledger {str(p)!r} is read-only: its folder {str(folder)!r} is not writable "
                             "(SQLite keeps the ledger's write-ahead log beside it)")


# ----------------------------------------------------------------------------- what a file is
@dataclass(frozen=True)
class FileInfo:
    """What an existing SQLite file holds, found without changing a byte of it."""

    path: Path
    tables: tuple[str, ...] = ()
    application_id: int = 0
    revision: str | None = None

    @property
    def empty(self) -> bool:
        """No tables at all: a new (or zero-byte) SQLite file that ``init`` may turn into a ledger."""
        return not self.tables and self.application_id in (0, APPLICATION_ID)

    @property
    def is_ledger(self) -> bool:
        """A daydream ledger: our application id (0006 on), or our tables (ledgers from before it)."""
        if self.application_id == APPLICATION_ID:
            return True
        return self.application_id == 0 and set(LEDGER_TABLES) <= set(self.tables)

    @property
    def foreign(self) -> bool:
        """Another application's database: daydream must not change it."""
        return not self.empty and not self.is_ledger

    def describe(self) -> str:
        """A few words on what the file holds, for error messages."""
        if self.application_id not in (0, APPLICATION_ID):
            return f"application_id {self.application_id:#x}, {len(self.tables)} table(s)"
        shown = ", ".join(self.tables[:4]) + (" …" if len(self.tables) > 4 else "")
        return f"{len(self.tables)} table(s): {shown}"


def inspect_file(path: Path) -> FileInfo:
    """Read what ``path`` holds (tables, application id, schema revision) through a read-only connection."""
    p = Path(path)
    try:
        if p.stat().st_size == 0:
            return FileInfo(p)
    except OSError as exc:
        raise LedgerPathError(f"cannot read ledger {str(p)!r}: {exc.strerror}") from None
    conn = _connect_readonly(p)
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = tuple(r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"))
        revision = None
        if "alembic_version" in tables:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = row[0] if row else None
    except sqlite3.DatabaseError as exc:
        raise LedgerPathError(f"cannot read ledger {str(p)!r}: {exc}") from None
    finally:
        conn.close()
    return FileInfo(p, tables, app_id, revision)


def refuse_foreign(info: FileInfo) -> None:
    """Raise ``LedgerForeignFile`` for another application's database, saying what to do."""
    if info.foreign:
        p = info.path
        raise LedgerForeignFile(
            f"{str(p)!r} is a SQLite database of another application ({info.describe()}), not a daydream "
            f"ledger; daydream leaves it untouched: give --db a ledger path (or run 'daydream init --force "
            f"--db {p}' to add a ledger's tables to this file)")


@functools.lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every migration revision shipped with this version of daydream."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(None))
    return frozenset(rev.revision for rev in script.walk_revisions())


def refuse_unknown_revision(info: FileInfo) -> None:
    """Raise ``LedgerSchemaTooNew`` when the ledger's revision is not one this daydream ships."""
    if info.revision is not None and info.revision not in known_revisions():
        raise LedgerSchemaTooNew(
            f"ledger {str(info.path)!r} is at schema revision {info.revision!r}, which this daydream does "
            f"not know (it knows up to {head_revision()!r}): it was written by a newer daydream; upgrade "
            "daydream to use it")


# ----------------------------------------------------------------------------- connections
def _connect_readonly(path: Path, uri_options: str | None = None) -> _Connection:
    """A read-only connection that works on read-only files and folders, and changes nothing.

    ``mode=ro`` first: it sees the write-ahead log and coexists with writers. SQLite cannot give
    that when it may not create the log's shared-memory file (a read-only folder), and then the file
    is opened ``immutable`` (no locks, no log) — but only when no log holds transactions that are
    not yet in the file, because an immutable reader would not see them.
    """
    options = [uri_options] if uri_options else ["mode=ro", "mode=ro&immutable=1"]
    base = f"file:{quote(path.resolve().as_posix())}"
    first_error: Exception | None = None
    for i, option in enumerate(options):
        if i and Path(f"{path}-wal").is_file() and Path(f"{path}-wal").stat().st_size > 0:
            raise LedgerPathError(
                f"cannot open ledger {str(path)!r} read-only ({first_error}): its write-ahead log "
                f"{str(path)}-wal holds recent transactions, and reading them needs write access to "
                "the folder; open it once where it is writable, or ask its owner for a backup")
        conn = sqlite3.connect(f"{base}?{option}", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
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


def _readonly_options(path: Path) -> str:
    """The URI options ``_connect_readonly`` settles on for ``path`` (tried once per engine)."""
    conn = _connect_readonly(path)
    try:
        return conn.daydream_options  # type: ignore[attr-defined]
    finally:
        conn.close()


class _Connection(sqlite3.Connection):
    """A sqlite3 connection that remembers the URI options it was opened with."""

    daydream_options = ""


def _connect(path: Path, readonly: bool, readonly_options: str | None = None) -> sqlite3.Connection:
    if readonly:
        conn = _connect_readonly(path, readonly_options)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    uri = f"file:{quote(path.resolve().as_posix())}?mode=rwc"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # Only takes effect while the file is still empty (a new ledger); a no-op afterwards.
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_BYTES // page_size}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    return conn


def _engine(p: Path, readonly: bool) -> Engine:
    options = _readonly_options(p) if readonly else None
    try:
        engine = create_engine("sqlite://", creator=lambda: _connect(p, readonly, options),
                               poolclass=QueuePool, pool_size=2, max_overflow=8)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
    except DaydreamError:
        raise
    except Exception as exc:  # sqlite3 says "file is not a database", "unable to open" …
        raise LedgerPathError(f"cannot open ledger {str(p)!r}: {exc.__cause__ or exc}") from None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def create_ledger_engine(path: str | os.PathLike[str], *, create: bool = False,
                         readonly: bool = False, force: bool = False) -> Engine:
    """An engine on the ledger at ``path``; transactions begin ``IMMEDIATE`` when asked to write.

    The file is inspected read-only first: another application's database is refused (unless
    ``create`` and ``force``: ``init --force``), as is a ledger from a newer daydream, and a
    writable engine needs a writable file — all before anything could change the file.
    Use ``conn.execution_options(immediate=True)`` before ``conn.begin()`` to take the write lock up
    front, which is what keeps concurrent writers from deadlocking on lock upgrades.
    """
    p = check_path(path, create=create)
    if p.exists():
        info = inspect_file(p)
        if not (create and force):
            refuse_foreign(info)
        elif info.foreign and info.revision is not None:
            raise LedgerForeignFile(
                f"{str(p)!r} is a SQLite database of another application with its own alembic_version "
                f"(revision {info.revision!r}); daydream cannot add a ledger to it, even with --force, "
                "without taking over that table: use another --db path")
        if info.is_ledger:
            refuse_unknown_revision(info)
        if not readonly:
            check_writable(p)
    return _engine(p, readonly)


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration revision shipped with this version of daydream."""
    from alembic.script import ScriptDirectory

    cfg = _alembic_config(None)
    return ScriptDirectory.from_config(cfg).get_current_head()  # type: ignore[return-value]


def current_revision(engine: Engine) -> str | None:
    """The revision the ledger file is at, or None when it has no daydream schema."""
    with engine.connect() as conn:
        has = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'").first()
        if not has:
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def migrate(engine: Engine, path: str | os.PathLike[str] | None = None) -> tuple[str | None, str]:
    """Bring the ledger schema to the newest revision. Returns (revision before, revision after).

    All migrations run in one transaction: when one fails, the ledger stays exactly as it was and
    ``LedgerMigrationError`` says which file, from which revision, and why.
    """
    from alembic import command

    before = current_revision(engine)
    head = head_revision()
    if before == head:
        return before, head
    if before is not None and before not in known_revisions():
        refuse_unknown_revision(FileInfo(Path(path or "?"), revision=before))
    try:
        with engine.connect() as conn:
            command.upgrade(_alembic_config(conn), "head")
            if conn.in_transaction():
                conn.commit()
    except DaydreamError:
        raise
    except Exception as exc:
        where = f"ledger {str(path)!r}" if path is not None else "the ledger"
        raise LedgerMigrationError(f"cannot upgrade {where} from schema {before or 'none'} to {head} "
                                   f"(left unchanged): {exc}") from exc
    return before, head


def open_engine(path: str | os.PathLike[str], *, readonly: bool = False) -> Engine:
    """Open an existing ledger, upgrading its schema if it is older than this daydream.

    Whatever is refused (another application's file, an empty file, a ledger from a newer daydream,
    a read-only file when writing) is refused before the first read-write connection, so the file
    is never changed by a command that cannot use it.
    """
    p = check_path(path, create=False)
    info = inspect_file(p)
    refuse_foreign(info)
    if info.revision is None:
        what = ("has a ledger's tables but no schema revision (alembic_version is empty)" if info.tables
                else "is an empty SQLite file, not yet a daydream ledger")
        raise LedgerNotInitialised(f"{str(path)!r} {what}: run 'daydream init --db {path}'")
    refuse_unknown_revision(info)
    if not readonly:
        check_writable(p)
    engine = _engine(p, readonly)
    if not readonly and info.revision != head_revision():
        migrate(engine, path)
    return engine


# ----------------------------------------------------------------------------- schema fingerprint
_SCHEMA_SQL = ("SELECT type, name, tbl_name, sql FROM sqlite_master "
               "WHERE name NOT LIKE 'sqlite_%' AND sql IS NOT NULL ORDER BY type, name")


@functools.lru_cache(maxsize=4)
def expected_schema(revision: str) -> tuple[dict[tuple[str, str], tuple[str, str]], frozenset[str]]:
    """What the migrations up to ``revision`` create: {(type, name): (table, sql)} and projected types.

    Found by running them on an empty in-memory database, so it is exactly what this daydream's
    migrations give, whichever route a ledger took to that revision.
    """
    from alembic import command
    from sqlalchemy.pool import StaticPool

    engine = create_engine("sqlite://", poolclass=StaticPool)
    try:
        with engine.connect() as conn:
            command.upgrade(_alembic_config(conn), revision)
            if conn.in_transaction():
                conn.commit()
            return _schema_of(conn.connection.dbapi_connection)
    finally:
        engine.dispose()


def _schema_of(raw: Any) -> tuple[dict[tuple[str, str], tuple[str, str]], frozenset[str]]:
    objects = {(t, n): (tbl, sql) for t, n, tbl, sql in raw.execute(_SCHEMA_SQL).fetchall()}
    has = raw.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'projected_types'").fetchone()
    types = frozenset(r[0] for r in raw.execute("SELECT type FROM projected_types")) if has else frozenset()
    return objects, types


def schema_drift(engine: Engine) -> list[str]:
    """How the ledger's schema differs from what its revision's migrations create (empty: it does not).

    A dropped append-only trigger, an edited projection trigger or view, a removed projected
    event type, or a trigger nobody's migration made: each is a way to change the results without
    touching an event's hash. Extra tables, views and indexes (someone's own queries) are not drift.
    """
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        revision = raw.execute("SELECT version_num FROM alembic_version").fetchone()
        actual, actual_types = _schema_of(raw)
    if revision is None:
        return ["alembic_version is empty: the schema revision is unknown"]
    expected, expected_types = expected_schema(revision[0])
    problems = []
    for (kind, name), (_table, sql) in sorted(expected.items()):
        if (kind, name) not in actual:
            problems.append(f"{kind} {name} is missing")
        elif " ".join(actual[(kind, name)][1].split()) != " ".join(sql.split()):
            problems.append(f"{kind} {name} differs from what migration {revision[0]} created")
    for (kind, name), (table, _sql) in sorted(actual.items()):
        if kind == "trigger" and (kind, name) not in expected:
            problems.append(f"trigger {name} on {table} was not created by daydream's migrations")
    if actual_types != expected_types:
        changed = sorted(expected_types ^ actual_types)
        problems.append(f"projected_types differs from migration {revision[0]} ({', '.join(changed)})")
    return problems


def raw_sql(engine: Engine, sql: str, params: Any = ()) -> list[tuple]:
    """Run one read-only statement and return all rows (a convenience for views and reports)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql, params).fetchall()]


__all__ = ["APPLICATION_ID", "FileInfo", "check_path", "check_writable", "create_ledger_engine",
           "current_revision", "default_db_path", "head_revision", "inspect_file", "known_revisions",
           "migrate", "migrations_dir", "open_engine", "raw_sql", "text"]
