"""The ledger: schema, append-only triggers, hash chain, optimistic concurrency, multi-process appends.

Tests of ledger behaviour run on both backends (``ledger`` and ``ledger_url`` here are a SQLite file
and a PostgreSQL database, issue 17); those about SQLite's file (page size, triggers read through
``sqlite3``, tampering with the file, backups) use ``ledger_path``.
"""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from daydream.errors import ConcurrencyConflict, LedgerIntegrityError
from daydream.ledger.store import GENESIS_HASH, Ledger, NewEvent, text_hash
from tests.pg_fixtures import ledger_url, pg_server, pg_template, pg_url  # noqa: F401


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # noqa: F811 - conftest's SQLite-only fixture, on both backends here
    """A fresh ledger on SQLite and on PostgreSQL."""
    return Ledger.open(ledger_url)


def schema(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def test_init_creates_schema_and_second_init_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    runner = CliRunner()
    first = runner.invoke(cli, ["init", "--db", str(path)])
    assert first.exit_code == 0, first.output
    names = {name for _type, name, _sql in schema(path)}
    assert {"events", "texts", "events_no_update", "events_no_delete", "texts_no_update",
            "texts_no_delete", "ix_events_type_seq", "gen_state", "cohort_members"} <= names
    before = (schema(path), path.read_bytes())
    second = runner.invoke(cli, ["init", "--db", str(path)])
    assert second.exit_code == 0
    assert "already" in second.output
    assert schema(path) == before[0]


@pytest.mark.parametrize("table,sql", [
    ("events", "UPDATE events SET type = 'X'"),
    ("events", "DELETE FROM events"),
    ("texts", "UPDATE texts SET text = 'X'"),
    ("texts", "DELETE FROM texts"),
])
def test_update_and_delete_are_refused_by_triggers(ledger_path: Path, table: str, sql: str) -> None:
    ledger = Ledger.open(ledger_path)  # PostgreSQL's triggers: tests/test_pg_ledger.py
    ledger.append([NewEvent("s:1", "ThingHappened", {"n": 1})], texts=["hello"])
    with sqlite3.connect(ledger.path) as conn:
        with pytest.raises(sqlite3.DatabaseError, match=f"{table} is append-only"):
            conn.execute(sql)
    assert ledger.count() == 1
    assert ledger.get_text(text_hash("hello")) == "hello"


def test_append_assigns_versions_and_chains_hashes(ledger: Ledger) -> None:
    stored = ledger.append([NewEvent("a", "X", {"i": i}) for i in range(3)] + [NewEvent("b", "Y", {})])
    assert [e.version for e in stored] == [1, 2, 3, 1]
    assert [e.seq for e in stored] == [1, 2, 3, 4]
    assert stored[0].prev_hash == GENESIS_HASH
    assert all(stored[i].prev_hash == stored[i - 1].hash for i in range(1, 4))
    more = ledger.append([NewEvent("a", "X", {"i": 3}, expected_version=3)])
    assert more[0].version == 4 and more[0].prev_hash == stored[-1].hash
    assert ledger.verify() == (5, 0)


def test_the_fast_append_path_hashes_exactly_what_verify_recomputes(ledger: Ledger) -> None:
    tricky = [
        NewEvent("gen:é\"quoted\"", "Tÿpe\\x", {"z": 1.5, "a": [None, True, "line\nbreak\u2028"], "é": {"b": 1e20}}),
        NewEvent("s", "X", {}, causation_seq=1),
        NewEvent("s", "X", {"nested": {"k": [1, {"d": "\x00\t"}]}, "big": 2**70}, causation_seq=2),
    ]
    stored = ledger.append(tricky)
    assert ledger.verify() == (3, 0)
    assert ledger.events() == stored  # what append returned is exactly what is stored
    assert stored[1].causation_seq == 1
    with pytest.raises(ValueError, match="Circular"):
        cyclic: dict = {}
        cyclic["self"] = cyclic
        ledger.append([NewEvent("s", "X", cyclic)])
    assert ledger.count() == 3


def test_new_ledgers_use_4k_pages_and_older_files_keep_theirs(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from daydream.ledger import backend, db

    new = Ledger.init(tmp_path / "new.db")[0]
    assert new.query("PRAGMA page_size") == [(4096,)]
    monkeypatch.setattr(backend, "PAGE_SIZE", 16384)  # a ledger made while pages were 16 KiB
    Ledger.init(tmp_path / "old.db")
    monkeypatch.undo()
    old = Ledger.open(tmp_path / "old.db")
    old.append([NewEvent("s", "X", {"i": i}) for i in range(10)])
    assert old.query("PRAGMA page_size") == [(16384,)]
    assert old.query("PRAGMA wal_autocheckpoint") == [(db.WAL_AUTOCHECKPOINT_BYTES // 16384,)]
    assert new.query("PRAGMA wal_autocheckpoint") == [(db.WAL_AUTOCHECKPOINT_BYTES // 4096,)]
    assert old.verify() == (10, 0)


def test_texts_are_deduplicated_by_content(ledger: Ledger) -> None:
    h1, h2, h3 = ledger.put_texts(["same", "same", "other"])
    assert h1 == h2 != h3
    ledger.append([NewEvent("s", "X", {"text": h1})], texts=["same"])
    assert ledger.query("SELECT COUNT(*) FROM texts") == [(2,)]
    assert ledger.get_text(h3) == "other"


def test_conflicting_expected_version_writes_nothing(ledger: Ledger) -> None:
    ledger.append([NewEvent("s", "X", {}, expected_version=0)])
    with pytest.raises(ConcurrencyConflict) as info:
        ledger.append([NewEvent("other", "X", {}), NewEvent("s", "X", {}, expected_version=0)],
                      texts=["never stored"])
    assert info.value.actual == 1
    assert ledger.count() == 1
    assert ledger.get_text(text_hash("never stored")) is None


def test_versions_known_before_another_writer_appended_are_not_trusted(ledger_url: str) -> None:
    a, b = Ledger.open(ledger_url), Ledger.open(ledger_url)
    a.append([NewEvent("s:x", "X", {})])          # a knows s:x at 1
    b.append([NewEvent("s:x", "X", {})])          # s:x at 2, behind a's back
    a.append([NewEvent("s:y", "X", {})])          # a sees the gap and must forget s:x = 1
    a.append([NewEvent("s:x", "X", {}, expected_version=2)])
    assert [e.version for e in a.stream("s:x")] == [1, 2, 3]
    with pytest.raises(ConcurrencyConflict) as info:
        a.append([NewEvent("s:x", "X", {}, expected_version=2)])
    assert info.value.actual == 3
    b.append([NewEvent("s:x", "X", {})])          # and with no expectation, the next version
    assert [e.version for e in b.stream("s:x")] == [1, 2, 3, 4]
    assert a.verify() == (5, 0)


def test_two_writers_same_version_exactly_one_wins(ledger_url: str) -> None:
    results: list[str] = []
    barrier = threading.Barrier(2)

    def writer(name: str) -> None:
        ledger = Ledger.open(ledger_url)
        barrier.wait()
        try:
            ledger.append([NewEvent("gen:x", "LLMCallStarted", {"by": name}, expected_version=0)])
            results.append("won")
        except ConcurrencyConflict:
            results.append("conflict")

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict", "won"]
    assert Ledger.open(ledger_url).count() == 1


def test_read_by_type_stream_and_position(ledger: Ledger) -> None:
    ledger.append([NewEvent("a", "X", {"i": 1}), NewEvent("b", "Y", {"i": 2}), NewEvent("a", "Y", {"i": 3})])
    assert [e.payload["i"] for e in ledger.events(type="Y")] == [2, 3]
    assert [e.payload["i"] for e in ledger.events(stream="a")] == [1, 3]
    assert [e.payload["i"] for e in ledger.events(after=1, limit=1)] == [2]
    assert ledger.stream_version("a") == 2 and ledger.stream_version("zzz") == 0


def _append_many(path: str, worker: int, n: int) -> None:
    ledger = Ledger.open(path)
    for i in range(n):
        ledger.append([NewEvent(f"w{worker}", "Counted", {"worker": worker, "i": i})])


def test_four_processes_append_concurrently_without_gaps(ledger_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(ledger_url, w, 2000)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ledger = Ledger.open(ledger_url)
    seqs = [r[0] for r in ledger.query("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, 8001))
    for w in range(4):
        assert ledger.stream_version(f"w{w}") == 2000
    assert ledger.verify() == (8000, 0)


def tamper(path: Path, sql: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute(sql)


def test_verify_names_the_altered_seq(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    ledger.append([NewEvent("s", "X", {"i": i}) for i in range(5)])
    runner = CliRunner()
    assert runner.invoke(cli, ["verify", "--db", str(ledger_path)]).exit_code == 0
    tamper(ledger_path, "UPDATE events SET payload = '{\"i\":99}' WHERE seq = 3")
    result = runner.invoke(cli, ["verify", "--db", str(ledger_path)])
    assert result.exit_code == 1
    assert "seq 3" in result.output
    with pytest.raises(LedgerIntegrityError) as info:
        ledger.verify()
    assert info.value.seq == 3


def test_verify_catches_a_deleted_event_and_an_altered_text(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    ledger.append([NewEvent("s", "X", {"i": i}) for i in range(4)], texts=["abc"])
    with sqlite3.connect(ledger_path) as conn:
        conn.execute("DROP TRIGGER texts_no_update")
        conn.execute("UPDATE texts SET text = 'abd'")
    with pytest.raises(LedgerIntegrityError, match="text"):
        ledger.verify()
    other = Ledger.init(ledger_path.parent / "b.db")[0]
    other.append([NewEvent("s", "X", {"i": i}) for i in range(4)])
    with sqlite3.connect(other.path) as conn:
        conn.execute("DROP TRIGGER events_no_delete")
        conn.execute("DELETE FROM events WHERE seq = 2")
    with pytest.raises(LedgerIntegrityError) as info:
        other.verify()
    assert info.value.seq == 2


def test_backup_is_a_verified_copy(ledger_path: Path, tmp_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    ledger.append([NewEvent("s", "X", {"i": i}) for i in range(10)], texts=["t"])
    dest = tmp_path / "copy.db"
    result = CliRunner().invoke(cli, ["backup", "--db", str(ledger_path), str(dest)])
    assert result.exit_code == 0, result.output
    assert Ledger.open(dest).verify() == (10, 1)
    again = CliRunner().invoke(cli, ["backup", "--db", str(ledger_path), str(dest)])
    assert again.exit_code == 1 and "already exists" in again.output


def test_backup_reads_the_source_without_changing_a_byte(tmp_path: Path) -> None:
    source = tmp_path / "example.db"  # the shipped example is in rollback-journal mode, compacted
    shutil.copy(Path(__file__).resolve().parents[1] / "ledger.db.example", source)
    before = source.read_bytes()
    result = CliRunner().invoke(cli, ["backup", "--db", str(source), str(tmp_path / "copy.db")])
    assert result.exit_code == 0, result.output
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "example.db"]
    assert Ledger.open(tmp_path / "copy.db", readonly=True).verify()[0] > 0


def test_backup_while_another_process_appends_is_consistent(ledger_path: Path, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_append_many, args=(str(ledger_path), 9, 3000))
    writer.start()
    try:
        copies = []
        for i in range(3):
            dest = tmp_path / f"copy{i}.db"
            result = CliRunner().invoke(cli, ["backup", "--db", str(ledger_path), str(dest)])
            assert result.exit_code == 0, result.output
            copies.append(dest)
    finally:
        writer.join(timeout=300)
    assert writer.exitcode == 0
    for dest in copies:  # each copy is a consistent prefix of the log: its chain verifies
        n_events, _ = Ledger.open(dest, readonly=True).verify()
        assert 0 <= n_events <= 3000
