"""Opening a ledger file: path checks, what a file holds, and the schema (Alembic migrations).

Before a single read-write connection is made, the file is inspected read-only: another
application's database, a ledger from a newer daydream, or a read-only file for a command that
writes are refused here, so the file is never changed by a command that cannot use it. The ledger
is then reached through ``daydream.ledger.backend`` (plain ``sqlite3``, no SQLAlchemy).

The schema is owned by Alembic; ``migrate()`` runs it from code, so ``daydream init`` and the
tests go through exactly the same path. SQLAlchemy and Alembic are imported only here, and only
when a schema is created, upgraded or compared (``verify --full``): a ledger's revision is read
from ``alembic_version`` directly and compared with the revision ids written in the migration
files, so opening an up-to-date ledger imports neither.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daydream.errors import (DaydreamError, LedgerForeignFile, LedgerMigrationError, LedgerNotInitialised,
                             LedgerPathError, LedgerReadOnly, LedgerSchemaTooNew)
from daydream.ledger.backend import (BUSY_TIMEOUT_S, PAGE_SIZE, WAL_AUTOCHECKPOINT_BYTES, WAL_SIZE_LIMIT_BYTES,
                                     SqliteBackend, connect_readonly)

SQLITE_MAGIC = b"SQLite format 3\x00"
# "dayd" in the file header (PRAGMA application_id, set by migration 0006): tells a ledger from
# another application's SQLite file without reading its tables.
APPLICATION_ID = 0x64617964
# Tables every ledger has had since 0001 (how ledgers from before 0006 are recognised).
LEDGER_TABLES = ("alembic_version", "events", "texts")
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
    # The read-only URI options that opened it ("mode=ro", or "…&immutable=1" in a read-only folder).
    readonly_options: str | None = None

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
    conn = connect_readonly(p)
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
    return FileInfo(p, tables, app_id, revision, conn.daydream_options)


def refuse_foreign(info: FileInfo) -> None:
    """Raise ``LedgerForeignFile`` for another application's database, saying what to do."""
    if info.foreign:
        p = info.path
        raise LedgerForeignFile(
            f"{str(p)!r} is a SQLite database of another application ({info.describe()}), not a daydream "
            f"ledger; daydream leaves it untouched: give --db a ledger path (or run 'daydream init --force "
            f"--db {p}' to add a ledger's tables to this file)")


# ----------------------------------------------------------------------------- revisions, without Alembic
# The two assignments every Alembic revision file starts with (an annotation is allowed).
_REVISION_LINE = re.compile(r"^revision\s*(?::[^=]+)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_LINE = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", re.MULTILINE)


