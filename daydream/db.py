"""Opening a ledger file: path checks, connection settings and schema migrations.

Every connection gets WAL journaling, a generous ``busy_timeout`` and foreign keys, and runs in
autocommit mode at the driver level so that *we* choose ``BEGIN`` (reads) or ``BEGIN IMMEDIATE``
(writes). The schema is owned by Alembic; ``migrate()`` runs it from code, so ``daydream init`` and
the tests go through exactly the same path.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import QueuePool

from daydream.errors import DaydreamError, LedgerMigrationError, LedgerNotInitialised, LedgerPathError

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 60.0
# Checkpoint the write-ahead log every ~40 MB instead of SQLite's 1,000 pages: a page rewritten by
# many appends is copied back once, not ten times (measured: +35% on batched appends). The last
# connection to close still checkpoints and removes the log.
WAL_AUTOCHECKPOINT_BYTES = 40 * 2**20
# When a checkpoint lets the log start over, the next commit trims the file to this size, so the
# file's size tells how much log there is (daydream.checkpoints keeps it bounded during runs).
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
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "migrations", here / "_migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise LedgerPathError(f"cannot find the migrations folder next to {here}")


def check_path(path: str | os.PathLike[str], *, create: bool) -> Path:
    """Refuse paths that cannot hold a ledger, before SQLite gets a chance to create or damage files.

    With ``create=False`` the file must already exist.
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
        if create and not os.access(p, os.W_OK):
            raise LedgerPathError(f"ledger {str(p)!r} is not writable")
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


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    mode = "ro" if readonly else "rwc"
    uri = f"file:{path.resolve().as_posix()}?mode={mode}"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        # Only takes effect while the file is still empty (a new ledger); a no-op afterwards.
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_BYTES // page_size}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    return conn


def create_ledger_engine(path: str | os.PathLike[str], *, create: bool = False,
                         readonly: bool = False) -> Engine:
    """An engine on the ledger at ``path``; transactions begin ``IMMEDIATE`` when asked to write.

    Use ``conn.execution_options(immediate=True)`` before ``conn.begin()`` to take the write lock up
    front, which is what keeps concurrent writers from deadlocking on lock upgrades.
    """
    p = check_path(path, create=create)
    try:
        engine = create_engine("sqlite://", creator=lambda: _connect(p, readonly), poolclass=QueuePool, pool_size=2, max_overflow=8)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
    except Exception as exc:  # sqlite3 says "file is not a database", "unable to open" …
        raise LedgerPathError(f"cannot open ledger {str(p)!r}: {exc.__cause__ or exc}") from None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


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
    """Open an existing ledger, upgrading its schema if it is older than this daydream."""
    engine = create_ledger_engine(path, create=False, readonly=readonly)
    rev = current_revision(engine)
    if rev is None:
        raise LedgerNotInitialised(
            f"{str(path)!r} is a SQLite file but not a daydream ledger: run 'daydream init --db {path}'")
    if not readonly and rev != head_revision():
        migrate(engine, path)
    return engine


def raw_sql(engine: Engine, sql: str, params: Any = ()) -> list[tuple]:
    """Run one read-only statement and return all rows (a convenience for views and reports)."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(sql, params).fetchall()]


__all__ = ["check_path", "create_ledger_engine", "current_revision", "default_db_path", "head_revision",
           "migrate", "migrations_dir", "open_engine", "raw_sql", "text"]
