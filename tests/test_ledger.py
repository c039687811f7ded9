"""The ledger: schema, append-only triggers, hash chain, optimistic concurrency, multi-process appends.

Tests of ledger behaviour run on both backends (``ledger`` and ``ledger_url`` here are a SQLite file
and a PostgreSQL database, issue 17): append and read back, stream-version conflicts (also across
ledger objects, as two processes meet them), ``transact``'s compare-and-set, the append-only
triggers refusing UPDATE and DELETE to the tables' owner too, ``verify`` on an intact chain and on
each kind of tampering, texts, appends from several processes at once forming one chain. Those
about SQLite's file (schema as ``sqlite_master`` holds it, page size, ``VACUUM INTO`` backups while
another process appends) use ``ledger_path``; what only PostgreSQL has is tests/test_pg_ledger.py.
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
from tests.pg_fixtures import is_pg, raw
from tests.runner_fixtures import run_cli


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # conftest's SQLite-only fixture, on both backends here
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


def append_only_error(url: str) -> type[Exception]:
    if is_pg(url):
        import psycopg

        return psycopg.IntegrityError
    return sqlite3.IntegrityError


def event(stream: str, n: int, expected: int | None = None) -> NewEvent:
    return NewEvent(stream, "Noted", {"n": n, "note": "50% of ?, :x and 'quotes'"}, expected_version=expected)




def test_append_reads_back_and_verifies(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    first = ledger.append([event("s:a", 1, 0), event("s:a", 2), event("s:b", 1, 0)], texts=["a text", "é"])
    assert [(e.seq, e.stream, e.version) for e in first] == [(1, "s:a", 1), (2, "s:a", 2), (3, "s:b", 1)]
    assert first[0].prev_hash == GENESIS_HASH and first[1].prev_hash == first[0].hash
    again = Ledger.open(ledger_url)
    assert again.events() == first
    assert again.events(type=["Noted"], stream="s:b") == [first[2]]
    assert again.stream_version("s:a") == 2 and again.last_seq() == 3 and again.count("Noted") == 3
    assert again.get_texts([text_hash("a text"), text_hash("é"), "0" * 64]) == {
        text_hash("a text"): "a text", text_hash("é"): "é"}
    assert again.verify() == (3, 2)
    assert again.check_integrity().head == (3, first[-1].hash)


def test_conflicts_leave_the_ledger_unchanged(ledger_url: str) -> None:
    one, two = Ledger.open(ledger_url), Ledger.open(ledger_url)
    one.append([event("s:a", 1, 0)])
    with pytest.raises(ConcurrencyConflict, match="at version 1, not 0"):
        two.append([event("s:a", 2, 0), event("s:c", 1, 0)], texts=["not stored"])  # new-stream path
    with pytest.raises(ConcurrencyConflict, match="at version 1, not 3"):
        two.append([event("s:a", 2, 3)])
    assert one.last_seq() == 1 and one.get_text(text_hash("not stored")) is None
    two.append([event("s:a", 2, 1)])
    assert one.stream_version("s:a") == 2 and one.verify() == (2, 0)


def test_a_large_batch_conflicts_the_same_way(ledger_url: str) -> None:
    """Large batches go in by COPY on PostgreSQL: a conflict there too is reported and rolled back."""
    one, two = Ledger.open(ledger_url), Ledger.open(ledger_url)
    one.append([event("s:z", 1, 0)])
    batch = [event(f"s:{i}", 1, 0) for i in range(80)] + [event("s:z", 1, 0)]
    # (On SQLite the message may name an earlier stream of the batch: executemany's rows before the
    # failing one are still in the transaction when the append looks the streams up.)
    with pytest.raises(ConcurrencyConflict, match="is at version 1, not 0"):
        two.append(batch)
    assert one.last_seq() == 1
    assert len(two.append(batch[:80])) == 80 and one.verify() == (81, 0)


def test_transact_is_a_compare_and_set(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    ledger.append([event("s:a", 1, 0)])

    def build(cur):  # reads under the write lock, decides, appends
        n = cur.execute("SELECT COUNT(*) FROM events WHERE stream = :s", {"s": "s:a"}).fetchone()[0]
        return ([event("s:a", n + 1, n)] if n < 2 else []), ["t"]

    assert [e.version for e in ledger.transact(build)] == [2]
    assert ledger.transact(build) == []
    assert ledger.count() == 2 and ledger.verify() == (2, 1)


@pytest.mark.parametrize("statement", [
    "UPDATE events SET payload = '{}' WHERE seq = 1",
    "DELETE FROM events WHERE seq = 1",
    "DELETE FROM events WHERE seq = 999",  # matches nothing: still refused on PostgreSQL
    "UPDATE texts SET text = 'x'",
    "DELETE FROM texts",
    "UPDATE chain_head SET seq = 0, hash = '0'",
    "DELETE FROM chain_head",
])
def test_append_only_refuses_changes_even_to_the_owner(ledger_url: str, statement: str) -> None:
    ledger = Ledger.open(ledger_url)
    ledger.append([event("s:a", 1, 0)], texts=["kept"])
    if "999" in statement and not is_pg(ledger_url):
        pytest.skip("SQLite's row triggers do not fire on a DELETE matching no row (nothing changes)")
    with pytest.raises(append_only_error(ledger_url), match="append-only|chain_head"):
        raw(ledger_url, statement)
    assert ledger.verify() == (1, 1)


@pytest.mark.parametrize("tamper, disable, message, seq", [
    ("UPDATE events SET payload = '{{\"n\":9}}' WHERE seq = 2", ["events_no_update"], "seq 2.*altered", 2),
    ("DELETE FROM events WHERE seq = 2", ["events_no_delete"], "seq 2", 2),  # a gap in the middle
    ("DELETE FROM events WHERE seq = 3", ["events_no_delete"], "removed", None),  # the last: the head tells
    ("UPDATE texts SET text = 'y'", ["texts_no_update"], "does not match its hash", None),
    ("UPDATE events SET prev_hash = '{zero}' WHERE seq = 2", ["events_no_update"], "prev_hash", 2),
])
def test_verify_detects_tampering(ledger_url: str, tamper: str, disable: list[str], message: str,
                                  seq: int | None) -> None:
    ledger = Ledger.open(ledger_url)
    ledger.append([event("s:a", 1, 0), event("s:a", 2),
                   event("s:a", 3)], texts=["x"])
    assert ledger.verify() == (3, 1)
    raw(ledger_url, tamper.format(zero=GENESIS_HASH), disable=disable)
    with pytest.raises(LedgerIntegrityError, match=message) as info:
        Ledger.open(ledger_url).verify()
    if seq is not None:
        assert info.value.seq == seq


def test_verify_through_the_command_line(ledger_url: str) -> None:
    Ledger.open(ledger_url).append([event("s:a", 1, 0)])
    done = run_cli("verify", "--db", ledger_url)
    assert done.returncode == 0, done.stderr
    raw(ledger_url, "DELETE FROM events WHERE seq = 1", disable=["events_no_delete"])
    failed = run_cli("verify", "--db", ledger_url)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "removed" in failed.stderr


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
    # Each append is its own transaction (on PostgreSQL a few round trips under the chain lock):
    # 4 x 500 interleaved appends there show the same as 4 x 2,000 on a file, in a quarter of the time.
    n = 500 if is_pg(ledger_url) else 2000
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(ledger_url, w, n)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ledger = Ledger.open(ledger_url)
    seqs = [r[0] for r in ledger.query("SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, 4 * n + 1))
    for w in range(4):
        assert ledger.stream_version(f"w{w}") == n
    assert ledger.verify() == (4 * n, 0)


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