@functools.lru_cache(maxsize=1)
def revision_graph() -> dict[str, tuple[str, ...]]:
    """Every migration revision shipped with this daydream -> the revisions it follows.

    Read from the revision files' ``revision = …`` and ``down_revision = …`` lines, so that
    knowing whether a ledger is current costs a few file reads instead of importing Alembic
    (a test checks this agrees with Alembic's own reading).
    """
    graph: dict[str, tuple[str, ...]] = {}
    for file in sorted((migrations_dir() / "versions").glob("*.py")):
        source = file.read_text(encoding="utf-8")
        revision, down = _REVISION_LINE.search(source), _DOWN_LINE.search(source)
        if revision is None or down is None:
            continue  # not a revision (a helper module)
        graph[revision.group(1)] = tuple(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    return graph


def known_revisions() -> frozenset[str]:
    """Every migration revision shipped with this version of daydream."""
    return frozenset(revision_graph())


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration revision shipped with this version of daydream."""
    graph = revision_graph()
    followed = {down for downs in graph.values() for down in downs}
    heads = sorted(set(graph) - followed)
    if len(heads) != 1:
        raise LedgerMigrationError(f"the migrations in {migrations_dir() / 'versions'} have "
                                   f"{len(heads)} heads ({', '.join(heads) or 'none'}), expected one")
    return heads[0]


def refuse_unknown_revision(info: FileInfo) -> None:
    """Raise ``LedgerSchemaTooNew`` when the ledger's revision is not one this daydream ships."""
    if info.revision is not None and info.revision not in known_revisions():
        raise LedgerSchemaTooNew(
            f"ledger {str(info.path)!r} is at schema revision {info.revision!r}, which this daydream does "
            f"not know (it knows up to {head_revision()!r}): it was written by a newer daydream; upgrade "
            "daydream to use it")


# ----------------------------------------------------------------------------- opening
def _backend(p: Path, readonly: bool, readonly_options: str | None = None) -> SqliteBackend:
    backend = SqliteBackend(p, readonly=readonly, readonly_options=readonly_options)
    try:
        with backend.read() as conn:  # the first connection: sets WAL, page size …
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except DaydreamError:
        raise
    except sqlite3.Error as exc:  # "file is not a database", "unable to open" …
        raise LedgerPathError(f"cannot open ledger {str(p)!r}: {exc}") from None
    return backend


# ----------------------------------------------------------------------------- PostgreSQL (issue 17)
def is_postgres(path: str | os.PathLike[str]) -> bool:
    """Whether ``--db`` names a PostgreSQL database (``postgresql://…``) rather than a SQLite file."""
    return isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))


def location(path: str | os.PathLike[str]) -> Any:
    """What ``Ledger.path`` holds: the file's ``Path``, or a PostgreSQL URL without its password (a str,
    for messages: the connection is the backend's)."""
    if is_postgres(path):
        from daydream.ledger.pg_backend import redact

        return redact(str(path))
    return Path(path)


def _pg_info(backend: Any) -> FileInfo:
    """What a PostgreSQL database's current schema holds, as ``FileInfo`` (no application id there)."""
    tables = backend.tables()
    revision = None
    if "alembic_version" in tables:
        row = backend.query("SELECT version_num FROM alembic_version")
        revision = row[0][0] if row else None
    return FileInfo(Path("."), tables, 0, revision)


def _pg_backend(url: str, *, create: bool, readonly: bool, force: bool, opening: bool) -> Any:
    from daydream.ledger.pg_backend import PgBackend, redact

    backend = PgBackend(url, readonly=readonly)
    info = _pg_info(backend)
    shown = redact(url)
    if info.foreign and not (create and force):
        backend.close()
        raise LedgerForeignFile(
            f"PostgreSQL database {shown} holds other tables ({info.describe()}), not a daydream ledger; "
            "daydream leaves it untouched: give --db an empty database (or run 'daydream init --force' to add "
            "a ledger's tables beside them)")
    if info.foreign and info.revision is not None:
        backend.close()
        raise LedgerForeignFile(f"PostgreSQL database {shown} has another application's alembic_version "
                                f"(revision {info.revision!r}); use another database")
    if opening and info.revision is None:
        backend.close()
        raise LedgerNotInitialised(f"PostgreSQL database {shown} is not yet a daydream ledger: run "
                                   f"'daydream init --db {shown}'")
    if info.revision is not None and info.revision not in known_revisions():
        backend.close()
        raise LedgerSchemaTooNew(
            f"ledger {shown} is at schema revision {info.revision!r}, which this daydream does not know (it "
            f"knows up to {head_revision()!r}): it was written by a newer daydream; upgrade daydream to use it")
    if opening and not readonly and info.revision != head_revision():
        migrate(backend, shown)
    return backend


def create_backend(path: str | os.PathLike[str], *, create: bool = False, readonly: bool = False,
                   force: bool = False) -> SqliteBackend:
    """The ledger file at ``path`` as a backend, whatever its schema (none yet, old, current).

    A ``postgresql://`` URL gives a ``PgBackend`` on that database, with the same refusals.

    The file is inspected read-only first: another application's database is refused (unless
    ``create`` and ``force``: ``init --force``), as is a ledger from a newer daydream, and a
    writable backend needs a writable file — all before anything could change the file.
    """
    if is_postgres(path):
        return _pg_backend(str(path), create=create, readonly=readonly, force=force, opening=False)
    p = check_path(path, create=create)
    options = None
    if p.exists():
        info = inspect_file(p)
        options = info.readonly_options
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
    return _backend(p, readonly, options)


