"""The projections stated per event type (daydream/ledger/projections.py), as revision 0011 installs them.

The newest revision's frozen copy is the module's text; a replay through the per-type triggers
gives exactly the tables and views of the single feed trigger they replace (0009), one event at a
time, in batches and all at once; upgrades (from 0005, from 0009 with data) and the downgrade
keep working; and a parse failure is a column, not a prefix of the error text.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory

from daydream.ledger import db, projections
from daydream.ledger.backend import SqliteBackend
from daydream.ledger.store import Ledger, NewEvent
from tests.projection_events import mixed_events, replay
from tests.read_fixtures import build_fixture

REVISION = "0011_projections_per_type"
# The revision before it: the last whose projection ran as one trigger assembled by 0002, 0004 and 0008.
SINGLE_TRIGGER = ScriptDirectory(str(db.migrations_dir())).get_revision(REVISION).down_revision


def _alembic(backend: SqliteBackend, move: str, revision: str) -> None:
    with db.schema_connection(backend) as conn:
        getattr(command, move)(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()


def _at_revision(path: Path, revision: str) -> Ledger:
    backend = db.create_backend(path, create=True)
    _alembic(backend, "upgrade", revision)
    return Ledger(path, backend)


def _fed(path: Path, revision: str, events: list[NewEvent], batch: int) -> Ledger:
    ledger = _at_revision(path, revision)
    ledger.clock = lambda: "2026-12-04T00:00:00.000000Z"  # views show recorded_at: the same on every side
    replay(events, ledger.append, batch)
    return ledger


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _rounded(rows: list[tuple]) -> list[tuple]:
    """Rows with floats to 9 significant digits: sums of costs differ in their last bits with the
    order they were added in (a counter filled by a migration, or kept event by event)."""
    return sorted((tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in r) for r in rows), key=repr)


def _dump(path: Path, columns: dict[str, list[str]] | None = None) -> dict[str, list[tuple]]:
    """Every projection table the ledger has and every view, rows sorted (tables on ``columns`` when given)."""
    with sqlite3.connect(path) as conn:
        out = {}
        for table in projections.TABLES:
            if not _columns(conn, table):
                continue  # cohort_scales came with 0010
            names = ", ".join((columns or {}).get(table) or _columns(conn, table))
            out[table] = _rounded(conn.execute(f"SELECT {names} FROM {table}").fetchall())
        for (view,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view' ORDER BY name"):
            out[view] = _rounded(conn.execute(f"SELECT * FROM {view}").fetchall())
        return out


def _schema(path: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(path) as conn:
        return {(t, n): sql for t, n, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[NewEvent]:
    """The read-side fixture's experiment, then the seeded mix of every branch of every type."""
    fixture = Ledger.init(tmp_path_factory.mktemp("fixture") / "ledger.db")[0]
    build_fixture(fixture)
    recorded = [NewEvent(e.stream, e.type, e.payload) for e in fixture.events()]
    return recorded + mixed_events()


def test_the_newest_revision_installs_exactly_what_the_module_states() -> None:
    scripts = ScriptDirectory(str(db.migrations_dir())).walk_revisions()
    newest = next(s for s in scripts if hasattr(s.module, "PROJECTION_TRIGGERS"))
    frozen = (newest.module.PROJECTED_TYPES, newest.module.PROJECTION_TRIGGERS)
    stated = (projections.PROJECTED_TYPES, {t: projections.trigger_sql(t) for t in projections.PROJECTED_TYPES})
    assert frozen == stated, (
        f"daydream/ledger/projections.py no longer states what revision {newest.revision} installs: "
        "add a revision that installs the new statements (drop the old project_<type> triggers, create "
        "these, set projected_types), with this frozen copy:\n\n" + projections.frozen_copy())


def test_a_new_ledger_runs_one_trigger_per_event_type_with_the_module_statements(tmp_path: Path) -> None:
    path = Ledger.init(tmp_path / "ledger.db")[0].path
    with sqlite3.connect(path) as conn:
        triggers = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'projection_feed'"))
        types = {t for (t,) in conn.execute("SELECT type FROM projected_types")}
    assert triggers == {projections.trigger_name(t): projections.trigger_sql(t) for t in projections.PROJECTED_TYPES}
    assert types == set(projections.PROJECTED_TYPES)
    for event_type, projection in projections.PROJECTIONS.items():
        assert projection.changes and projection.statements, event_type
        assert f"WHEN NEW.type = '{event_type}'" in triggers[f"project_{event_type}"]


