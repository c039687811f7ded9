"""Projections applied once per append (migration 0004) give exactly what 0002's per-row trigger gave."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command

from daydream.ledger import db, projections
from daydream.ledger.backend import SqliteBackend
from daydream.ledger.store import Event, Ledger, NewEvent
from tests.read_fixtures import build_fixture

# The last revision before 0008 appended its own statements to the feed's trigger.
FEED_REVISION = "0005_llm_calls_by_stream"
# The projection tables both revisions have (cohort_scales came with 0010).
TABLES = [t for t in projections.TABLES if t != "cohort_scales"]


def _alembic(backend: SqliteBackend, move: str, revision: str) -> None:
    """Run ``alembic upgrade|downgrade revision`` on the ledger behind ``backend``."""
    with db.schema_connection(backend) as conn:
        getattr(command, move)(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()
    assert db.current_revision(backend) == (db.head_revision() if revision == "head" else revision)


def _at_revision(path: Path, revision: str) -> Ledger:
    backend = db.create_backend(path, create=True)
    _alembic(backend, "upgrade", revision)
    return Ledger(path, backend)


def _replay(events: list[Event], into: Ledger, batch: int) -> None:
    new = [NewEvent(e.stream, e.type, e.payload, causation_seq=e.causation_seq) for e in events]
    for i in range(0, len(new), batch):
        into.append(new[i:i + batch])


def _projections(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3").fetchall() for t in TABLES}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    """The read-side fixture's events (plans, calls, failures, retries, scores, links) as recorded."""
    ledger = Ledger.init(tmp_path_factory.mktemp("recorded") / "ledger.db")[0]
    build_fixture(ledger)
    # Unrelated events in between, so batches mix projected and ignored types.
    events = []
    for e in ledger.events():
        events.append(e)
        events.append(Event(0, f"noise:{e.seq % 3}", 0, "NoiseRecorded", {"after": e.seq}, "", None, "", ""))
    return events


@pytest.mark.parametrize("batch", [1, 7, 10_000])
def test_projections_match_the_per_row_trigger_of_0002_whatever_the_batching(
        tmp_path: Path, recorded: list[Event], batch: int) -> None:
    old = _at_revision(tmp_path / "old.db", "0003_views")  # projects with 0002's trigger on events
    _replay(recorded, old, 1)
    # 0004's feed as it was made; 0008 adds scales to gen_state (tests/test_scores_migration.py).
    new = _at_revision(tmp_path / "new.db", FEED_REVISION)
    _replay(recorded, new, batch)
    expected, got = _projections(old.path), _projections(new.path)
    assert got["gen_state"] and got["cohort_members"] and got["cohort_essay_scores"]
    assert got == expected
    build_fixture(source := Ledger.init(tmp_path / "texts.db")[0])  # the texts the events refer to
    new.put_texts(t for (t,) in source.query("SELECT text FROM texts"))
    assert new.verify()[0] == len(recorded)


def test_the_feed_runs_only_for_batches_with_projected_events(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    ledger.close()
    statements: list[str] = []
    ledger.backend.on_connect.append(lambda conn: conn.set_trace_callback(statements.append))
    ledger.append([NewEvent(f"s:{i}", "NoiseRecorded", {"i": i}) for i in range(5)])
    assert statements and not any("projection_feed" in s for s in statements)
    plan = {"gen_id": "d_1", "stage": "draft", "cohort_id": "c", "model_id": "m", "replicate": 1}
    ledger.append([NewEvent("s:0", "NoiseRecorded", {}), NewEvent("gen:d_1", "GenerationPlanned", plan)])
    assert any(s.startswith("INSERT INTO projection_feed") for s in statements)
    assert ledger.query("SELECT gen_id, planned_seq FROM gen_state") == [("d_1", 7)]


def test_upgrade_from_0003_keeps_the_trigger_statements_and_downgrade_restores_them(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = _at_revision(path, "0003_views")

    def schema() -> dict[str, str]:
        with sqlite3.connect(path) as conn:
            return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('trigger', 'view')"))

    before = schema()
    body = before["project_events"].split(" BEGIN ", 1)[1]
    _alembic(ledger.backend, "upgrade", FEED_REVISION)
    after = schema()
    assert "project_events" not in after
    assert after["project_feed"].split(" BEGIN ", 1)[1] == body
    types = {t for (t,) in ledger.query("SELECT type FROM projected_types")}
    assert types == {t.strip(" '") for t in before["project_events"].split("IN (", 1)[1].split(")", 1)[0].split(",")}
    _alembic(ledger.backend, "downgrade", "0003_views")
    restored = schema()
    assert restored["llm_calls"] == before["llm_calls"]  # 0005's downgrade gives 0003's view back
    assert "project_feed" not in restored
    assert restored["project_events"].split(" BEGIN ", 1)[1] == body


def test_a_ledger_upgraded_by_another_process_while_open_keeps_projecting(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = _at_revision(path, "0003_views")
    plan = {"gen_id": "d_1", "stage": "draft", "cohort_id": "c", "model_id": "m", "replicate": 1}
    ledger.append([NewEvent("gen:d_1", "GenerationPlanned", plan)])  # projected by the 0002 trigger
    Ledger.open(path)  # another opener upgrades the file to head: the trigger is gone
    assert db.current_revision(ledger.backend) == db.head_revision()
    ledger.append([NewEvent("gen:d_2", "GenerationPlanned", {**plan, "gen_id": "d_2"})])
    assert ledger.query("SELECT gen_id, status FROM gen_state ORDER BY gen_id") == [
        ("d_1", "planned"), ("d_2", "planned")]


def test_a_ledger_whose_schema_cannot_be_upgraded_is_one_line_and_left_as_it_was(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from daydream.cli import cli

    path = tmp_path / "ledger.db"
    _at_revision(path, "0003_views").close()
    with sqlite3.connect(path) as conn:  # a hand-made trigger where 0002's should be
        conn.execute("DROP TRIGGER project_events")
        conn.execute("CREATE TRIGGER project_events AFTER INSERT ON events BEGIN SELECT 1; END")
    before = path.read_bytes()
    result = CliRunner().invoke(cli, ["init", "--db", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "0003_views" in lines[0] and "left unchanged" in lines[0]
    assert "Traceback" not in result.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003_views",)]
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'projection_feed'").fetchone() == (0,)
    assert len(path.read_bytes()) == len(before)
