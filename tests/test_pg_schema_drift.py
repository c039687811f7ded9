"""``verify --full`` on PostgreSQL compares the whole schema with what the migrations create (issue 17).

The reference is made on the ledger's own server by running the migrations into a scratch schema
inside one transaction that is rolled back (``db.pg_expected_schema``). Each test alters one object
the way someone with the database's password could (a function's body, a view, an index, a
column's default) and checks that the comparison names it; the others check that the reference
leaves nothing behind, is made once per process, and that a login that may not create a schema
gets one line saying the schema could not be compared (and plain ``verify`` still works for it).
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from daydream.ledger import db as ddb
from daydream.ledger.store import Ledger
from tests.pg_fixtures import admin, raw, raw_rows
from tests.runner_fixtures import run_cli
from tests.test_ledger import event


def drift(url: str) -> list[str]:
    ledger = Ledger.open(url, readonly=True)
    try:
        return ddb.schema_drift(ledger.backend)
    finally:
        ledger.close()


def functiondef(url: str, name: str) -> str:
    return raw_rows(url, f"SELECT pg_get_functiondef('{name}'::regproc)")[0][0]


def test_the_reference_is_every_object_the_migrations_make_and_leaves_nothing(pg_url: str) -> None:
    ledger = Ledger.open(pg_url)
    try:
        expected, types = ddb.pg_expected_schema(ledger.backend, ddb.head_revision())
        again = ddb.pg_expected_schema(ledger.backend, ddb.head_revision())
        assert ddb.schema_drift(ledger.backend) == []
    finally:
        ledger.close()
    assert again[0] is expected  # made once per process (and server version, revision)
    names = {name for _kind, name in expected}
    assert {"daydream_project", "daydream_append", "daydream_append_only", "read_gen_score_changed",
            "project_events", "events_no_update", "chain_head_forward", "scores", "events", "gen_state",
            "ix_events_type_seq"} <= names
    assert {"ScoreRecorded", "PlanStarted", "CohortPlanned"} <= types
    # The scratch schema was rolled back: nothing of it remains on the server.
    assert raw_rows(pg_url, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'daydream_reference%'")[0][0] == 0


@pytest.mark.parametrize("what", ["read-side function", "server-side append", "guard function"])
def test_a_rewritten_function_is_named(pg_url: str, what: str) -> None:
    name = {"read-side function": "read_gen_score_changed", "server-side append": "daydream_append",
            "guard function": "daydream_append_only"}[what]
    sql = functiondef(pg_url, name)
    forged = sql.replace("BEGIN", "BEGIN\n    PERFORM 1;", 1)
    assert forged != sql
    raw(pg_url, forged)
    assert drift(pg_url) == [f"function {name} differs from what migration {ddb.head_revision()} created"]


def test_a_replaced_view_a_dropped_index_and_a_new_default_are_named(pg_url: str) -> None:
    view = raw_rows(pg_url, "SELECT pg_get_viewdef('scores'::regclass)")[0][0]
    raw(pg_url, "CREATE OR REPLACE VIEW scores AS " + view.replace("v.score,", "9::double precision AS score,", 1),
        "DROP INDEX ix_gen_state_combo",
        "ALTER TABLE gen_state ALTER COLUMN attempt SET DEFAULT 7")
    head = ddb.head_revision()
    assert drift(pg_url) == ["index ix_gen_state_combo is missing",
                             f"table gen_state differs from what migration {head} created",
                             f"view scores differs from what migration {head} created"]


def test_a_trigger_disabled_or_added_beside_the_projections_is_named(pg_url: str) -> None:
    raw(pg_url, "ALTER TABLE gen_state DISABLE TRIGGER read_gen_score_changed",
        "CREATE FUNCTION quiet() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "CREATE TRIGGER quiet BEFORE INSERT ON cohort_members FOR EACH ROW EXECUTE FUNCTION quiet()")
    assert drift(pg_url) == [
        f"trigger read_gen_score_changed is disabled, not enabled as migration {ddb.head_revision()} left it",
        "trigger quiet on cohort_members was not created by daydream's migrations"]


def test_a_login_that_may_not_create_a_schema_is_told_in_one_line(pg_url: str) -> None:
    Ledger.open(pg_url).append([event("s:a", 1, 0)])
    role = f"reader_{uuid.uuid4().hex[:10]}"
    database = urlsplit(pg_url).path.lstrip("/")
    admin(pg_url, f"CREATE ROLE {role} LOGIN")
    try:
        raw(pg_url, f"GRANT CONNECT ON DATABASE {database} TO {role}", f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        parts = urlsplit(pg_url)
        reader = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
        plain = run_cli("verify", "--db", reader)
        assert plain.returncode == 0, plain.stderr
        full = run_cli("verify", "--full", "--db", reader)
        assert full.returncode == 1 and "Traceback" not in full.stderr
        assert full.stderr.strip().splitlines() == [
            f"verify failed: schema: could not compare the functions, triggers and views with what migration "
            f"{ddb.head_revision()} creates: permission denied for database {database} (the comparison needs "
            "CREATE on the database, for a scratch schema it rolls back; run 'daydream verify --full' with such "
            "a login)"]
    finally:
        raw(pg_url, f"DROP OWNED BY {role}")
        admin(pg_url, f"DROP ROLE {role}")
