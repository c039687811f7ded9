"""``Ledger.append_groups``: the runner's compare-and-set on ``gen_state``, on SQLite and PostgreSQL.

On PostgreSQL it runs as one server-side function (migration 0012, ``daydream_append``) that
chains the events itself: these tests prove it stores exactly what the client-side path stores
(``verify`` recomputes every hash in Python), refuses what it must, and keeps nothing of a
refused group. Also: how a runner shares ready work with other live workers (``Feed``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daydream.errors import ConcurrencyConflict, LedgerIntegrityError
from daydream.ledger.store import Expect, Group, Ledger, NewEvent, text_hash
from daydream.run import claims
from daydream.run.feed import Feed, share_of
from daydream.run.options import RunOptions
from daydream.run.stats import RunStats
from tests.pg_fixtures import ledger_url, pg_server, pg_template, pg_url  # noqa: F401

WORKER = json.dumps({"host": "h", "run": "me"}, sort_keys=True, separators=(",", ":"))


def _planned(gen_id: str, seq: int = 1) -> NewEvent:
    return NewEvent(f"gen:{gen_id}", "GenerationPlanned", {
        "gen_id": gen_id, "stage": "draft", "parent_gen_id": None, "combo_id": "c", "template_id": "t",
        "template_hash": "th", "generator": "llm", "parser": "p", "model_id": "m", "replicate": seq,
        "cohort_id": "co", "catalog_hash": "ch"}, expected_version=0)


def _started(gen_id: str, worker: str = WORKER) -> NewEvent:
    return NewEvent(f"gen:{gen_id}", "LLMCallStarted", {
        "gen_id": gen_id, "attempt": 1, "call": 1, "model_id": "m", "provider": "stub", "provider_model": "m",
        "lease_until": "2999-01-01T00:00:00.000Z", "worker": json.loads(worker), "sends_marked": True})


def _state(ledger: Ledger, gen_id: str) -> tuple:
    return tuple(ledger.query("SELECT status, attempt, worker FROM gen_state WHERE gen_id = :g", {"g": gen_id})[0])


def test_groups_are_kept_or_refused_whole_and_the_chain_verifies(ledger_url: str) -> None:  # noqa: F811
    ledger = Ledger.open(ledger_url)
    ledger.append([_planned("a"), _planned("b", 2), _planned("c", 3)])
    claim = Expect("a", 1, ("planned",))
    accepted, stored = ledger.append_groups([
        Group([_started("a")], ["prompt of a"], claim),
        Group([_started("b")], ["prompt of b"], Expect("b", 2, ("planned",))),  # wrong attempt
        Group([_started("c")], ["prompt of c"], Expect("zzz", 1, ("planned",))),  # no such generation
        Group([NewEvent("note:x", "Noted", {"text": "é \" \\ \u2028 ünïcode"}, expected_version=0)], [], None),
    ])
    assert accepted == [True, False, False, True]
    assert [(e.stream, e.version) for e in stored] == [("gen:a", 2), ("note:x", 1)]
    assert [e.seq for e in stored] == [4, 5]
    # What was returned is what was stored, and every hash is the one Python computes.
    assert [(e.seq, e.hash, e.prev_hash) for e in ledger.events(after=3)] == [
        (e.seq, e.hash, e.prev_hash) for e in stored]
    assert ledger.verify() == (5, 1)
    assert ledger.get_text(text_hash("prompt of a")) == "prompt of a"
    assert ledger.get_text(text_hash("prompt of b")) is None  # a refused group leaves nothing
    assert _state(ledger, "a")[0] == "running"  # projected in the same transaction
    assert _state(ledger, "b")[0] == "planned"
    # The same claim again no longer holds: the generation is running, not planned.
    assert ledger.append_groups([Group([_started("a")], [], claim)])[0] == [False]
    # While running, only the claimant's expectation holds.
    mine = Expect("a", 1, ("running",), WORKER)
    theirs = Expect("a", 1, ("running",), WORKER.replace("me", "other"))
    done = NewEvent("gen:a", "GenerationFailed", {"gen_id": "a", "attempt": 1, "error_class": "X", "reason": "r"})
    assert ledger.append_groups([Group([done], [], theirs)])[0] == [False]
    assert ledger.append_groups([Group([done], [], mine)])[0] == [True]
    assert _state(ledger, "a")[0] == "failed"
    assert ledger.verify()[0] == ledger.last_seq() == 6


def test_an_expected_version_that_does_not_hold_refuses_everything(ledger_url: str) -> None:  # noqa: F811
    ledger = Ledger.open(ledger_url)
    ledger.append([_planned("a")])
    with pytest.raises(ConcurrencyConflict) as caught:
        ledger.append_groups([Group([NewEvent("note:y", "Noted", {}, expected_version=0)], ["t"], None),
                              Group([NewEvent("gen:a", "Noted", {}, expected_version=0)], [], None)])
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("gen:a", 0, 1)
    assert ledger.last_seq() == 1 and ledger.get_text(text_hash("t")) is None


def test_statements_beside_the_groups_run_with_them(ledger_url: str) -> None:  # noqa: F811
    ledger = Ledger.open(ledger_url)
    worker = {"host": "h", "pid": 1, "start": None, "machine": None, "run": "r1"}
    assert ledger.append_groups([], also=[claims.register_statement(worker, 30.0)]) == ([], [])
    assert ledger.query("SELECT worker_id, stopped_at FROM workers") == [("r1", None)]
    ledger.append([_planned("a")])
    accepted, _ = ledger.append_groups([Group([_started("a")], [], Expect("a", 1, ("planned",)))],
                                       also=[claims.stop_statement("r1")])
    assert accepted == [True]
    assert ledger.query("SELECT stopped_at IS NOT NULL FROM workers")[0][0] in (1, True)
    assert ledger.last_seq() == 2  # the workers table is not part of the chain


def test_a_removed_tail_is_refused_by_the_server_side_append_too(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    import psycopg

    ledger = Ledger.open(pg_url)
    ledger.append([_planned("a"), _planned("b", 2)])
    # Someone with the server's keys disables the append-only triggers and deletes the last event.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER ALL")
        conn.execute("DELETE FROM events WHERE seq = 2")
    with pytest.raises(LedgerIntegrityError, match="removed"):
        ledger.append_groups([Group([_started("a")], [], Expect("a", 1, ("planned",)))])
    assert ledger.query("SELECT COUNT(*) FROM events")[0][0] == 1


def _feed(ledger: Ledger, run: str) -> Feed:
    worker = {"host": "h", "pid": 1, "start": None, "machine": None, "run": run}
    return Feed(ledger, RunOptions(), ["draft"], worker, RunStats(), lambda _line: None)


def test_live_workers_start_with_their_own_share_of_ready_work(ledger_url: str) -> None:  # noqa: F811
    ledger = Ledger.open(ledger_url)
    ledger.append([_planned(f"g{i:03d}", i) for i in range(1, 41)])
    alone = _feed(ledger, "w1")
    ledger.append_groups([], also=[claims.register_statement({"host": "h", "pid": 1, "run": "w1"}, 30.0)])
    # Alone, a runner takes ready work in plan order.
    assert [g.gen_id for g in alone.next(8, 0, lambda g: True)] == [f"g{i:03d}" for i in range(1, 9)]
    ledger.append_groups([], also=[claims.register_statement({"host": "h", "pid": 2, "run": "w2"}, 30.0)])
    first, second = _feed(ledger, "w1"), _feed(ledger, "w2")
    mine = first.next(8, 0, lambda g: True)
    theirs = second.next(8, 0, lambda g: True)
    assert [share_of(g.gen_id, 2) for g in mine] == [0] * 8  # w1 is first of the two live workers
    assert [share_of(g.gen_id, 2) for g in theirs] == [1] * 8
    assert not {g.gen_id for g in mine} & {g.gen_id for g in theirs}
    # Once its own share is used up, a worker goes on with the others' (nothing waits on a worker
    # that stopped): asked for everything, it gets all 40, its own share first.
    everything = _feed(ledger, "w1").next(40, 0, lambda g: True)
    assert len(everything) == 40
    own = sum(1 for g in everything if share_of(g.gen_id, 2) == 0)
    assert [share_of(g.gen_id, 2) for g in everything] == [0] * own + [1] * (40 - own)
    # A stopped worker no longer counts.
    ledger.append_groups([], also=[claims.stop_statement("w2")])
    assert [g.gen_id for g in _feed(ledger, "w1").next(8, 0, lambda g: True)] == [
        f"g{i:03d}" for i in range(1, 9)]
