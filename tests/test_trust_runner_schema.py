"""Migration 0007: the workers table and the views that count lost calls, up and down.

The upgrade and downgrade are SQLite's (a PostgreSQL ledger starts at 0011); how a lost call counts
in llm_calls, spend and cohort_progress is checked on both backends (``ledger_url``, issue 17)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from daydream.ledger import db
from daydream.ledger.store import Ledger, NewEvent
from tests.read_fixtures import COHORT, build_fixture

BEFORE = "0005_llm_calls_by_stream"
CHANGED = ("llm_calls", "cohort_progress", "spend", "failures")


def _alembic(ledger: Ledger, move: str, revision: str) -> None:
    with db.schema_connection(ledger.backend) as conn:
        getattr(command, move)(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()


def _schema(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('view', 'table')"))


def test_upgrade_wraps_the_views_it_finds_and_downgrade_gives_them_back(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    ledger = Ledger(path, db.create_backend(path, create=True))
    _alembic(ledger, "upgrade", BEFORE)
    build_fixture(ledger)
    before = _schema(path)
    rows_before = {v: ledger.query(f"SELECT * FROM {v} ORDER BY 1, 2") for v in ("cohort_progress", "spend")}
    _alembic(ledger, "upgrade", "head")
    after = _schema(path)
    assert "workers" in after and "workers" not in before
    for view in ("cohort_progress", "spend"):
        assert before[view].split(" AS ", 1)[1].strip() in after[view]  # wrapped, not rewritten
    # Without lost calls, the old columns give the old rows; the new ones say "none".
    for view, old in rows_before.items():
        new = ledger.query(f"SELECT * FROM {view} ORDER BY 1, 2")
        assert [r[:-2] for r in new] == old and {r[-2:] for r in new} == {(0, None)}
    _alembic(ledger, "downgrade", BEFORE)
    restored = _schema(path)
    assert {v: restored[v] for v in CHANGED} == {v: before[v] for v in CHANGED}
    assert "workers" not in restored


def test_a_lost_call_counts_in_llm_calls_spend_and_cohort_progress(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)  # on SQLite and on PostgreSQL (issue 17)
    build_fixture(ledger)
    # v_2b2 is pending in the fixture: a worker claimed it, its request left, the worker died.
    started = {"gen_id": "v_2b2", "attempt": 1, "call": 1, "model_id": "ev2", "provider": "openai",
               "provider_model": "ev2", "lease_until": "2026-11-30T00:10:00Z", "sends_marked": True,
               "worker": {"host": "h", "pid": 7, "run": "dead"}}
    ledger.append([NewEvent("gen:v_2b2", "LLMCallStarted", started)])
    assert ledger.query("SELECT outcome, try FROM llm_calls WHERE gen_id = 'v_2b2'") == [("open", 1)]
    lost = {"gen_id": "v_2b2", "attempt": 1, "call": 1, "try": 1, "model_id": "ev2", "provider": "openai",
            "sent": True, "sent_seq": 0, "worker": started["worker"], "reason": "claim taken over",
            "estimated_cost_usd": 0.0021, "estimated_prompt_tokens": 100, "estimated_completion_tokens": 50,
            "estimate_basis": "test"}
    ledger.append([NewEvent("gen:v_2b2", "LLMCallLost", lost),
                   NewEvent("gen:v_2b2", "LLMCallStarted", {**started, "call": 2})])
    got = ledger.query("SELECT outcome, cost_usd, estimated_cost_usd FROM llm_calls WHERE gen_id = 'v_2b2' "
                       "ORDER BY seq")
    assert got == [("unknown", None, 0.0021), ("open", None, None)]
    assert ledger.query("SELECT lost_calls, estimated_cost_usd FROM cohort_progress "
                        "WHERE cohort_id = ? AND stage = 'evaluation'", (COHORT,)) == [(1, 0.0021)]
    assert ledger.query("SELECT lost_calls, estimated_cost_usd FROM spend WHERE cohort_id = ? "
                        "AND stage = 'evaluation' AND model_id = 'ev2'", (COHORT,)) == [(1, 0.0021)]
    # Known spend is unchanged: the estimate is kept apart.
    assert ledger.query("SELECT cost_usd FROM cohort_progress WHERE cohort_id = ? AND stage = 'evaluation'",
                        (COHORT,)) == [(0.004,)]