def open_backend(path: str | os.PathLike[str], *, readonly: bool = False) -> SqliteBackend:
    """Open an existing ledger, upgrading its schema if it is older than this daydream.

    Whatever is refused (another application's file, an empty file, a ledger from a newer daydream,
    a read-only file when writing) is refused before the first read-write connection, so the file
    is never changed by a command that cannot use it. Only a writable ledger whose revision is
    behind imports Alembic (to upgrade it); a read-only one is read at the schema it has. A
    ``postgresql://`` URL opens a ``PgBackend`` the same way.
    """
    if is_postgres(path):
        return _pg_backend(str(path), create=False, readonly=readonly, force=False, opening=True)
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
    backend = _backend(p, readonly, info.readonly_options)
    if not readonly and info.revision != head_revision():
        migrate(backend, path)
    return backend


def current_revision(backend: SqliteBackend) -> str | None:
    """The revision the ledger file is at, or None when it has no daydream schema."""
    with backend.read() as conn:
        if not backend.has_table(conn, "alembic_version"):
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


# ----------------------------------------------------------------------------- schema (Alembic)
def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


@contextlib.contextmanager
def schema_connection(backend: SqliteBackend) -> Iterator[Any]:
    """A SQLAlchemy connection to the ledger for Alembic, committed when the block ends without error.

    Made from the backend's own connection settings; transactions begin ``IMMEDIATE``, so two
    processes upgrading one ledger at once take turns instead of failing on a lock upgrade. The
    only place (with ``expected_schema``) that imports SQLAlchemy.
    """
    from sqlalchemy import create_engine, event
    from sqlalchemy.pool import NullPool

    if backend.name == "postgresql":
        engine = create_engine("postgresql+psycopg://", creator=lambda: backend.connect(autocommit=False),
                               poolclass=NullPool)
        # Two hosts upgrading one database at once take turns.
        first = "SELECT pg_advisory_xact_lock(hashtext('daydream migrations'))"
    else:
        engine = create_engine("sqlite://", creator=backend.connect, poolclass=NullPool)
        first = "BEGIN IMMEDIATE"  # the driver is in autocommit mode: say BEGIN ourselves

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(first)

    try:
        with engine.connect() as conn:
            yield conn
            if conn.in_transaction():
                conn.commit()
    finally:
        engine.dispose()


def migrate(backend: SqliteBackend, path: str | os.PathLike[str] | None = None, *,
            revision: str | None = None) -> tuple[str | None, str]:
    """Bring the ledger schema to the newest revision (or ``revision``). Returns (before, after).

    All migrations run in one transaction: when one fails, the ledger stays exactly as it was and
    ``LedgerMigrationError`` says which file, from which revision, and why.
    """
    before = current_revision(backend)
    target = revision or head_revision()
    if before == target:
        return before, target
    if before is not None and before not in known_revisions():
        refuse_unknown_revision(FileInfo(Path(path or backend.path), revision=before))
    from alembic import command

    try:
        with schema_connection(backend) as conn:
            command.upgrade(_alembic_config(conn), target)
    except DaydreamError:
        raise
    except Exception as exc:
        where = f"ledger {str(path or backend.path)!r}"
        raise LedgerMigrationError(f"cannot upgrade {where} from schema {before or 'none'} to {target} "
                                   f"(left unchanged): {exc}") from exc
    return before, target


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
    from sqlalchemy import create_engine
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