@pytest.mark.parametrize("batch", [1, 7, 100_000])
def test_the_per_type_triggers_give_what_the_single_feed_trigger_gave(
        tmp_path: Path, events: list[NewEvent], batch: int) -> None:
    old = _fed(tmp_path / "old.db", SINGLE_TRIGGER, events, 1)
    new = _fed(tmp_path / "new.db", "head", events, batch)
    with sqlite3.connect(old.path) as conn:
        columns = {t: _columns(conn, t) for t in ("gen_state", "cohort_members")}
        parse_failures = {g for (g,) in conn.execute(
            "SELECT gen_id FROM gen_state WHERE error LIKE 'ParseFailed:%'")}
    expected, got = _dump(old.path), _dump(new.path, columns)
    shared = [t for t in projections.TABLES if t in expected]
    assert {t: len(got[t]) for t in shared} == {t: len(expected[t]) for t in shared}
    for name in expected:  # one table or view at a time, so a failure names it
        assert got[name] == expected[name], name
    assert parse_failures and {g for (g,) in new.query("SELECT gen_id FROM gen_state WHERE parse_failed = 1")} \
        == parse_failures
    kinds = {r[0] for r in new.query("SELECT DISTINCT parse_status FROM scores")}
    assert {"parsed", "parse_failed", "failed", "pending"} <= kinds  # the mix reaches every outcome


def test_the_mix_reaches_every_projected_type_and_branch(events: list[NewEvent]) -> None:
    types = {e.type for e in events}
    assert set(projections.PROJECTED_TYPES) <= types
    flags = {(e.type, k) for e in events for k in ("superseded", "released", "reparsed", "completes_import")
             if e.payload.get(k)}
    assert {("LLMCallCompleted", "superseded"), ("LLMCallFailed", "superseded"), ("LLMCallFailed", "released"),
            ("ResponseParsed", "reparsed"), ("ParseFailed", "reparsed"), ("ScoreRecorded", "reparsed"),
            ("GenerationImported", "completes_import")} <= flags


def test_upgrading_a_ledger_with_work_from_0009_gives_what_a_new_ledger_projects(
        tmp_path: Path, events: list[NewEvent]) -> None:
    # No daydream before 0013 wrote a plan id (plans in several transactions came with it).
    events = [e for e in events if "plan_id" not in e.payload]
    upgraded = _fed(tmp_path / "old.db", SINGLE_TRIGGER, events, 50)
    _alembic(upgraded.backend, "upgrade", "head")
    fresh = _fed(tmp_path / "new.db", "head", events, 50)
    assert _dump(upgraded.path) == _dump(fresh.path)  # parse_failed filled from the error text as it was
    assert db.schema_drift(upgraded.backend) == []
    assert projections.check(upgraded).drift == []


def test_upgrading_from_0005_keeps_projecting(tmp_path: Path, events: list[NewEvent]) -> None:
    half = len(events) // 2
    ledger = _fed(tmp_path / "old.db", "0005_llm_calls_by_stream", events[:half], 25)
    _alembic(ledger.backend, "upgrade", "head")
    replay(events[half:], ledger.append, 25)
    fresh = _fed(tmp_path / "new.db", "head", events, 25)
    got, expected = _dump(ledger.path), _dump(fresh.path)
    # 0008 filled the scales of scores already there from their events, as the feed sets them now.
    assert got == expected
    assert db.schema_drift(ledger.backend) == [] and projections.check(ledger).drift == []


def test_the_downgrade_gives_back_0009_schema_and_its_projections(tmp_path: Path, events: list[NewEvent]) -> None:
    events = [e for e in events if "plan_id" not in e.payload]  # a daydream before 0013 writes none
    half = len(events) // 2
    ledger = _fed(tmp_path / "ledger.db", "head", events[:half], 10)
    _alembic(ledger.backend, "downgrade", SINGLE_TRIGGER)
    assert db.current_revision(ledger.backend) == SINGLE_TRIGGER
    reference = _fed(tmp_path / "reference.db", SINGLE_TRIGGER, events[:half], 10)
    assert _schema(ledger.path) == _schema(reference.path)  # the very text 0004 and 0008 made
    assert db.schema_drift(ledger.backend) == []
    replay(events[half:], ledger.append, 10)  # the old feed trigger projects what comes next
    replay(events[half:], reference.append, 10)
    assert _dump(ledger.path) == _dump(reference.path)
    _alembic(ledger.backend, "upgrade", "head")  # and up again
    assert _schema(ledger.path) == _schema(_at_revision(tmp_path / "fresh.db", "head").path)
    assert projections.check(ledger).drift == []


