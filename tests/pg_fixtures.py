"""PostgreSQL servers and databases for tests (issue 17): a real server, never a mock.

The server is ``$DAYDREAM_TEST_PG`` (a URL whose user may create databases), or else a throwaway
cluster this session starts with ``.ci/pg-cluster.sh`` (initdb in a temporary folder, loopback,
trust auth) and stops at the end. Without either, tests that need one are skipped with the
reason — except under CI (``$CI`` set), where they fail: CI must run them.

Each test gets its own database cloned from a template migrated once per session
(``CREATE DATABASE … TEMPLATE``: ~80 ms instead of running every migration). ``ledger_url`` is
the parametrised fixture for ledger-behaviour tests: a fresh ledger on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from daydream.ledger.store import Ledger

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = REPO / ".ci" / "pg-cluster.sh"


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def admin(url: str, *statements: str) -> None:
    """Run statements that cannot run in a transaction (CREATE/DROP DATABASE) on the server."""
    import psycopg

    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)


def _no_server(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"no PostgreSQL server in CI: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason} (set DAYDREAM_TEST_PG to a server's URL, or install "
                "PostgreSQL so that .ci/pg-cluster.sh can start one)")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for this test session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_server("psycopg is not installed (uv sync --extra postgres)")
    url = os.environ.get("DAYDREAM_TEST_PG")
    if url:
        yield url
        return
    folder = tempfile.mkdtemp(prefix="daydream-test-pg.")
    env = {k: v for k, v in os.environ.items() if k != "DAYDREAM_TEST_PG"}
    try:
        started = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start", folder], capture_output=True, text=True,
                                 env=env, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _no_server(f"could not run {CLUSTER_SCRIPT.name}: {exc}")
    if started.returncode != 0:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", folder], capture_output=True, env=env)
        last = (started.stderr.strip().splitlines() or ["no output"])[-1]
        _no_server(f"{CLUSTER_SCRIPT.name} could not start one ({last})")
    try:
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", folder], capture_output=True, env=env)


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    """A database migrated to the newest schema, cloned by each test (its name)."""
    name = f"daydream_tpl_{uuid.uuid4().hex[:12]}"
    admin(pg_server, f"CREATE DATABASE {name}")
    ledger = Ledger.init(with_database(pg_server, name))[0]
    ledger.close()
    try:
        yield name
    finally:
        admin(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fresh_database(pg_server: str, template: str | None) -> str:
    """A new database (empty, or a clone of ``template``); returns its URL."""
    name = f"daydream_t_{uuid.uuid4().hex[:12]}"
    admin(pg_server, f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return with_database(pg_server, name)


def drop_database(url: str) -> None:
    admin(url, f"DROP DATABASE IF EXISTS {urlsplit(url).path.lstrip('/')} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_server: str, pg_template: str) -> Iterator[str]:
    """The URL of a fresh, initialised PostgreSQL ledger, dropped after the test."""
    url = fresh_database(pg_server, pg_template)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def pg_empty_url(pg_server: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database (no ledger yet), dropped after the test."""
    url = fresh_database(pg_server, None)
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, initialised ledger on each backend: a SQLite file's path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        path = tmp_path / "ledger.db"
        Ledger.init(path)[0].close()
        return str(path)
    return request.getfixturevalue("pg_url")


def is_pg(url: str | os.PathLike[str]) -> bool:
    """Whether ``url`` (a ``ledger_url``) names a PostgreSQL ledger rather than a SQLite file."""
    return str(url).startswith("postgresql://")


def raw(url: str | os.PathLike[str], *statements: str, disable: Sequence[str] = ()) -> None:
    """Run SQL straight on a ledger's database, as someone bypassing daydream would, with the
    append-only guards named in ``disable`` (``events_no_update`` …) out of the way first: dropped
    on SQLite, disabled on PostgreSQL."""
    if is_pg(url):
        import psycopg

        with psycopg.connect(str(url), autocommit=True) as conn:
            for trigger in disable:
                conn.execute(f"ALTER TABLE {trigger.split('_no_')[0]} DISABLE TRIGGER {trigger}")
            for sql in statements:
                conn.execute(sql)
        return
    conn = sqlite3.connect(url, isolation_level=None)
    try:
        for trigger in disable:
            conn.execute(f"DROP TRIGGER {trigger}")
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


def raw_rows(url: str | os.PathLike[str], sql: str) -> list[tuple]:
    """The rows ``sql`` gives, read straight from the database (no daydream in between)."""
    if is_pg(url):
        import psycopg

        with psycopg.connect(str(url)) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    conn = sqlite3.connect(url)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