def schema_drift(backend: SqliteBackend) -> list[str]:
    """How the ledger's schema differs from what its revision's migrations create (empty: it does not).

    A dropped append-only trigger, an edited projection trigger or view, a removed projected
    event type, or a trigger nobody's migration made: each is a way to change the results without
    touching an event's hash. Extra tables, views and indexes (someone's own queries) are not drift.
    """
    if backend.name == "postgresql":
        return _pg_schema_drift(backend)
    with backend.snapshot() as conn:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        actual, actual_types = _schema_of(conn)
    if revision is None:
        return ["alembic_version is empty: the schema revision is unknown"]
    expected, expected_types = expected_schema(revision[0])
    problems = []
    for (kind, name), (_table, sql) in sorted(expected.items()):
        if (kind, name) not in actual:
            problems.append(f"{kind} {name} is missing")
        elif " ".join(actual[(kind, name)][1].split()) != " ".join(sql.split()):
            problems.append(f"{kind} {name} differs from what migration {revision[0]} created")
    return problems + _foreign_triggers_and_types(actual, expected, actual_types, expected_types, revision[0])


def _foreign_triggers_and_types(actual: dict[tuple[str, str], tuple[str, Any]],
                                expected: dict[tuple[str, str], Any], actual_types: set[str],
                                expected_types: set[str], revision: str) -> list[str]:
    """Drift both dialects report alike: triggers no migration made, and a changed ``projected_types``."""
    problems = [f"trigger {name} on {table} was not created by daydream's migrations"
                for (kind, name), (table, _definition) in sorted(actual.items())
                if kind == "trigger" and (kind, name) not in expected]
    if actual_types != expected_types:
        changed = sorted(expected_types ^ actual_types)
        problems.append(f"projected_types differs from migration {revision} ({', '.join(changed)})")
    return problems


# The guards of a PostgreSQL ledger (migrations 0001 and 0006): trigger -> (table, function). Checked
# alone only when the full comparison cannot be made (``_pg_guard_drift``).
_PG_GUARDS = {
    **{f"{table}_no_{verb}": (table, "daydream_append_only")
       for table in ("events", "texts") for verb in ("update", "delete", "truncate")},
    **{name: ("chain_head", "daydream_chain_head_refuse")
       for name in ("chain_head_no_delete", "chain_head_no_truncate", "chain_head_forward")},
}

# What a PostgreSQL schema holds that could change what the ledger computes without touching an
# event's hash, each row (kind, name, table, definition) read from the server's catalogs for the
# current schema. Definitions are printed by the server (pg_get_*def), so two schemas made by the
# same statements give the same text, whatever their names once ``{schema}.`` is taken out: the
# server qualifies a function's own name and an index's table always, other names only when they
# are not on the search_path (and each side is read with its own schema first on it).
_PG_SCHEMA_SQL = (
    ("SELECT 'function', p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid) "
     "FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace AND p.prokind IN ('f', 'p')"),
    ("SELECT 'trigger', t.tgname, c.relname, pg_get_triggerdef(t.oid) || ' -- enabled ' || t.tgenabled::text "
     "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
     "WHERE NOT t.tgisinternal AND c.relnamespace = current_schema()::regnamespace"),
    ("SELECT 'view', c.relname, c.relname, pg_get_viewdef(c.oid) FROM pg_class c "
     "WHERE c.relkind IN ('v', 'm') AND c.relnamespace = current_schema()::regnamespace"),
    ("SELECT 'index', i.relname, c.relname, pg_get_indexdef(i.oid) FROM pg_index x "
     "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid "
     "WHERE c.relnamespace = current_schema()::regnamespace"),
    # A table: its columns (name, type, collation, NOT NULL, default) in order, then its constraints.
    ("SELECT 'table', c.relname, c.relname, "
     "(SELECT string_agg(format('%I %s%s%s%s', a.attname, format_type(a.atttypid, a.atttypmod), "
     "        CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation "
     "             THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END, "
     "        CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, "
     "        coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')), ', ' ORDER BY a.attnum) "
     "   FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
     "   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
     "   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) || coalesce("
     "(SELECT '; ' || string_agg(format('%I %s', k.conname, pg_get_constraintdef(k.oid)), '; ' "
     "        ORDER BY k.conname) FROM pg_constraint k WHERE k.conrelid = c.oid), '') "
     "FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace"),
)
_PG_PROJECTED_TYPES = "SELECT type FROM projected_types"
_PG_TRIGGER_STATES = {"O": "enabled", "A": "enabled ALWAYS", "R": "enabled REPLICA", "D": "disabled"}

