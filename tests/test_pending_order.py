"""Fewer pages per commit: the order a run takes work in (gen_id within a stage), the schema that
serves it (migration 0014), and results written together.

A commit's generations are neighbours in every gen_id-keyed B-tree only if the runner takes them
in gen_id order and ``gen_state`` keeps its rows in that order (``WITHOUT ROWID``); both are
checked here on real ledgers, the migration's way up and down on real SQLite files, and the
feed's order on PostgreSQL too. Results wait in the writer for ``RESULTS_EVERY_S`` and a closing
writer writes them all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from alembic import command

from daydream.design.planner import plan_cohort
from daydream.ledger import db, projections
from daydream.ledger.store import Ledger
from daydream.ledger.events import GenerationFailed
from daydream.run import writer as writer_module
from daydream.run.claims import worker_identity
from daydream.run.feed import Feed
from daydream.run.job import Job, LostCalls
from daydream.run.options import RunOptions
from daydream.run.pending import PENDING_SQL
from daydream.run.runner import run_cohort
from daydream.run.stats import RunStats
from daydream.run.writer import WriteItem, Writer
from tests.pg_fixtures import ledger_url, pg_server, pg_template, pg_url  # noqa: F401
from tests.runner_fixtures import drafts_spec, planned_ledger, stub_catalog, write_spec

BEFORE = "0013_plan_chunks"
REVISION = "0014_pending_order"


def _planned_drafts(ledger: Ledger) -> list[tuple[str, int]]:
    """(gen_id, planned_seq) of the planned drafts, in plan order."""
    return [tuple(r) for r in ledger.query(
        "SELECT gen_id, planned_seq FROM gen_state WHERE stage = 'draft' ORDER BY planned_seq")]


def _feed(ledger: Ledger) -> Feed:
    return Feed(ledger, RunOptions(cohort="t"), ["draft"], worker_identity(), RunStats(), lambda _line: None)


def _alembic(ledger: Ledger, move: str, revision: str) -> None:
    with db.schema_connection(ledger.backend) as conn:
        getattr(command, move)(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()


def _schema(path: Path) -> dict[tuple[str, str], str]:
    with sqlite3.connect(path) as conn:
        return {(t, n): sql for t, n, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'")}


def _gen_state(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT * FROM gen_state").fetchall(), key=repr)


def test_a_run_takes_ready_work_of_a_stage_in_gen_id_order_not_plan_order(tmp_path: Path) -> None:
    ledger = planned_ledger(tmp_path, "http://127.0.0.1:9", drafts_spec(n_combos=12, model="offline"))
    planned = _planned_drafts(ledger)
    by_id = sorted(gen_id for gen_id, _seq in planned)
    assert [gen_id for gen_id, _seq in planned] != by_id  # else this test could not tell the orders apart
    stats = run_cohort(ledger, RunOptions(cohort="t", limit=4))
    done = sorted(g for (g,) in ledger.query("SELECT gen_id FROM gen_state WHERE status = 'completed'"))
    assert stats.completed == 4
    assert done == by_id[:4]
    # and the claims were made in that order too
    claimed = [g for (g,) in ledger.query(
        "SELECT json_extract(payload, '$.gen_id') FROM events WHERE type = 'LLMCallStarted' ORDER BY seq")]
    assert sorted(claimed) == by_id[:4]


def test_the_feed_steps_over_work_in_hand_page_by_page_in_gen_id_order(ledger_url: str, tmp_path: Path) -> None:
    ledger = Ledger.open(ledger_url)
    try:
        plan_cohort(ledger, write_spec(tmp_path, "t", drafts_spec(n_combos=10)),
                    stub_catalog(tmp_path, "http://127.0.0.1:9"), cohort_id="t")
        by_id = sorted(gen_id for gen_id, _seq in _planned_drafts(ledger))
        in_hand = set(by_id[:5])
        # Pages of 2 (wanted 2, nothing counted in hand): three pages of work in hand to step over.
        got = _feed(ledger).next(2, 0, lambda gen: gen.gen_id not in in_hand)
        assert [gen.gen_id for gen in got] == by_id[5:7]
        assert [gen.gen_id for gen in _feed(ledger).next(20, 0, lambda gen: True)] == by_id
    finally:
        ledger.close()


def test_gen_state_is_kept_in_gen_id_order_and_pending_work_walks_its_index(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    (table_sql,) = ledger.query("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'gen_state'")[0]
    assert table_sql.rstrip().endswith("WITHOUT ROWID")
    indexes = {n for (n,) in ledger.query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'gen_state'")}
    assert "ix_gen_state_pending" in indexes
    assert not indexes & {"ix_gen_state_status_stage_seq", "ix_gen_state_status", "ix_gen_state_stage_status"}
    plan = " ".join(row[-1] for row in ledger.query(
        "EXPLAIN QUERY PLAN " + PENDING_SQL.format(cohort=""), {"stage": "draft", "after": "", "limit": 10}))
    assert "ix_gen_state_pending" in plan and "TEMP B-TREE" not in plan, plan  # no sort: cut at the limit


def test_upgrading_keeps_every_row_and_projection_and_downgrading_gives_back_the_old_schema(
        tmp_path: Path) -> None:
    # A ledger at 0011 with a run's worth of work in it.
    backend = db.create_backend(tmp_path / "old.db", create=True)
    ledger = Ledger(tmp_path / "old.db", backend)
    _alembic(ledger, "upgrade", BEFORE)
    plan_cohort(ledger, write_spec(tmp_path, "t", drafts_spec(n_combos=6, model="offline")),
                stub_catalog(tmp_path, "http://127.0.0.1:9"), cohort_id="t")
    rows_before = _gen_state(ledger.path)
    reference = Ledger(tmp_path / "ref.db", db.create_backend(tmp_path / "ref.db", create=True))
    _alembic(reference, "upgrade", BEFORE)
    old_schema = _schema(reference.path)

    _alembic(ledger, "upgrade", REVISION)
    assert _gen_state(ledger.path) == rows_before
    assert db.schema_drift(ledger.backend) == []
    assert projections.check(ledger).drift == []
    run_cohort(ledger, RunOptions(cohort="t", limit=3))  # the triggers on gen_state still keep the counters
    assert ledger.query("SELECT SUM(completed) FROM cohort_totals WHERE cohort_id = 't'") == [(3,)]
    assert projections.check(ledger).drift == []
    rows_after_run = _gen_state(ledger.path)

    _alembic(ledger, "downgrade", BEFORE)
    assert _schema(ledger.path) == old_schema  # the very text 0011 left, rowid table and both indexes
    assert _gen_state(ledger.path) == rows_after_run
    assert db.schema_drift(ledger.backend) == []
    assert projections.check(ledger).drift == []
    ledger.close()
    reference.close()


def test_results_wait_in_the_writer_and_go_together_and_a_closing_writer_writes_them_all(
        tmp_path: Path, monkeypatch) -> None:
    ledger = planned_ledger(tmp_path, "http://127.0.0.1:9", drafts_spec(n_combos=3, model="offline"))
    pending = _feed(ledger).next(3, 0, lambda gen: True)
    monkeypatch.setattr(writer_module, "RESULTS_EVERY_S", 3600.0)  # never due while this test looks
    commits = []
    write = ledger.backend.write

    def counting_write(work):  # type: ignore[no-untyped-def]
        commits.append(1)
        return write(work)

    monkeypatch.setattr(ledger.backend, "write", counting_write)
    writer = Writer(ledger, RunOptions(cohort="t"), worker_identity(), RunStats(), LostCalls({}, lambda _m: "x"),
                    say=lambda _line: None, on_error=lambda exc: None, on_written=lambda: None)

    async def scenario() -> tuple[int, int]:
        done = writer.start(asyncio.get_running_loop())
        for gen in pending:
            job = Job(gen)
            writer.enqueue(WriteItem("result", job, [GenerationFailed(gen_id=gen.gen_id, attempt=1,
                                                                      error_class="Test", reason="test")], [],
                                     observed=(gen.status, 1)))
        await asyncio.sleep(0.2)  # the writer thread had every chance to write them, were they due
        waiting = (len(commits), ledger.count("GenerationFailed"))
        writer.close()
        await done
        return waiting

    assert asyncio.run(scenario()) == (0, 0)  # queued, not yet due: nothing written
    assert len(commits) == 1  # the closing writer wrote all three in one transaction
    assert ledger.count("GenerationFailed") == 3
    assert ledger.query("SELECT DISTINCT status FROM gen_state WHERE stage = 'draft'") == [("failed",)]
    assert writer.unwritten == 0 and not writer.writing


def _pg_indexes(ledger: Ledger) -> set[str]:
    return {n for (n,) in ledger.query("SELECT indexname FROM pg_indexes WHERE tablename = 'gen_state' "
                                       "AND schemaname = current_schema()")}


def test_on_postgresql_the_pending_index_replaces_the_plan_order_ones_and_back(pg_url: str) -> None:
    ledger = Ledger.open(pg_url)
    try:
        assert "ix_gen_state_pending" in _pg_indexes(ledger)
        old = {"ix_gen_state_status_stage_seq", "ix_gen_state_status", "ix_gen_state_stage_status"}
        assert not _pg_indexes(ledger) & old
        _alembic(ledger, "downgrade", BEFORE)
        assert old <= _pg_indexes(ledger)
        assert "ix_gen_state_pending" not in _pg_indexes(ledger)
        _alembic(ledger, "upgrade", "head")
        assert "ix_gen_state_pending" in _pg_indexes(ledger)
    finally:
        ledger.close()