def test_an_empty_ledger_goes_to_the_new_revision_and_back(tmp_path: Path) -> None:
    ledger = _at_revision(tmp_path / "ledger.db", "head")
    assert db.current_revision(ledger.backend) == db.head_revision()
    _alembic(ledger.backend, "downgrade", SINGLE_TRIGGER)
    assert _schema(ledger.path) == _schema(_at_revision(tmp_path / "old.db", SINGLE_TRIGGER).path)


def _evaluation(ledger: Ledger, gen_id: str, outcome: NewEvent) -> None:
    stream = f"gen:{gen_id}"
    ledger.append([
        NewEvent(stream, "GenerationPlanned", {"gen_id": gen_id, "stage": "evaluation", "parent_gen_id": "e_1",
                                               "template_id": "rubric", "model_id": "m", "replicate": 1,
                                               "cohort_id": "c", "generator": "llm", "parser": "score"}),
        NewEvent(stream, "LLMCallStarted", {"gen_id": gen_id, "attempt": 1, "call": 1, "worker": {"run": "w"}}),
        NewEvent(stream, "LLMCallCompleted", {"gen_id": gen_id, "attempt": 1, "call": 1, "text_hash": "a" * 64}),
        outcome])


def test_a_parse_failure_is_the_parse_failed_column_not_a_prefix_of_the_error(ledger: Ledger) -> None:
    _evaluation(ledger, "v_parse", NewEvent("gen:v_parse", "ParseFailed", {
        "gen_id": "v_parse", "attempt": 1, "parser": "score", "reason": "no SCORE line", "preview": "?"}))
    # A stage's failure whose reason happens to start like a parse failure's error is not one.
    _evaluation(ledger, "v_other", NewEvent("gen:v_other", "GenerationFailed", {
        "gen_id": "v_other", "attempt": 1, "reason": "ParseFailed: said the stage", "error_class": "Refused"}))
    rows = {r[0]: r[1:] for r in ledger.query(
        "SELECT g.gen_id, g.parse_failed, g.error, s.parse_status, s.parse_error, f.kind FROM gen_state g "
        "JOIN scores s ON s.evaluation_gen_id = g.gen_id JOIN failures f ON f.gen_id = g.gen_id")}
    assert rows == {
        "v_parse": (1, "ParseFailed: no SCORE line", "parse_failed", "no SCORE line", "parse"),
        "v_other": (0, "ParseFailed: said the stage", "failed", None, "generation")}
    assert ledger.query("SELECT parse_failure_rate FROM evaluator_agreement") == [(0.5,)]
    ledger.append([NewEvent("gen:v_parse", "GenerationRetried", {
        "gen_id": "v_parse", "attempt": 2, "previous_attempt": 1, "reason": "forced"})])
    assert ledger.query("SELECT parse_failed, status FROM gen_state WHERE gen_id = 'v_parse'") == [(0, "planned")]


def test_no_view_or_module_tells_a_parse_failure_by_the_error_text(ledger: Ledger) -> None:
    views = ledger.query("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
    assert views and not [name for name, sql in views if re.search(r"LIKE\s+'ParseFailed", sql)]
    package = Path(projections.__file__).resolve().parents[1]
    derived = [str(p.relative_to(package)) for p in package.rglob("*.py") if "LIKE 'ParseFailed" in p.read_text()]
    assert derived == []


def test_an_event_lacking_a_field_its_row_needs_inserts_nothing(ledger: Ledger) -> None:
    ledger.append([
        NewEvent("gen:d_1", "GenerationPlanned", {"gen_id": "d_1", "cohort_id": "c"}),  # no stage
        NewEvent("gen:d_1", "GenerationLinked", {"gen_id": "d_1", "cohort_id": "c2"}),  # no stage
        NewEvent("combo:x", "ComboDefined", {"combo_id": "x", "level": "sentence"}),  # no concept ids
        NewEvent("gen:d_2", "GenerationPlanned", {"gen_id": "d_2", "stage": "draft", "cohort_id": "c"})])
    assert ledger.query("SELECT gen_id FROM gen_state") == [("d_2",)]
    assert ledger.query("SELECT cohort_id, gen_id FROM cohort_members") == [("c", "d_2")]
    assert ledger.query("SELECT COUNT(*) FROM combos") == [(0,)]
    assert ledger.last_seq() == 4  # recorded all the same: the events are the truth


def test_every_statement_that_sets_the_error_says_whether_it_is_a_parse_failure() -> None:
    # parse_failed describes error: a statement changing one without the other would let them disagree.
    for event_type, projection in projections.PROJECTIONS.items():
        for statement in projection.statements:
            if statement.startswith("UPDATE gen_state"):
                assert (" error = " in statement) == (" parse_failed = " in statement), event_type