PgSchema = tuple[dict[tuple[str, str], tuple[str, str]], frozenset[str]]
# The reference schema per (server version, revision): made once per process (issue 17).
_pg_reference_cache: dict[tuple[str, str], PgSchema] = {}


class PgSchemaNotCompared(DaydreamError):
    """The reference schema could not be made on the server (no CREATE privilege, a standby …)."""


def _pg_schema_of(rows_of: Any) -> PgSchema:
    """{(kind, name): (table, definition)} and the projected types of the current schema, read
    through ``rows_of(sql) -> rows`` (one connection, the schema first on its search_path)."""
    schema = rows_of("SELECT quote_ident(current_schema())")[0][0]
    qualified = re.compile(rf'(?<![\w"$]){re.escape(schema)}\.')  # the schema's name as a qualifier
    objects: dict[tuple[str, str], tuple[str, str]] = {}
    for sql in _PG_SCHEMA_SQL:
        rows = rows_of(sql)
        overloaded = {n for n in (row[1] for row in rows if row[0] == "function")
                      if sum(row[1] == n for row in rows) > 1}
        for kind, name, table, definition in rows:
            if kind == "function":  # ``table`` holds its arguments: they tell overloads apart
                name, table = (f"{name}({table})" if name in overloaded else name), ""
            objects[(kind, name)] = (table, qualified.sub("", definition))
    types = frozenset(r[0] for r in rows_of(_PG_PROJECTED_TYPES)) if ("table", "projected_types") in objects \
        else frozenset()
    return objects, types


def pg_expected_schema(backend: Any, revision: str) -> PgSchema:
    """What the migrations up to ``revision`` create on this PostgreSQL server, found by running them.

    In one transaction on a connection of its own: a scratch schema is created, put alone on the
    search_path, migrated with Alembic (exactly what ``migrate`` runs), read, and rolled back, so
    nothing remains and the ledger's own objects are never touched (nor locked). The reference
    thus comes from this daydream's code, not from the database being checked. Kept per process,
    per server version (which prints the definitions) and revision. Needs the CREATE privilege on
    the database; ``PgSchemaNotCompared`` says why it could not be made.
    """
    import secrets

    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    psycopg = backend.psycopg
    try:
        version = backend.query("SHOW server_version_num")[0][0]
    except psycopg.Error as exc:
        raise PgSchemaNotCompared(_first_line(exc)) from None
    key = (version, revision)
    if key in _pg_reference_cache:
        return _pg_reference_cache[key]

    def connect() -> Any:
        raw = backend.connect(autocommit=False)
        raw.read_only = False  # a read-only backend too: the transaction below is always rolled back
        return raw

    scratch = f"daydream_reference_{os.getpid()}_{secrets.token_hex(4)}"
    engine = create_engine("postgresql+psycopg://", creator=connect, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            try:
                conn.exec_driver_sql(f"CREATE SCHEMA {scratch}")
                conn.exec_driver_sql(f"SET LOCAL search_path TO {scratch}")
                command.upgrade(_alembic_config(conn), revision)
                raw = conn.connection.driver_connection  # without parameters: the text as it is
                reference = _pg_schema_of(lambda sql: raw.execute(sql).fetchall())
            finally:
                conn.rollback()
    except DaydreamError:
        raise
    except Exception as exc:  # psycopg's error, wrapped by SQLAlchemy or Alembic
        cause = getattr(exc, "orig", None) or exc
        raise PgSchemaNotCompared(_first_line(cause)) from None
    finally:
        engine.dispose()
    _pg_reference_cache[key] = reference
    return reference


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pg_schema_drift(backend: Any) -> list[str]:
    """On PostgreSQL, as on SQLite: every function, trigger (and its enabled state), view, index and
    table that the ledger's revision creates, compared with what its migrations create on this server
    (``pg_expected_schema``), no trigger beyond them, and the same projected types.

    When the reference cannot be made (a login without CREATE on the database), the append-only
    guards are still checked, and one problem says that the rest could not be compared."""
    with backend.snapshot() as conn:
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        actual, actual_types = _pg_schema_of(lambda sql: conn.execute(sql).fetchall())
    if revision is None:
        return ["alembic_version is empty: the schema revision is unknown"]
    revision = revision[0]
    try:
        expected, expected_types = pg_expected_schema(backend, revision)
    except PgSchemaNotCompared as exc:
        return [*_pg_guard_drift(actual), (
            f"could not compare the functions, triggers and views with what migration {revision} creates: {exc} "
            "(the comparison needs CREATE on the database, for a scratch schema it rolls back; "
            "run 'daydream verify --full' with such a login)")]
    problems = []
    for (kind, name), (_table, definition) in sorted(expected.items()):
        if (kind, name) not in actual:
            problems.append(f"{kind} {name} is missing")
            continue
        found = actual[(kind, name)][1]
        if kind == "trigger":  # the same trigger in another state: say which
            (definition, state), (found, found_state) = definition.rsplit(" ", 1), found.rsplit(" ", 1)
            if definition == found and state != found_state:
                problems.append(
                    f"trigger {name} is not enabled ALWAYS (state {found_state!r}): it may not fire"
                    if state == "A" else
                    f"trigger {name} is {_PG_TRIGGER_STATES.get(found_state, found_state)}, not "
                    f"{_PG_TRIGGER_STATES.get(state, state)} as migration {revision} left it")
                continue
        if found != definition:
            problems.append(f"{kind} {name} differs from what migration {revision} created")
    return problems + _foreign_triggers_and_types(actual, expected, actual_types, expected_types, revision)


def _pg_guard_drift(actual: dict[tuple[str, str], tuple[str, str]]) -> list[str]:
    """The append-only guards alone, from constants: every guard trigger present on its table,
    calling its function, enabled ALWAYS; the two guard functions still refusing."""
    problems = []
    for name, (table, function) in sorted(_PG_GUARDS.items()):
        found = actual.get(("trigger", name))
        if found is None:
            problems.append(f"trigger {name} is missing")
        elif found[0] != table or f"EXECUTE FUNCTION {function}()" not in found[1]:
            problems.append(f"trigger {name} differs from what the migrations created")
        elif not found[1].endswith(" A"):
            problems.append(f"trigger {name} is not enabled ALWAYS (state {found[1][-1]!r}): it may not fire")
    for (kind, name), (table, _definition) in sorted(actual.items()):
        if kind == "trigger" and table in ("events", "texts", "chain_head") and name not in _PG_GUARDS:
            problems.append(f"trigger {name} on {table} was not created by daydream's migrations")
    for function in ("daydream_append_only", "daydream_chain_head_refuse"):
        if "RAISE EXCEPTION" not in actual.get(("function", function), ("", ""))[1]:
            problems.append(f"function {function} no longer refuses changes")
    return problems


__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "FileInfo", "PAGE_SIZE", "WAL_AUTOCHECKPOINT_BYTES",
           "WAL_SIZE_LIMIT_BYTES", "check_path", "check_writable", "create_backend", "current_revision",
           "default_db_path", "head_revision", "inspect_file", "known_revisions", "migrate", "migrations_dir",
           "open_backend", "revision_graph", "schema_connection", "schema_drift"]
