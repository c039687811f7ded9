"""The ledger's run-time database layer: plain sqlite3, SQLAlchemy and Alembic only for schema work.

What callers are given (pooled readers beside a writer, named parameters, long IN lists) is
checked on SQLite and PostgreSQL (``ledger_url``, issue 17); the rest is SQLite's own.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daydream.errors import ConcurrencyConflict, LedgerPathError
from daydream.ledger import db
from daydream.ledger.backend import column_names
from daydream.ledger.store import Ledger, NewEvent, text_hash

REPO = Path(__file__).resolve().parents[1]


def _in_fresh_python(code: str) -> dict:
    """Run ``code`` in a new interpreter (nothing imported yet) and return the JSON it prints last."""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _at_revision(path: Path, revision: str) -> Ledger:
    backend = db.create_backend(path, create=True)
    db.migrate(backend, path, revision=revision)
    return Ledger(path, backend)


# ----------------------------------------------------------------------------- revisions without Alembic
def test_revisions_read_from_the_files_are_alembics() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db._alembic_config(None))
    assert db.known_revisions() == {rev.revision for rev in script.walk_revisions()}
    assert db.head_revision() == script.get_current_head()
    for rev in script.walk_revisions():
        assert db.revision_graph()[rev.revision] == tuple(rev._all_down_revisions)


def test_reading_appending_and_verifying_a_current_ledger_never_imports_sqlalchemy(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.init(path)
    seen = _in_fresh_python(f"""
import json, sys
from daydream.ledger.store import Ledger, NewEvent
ledger = Ledger.open({str(path)!r})
ledger.append([NewEvent("s:1", "ThingHappened", {{"i": 1}})], texts=["hello"])
ledger.transact(lambda cur: ([NewEvent("s:1", "ThingHappened", {{"i": 2}}, expected_version=1)], []))
ledger.verify()
ledger.backup({str(tmp_path / "copy.db")!r})
reader = Ledger.open({str(path)!r}, readonly=True)
rows = reader.query("SELECT COUNT(*) FROM events WHERE type = :type", {{"type": "ThingHappened"}})
print(json.dumps({{"rows": rows, "verify": list(reader.verify()),
                  "loaded": sorted(m for m in ("sqlalchemy", "alembic") if m in sys.modules)}}))
""")
    assert seen == {"rows": [[2]], "verify": [2, 1], "loaded": []}


def test_opening_a_ledger_that_is_behind_upgrades_it_and_only_then_loads_alembic(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = _at_revision(path, "0005_llm_calls_by_stream")
    old.append([NewEvent("s:1", "ThingHappened", {"i": 1})])
    old.close()
    code = f"""
import json, sys
from daydream.ledger.store import Ledger
from daydream.ledger import db
ledger = Ledger.open({str(path)!r}, readonly={{readonly}})
print(json.dumps({{"revision": db.current_revision(ledger.backend), "events": ledger.count(),
                  "alembic": "alembic" in sys.modules}}))
"""
    # Read-only: read at the schema it has, nothing upgraded, nothing imported.
    assert _in_fresh_python(code.replace("{readonly}", "True")) == {
        "revision": "0005_llm_calls_by_stream", "events": 1, "alembic": False}
    assert _in_fresh_python(code.replace("{readonly}", "False")) == {
        "revision": db.head_revision(), "events": 1, "alembic": True}


# ----------------------------------------------------------------------------- the connection pool
def test_a_failed_write_rolls_back_and_the_connection_is_reused_clean(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    ledger.append([NewEvent("s:1", "ThingHappened", {"i": 1})])

    def fail(cur: sqlite3.Cursor) -> None:
        cur.execute("INSERT INTO texts (sha256, text, chars) VALUES (:h, :t, :n)", {"h": text_hash("x"), "t": "x", "n": 1})
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        ledger.backend.write(fail)
    assert ledger.query("SELECT COUNT(*) FROM texts") == [(0,)]
    idle = list(ledger.backend._idle)
    assert idle and not any(conn.in_transaction for conn in idle)
    with pytest.raises(ConcurrencyConflict):
        ledger.append([NewEvent("s:1", "ThingHappened", {"i": 2}, expected_version=0)])
    assert ledger.backend._idle == idle  # the same connection, lent again and given back
    assert ledger.append([NewEvent("s:1", "ThingHappened", {"i": 2}, expected_version=1)])[0].version == 2


def test_a_reader_that_leaves_a_transaction_open_does_not_poison_the_pool(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    with ledger.backend.read() as conn:
        conn.execute("BEGIN")
        conn.execute("SELECT COUNT(*) FROM events").fetchone()
    # Had the snapshot stayed open, this reader would not see the append.
    ledger.append([NewEvent("s:1", "ThingHappened", {"i": 1})])
    with ledger.backend.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (1,)


def test_threads_read_while_a_writer_thread_appends(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(200):
                ledger.append([NewEvent(f"s:{i % 7}", "ThingHappened", {"i": i})])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            last = 0
            while not done.is_set():
                n = ledger.last_seq()
                assert n >= last
                last = n
                ledger.events(after=max(0, n - 5))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ledger.verify() == (200, 0)
    assert len(ledger.backend._idle) <= type(ledger.backend).IDLE


def test_an_append_waits_for_another_processs_write_lock(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, sys, time
conn = sqlite3.connect({str(ledger.path)!r}, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
time.sleep(0.5)
conn.execute("COMMIT")
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        start = time.monotonic()
        stored = ledger.append([NewEvent("s:1", "ThingHappened", {"i": 1})])
        waited = time.monotonic() - start
    finally:
        holder.wait(timeout=30)
    assert stored[0].seq == 1 and waited > 0.1  # it waited for the lock instead of failing


# ----------------------------------------------------------------------------- what callers are given
def test_named_parameters_and_long_in_lists(ledger_url: str) -> None:
    ledger = Ledger.open(ledger_url)
    texts = [f"text {i}" for i in range(2500)]  # more than one IN list's worth of hashes
    hashes = ledger.put_texts(texts)
    assert ledger.get_texts(hashes + ["missing"]) == dict(zip(hashes, texts))
    streams = [NewEvent(f"s:{i}", "ThingHappened", {"i": i}) for i in range(2000)]
    ledger.append(streams)
    ledger._known.clear()  # force the stream-version lookup, in chunks
    ledger.append([NewEvent(f"s:{i}", "ThingHappened", {"i": i}, expected_version=1) for i in range(2000)])
    assert ledger.query("SELECT COUNT(*) FROM events WHERE version = :v", {"v": 2}) == [(2000,)]
    assert [e.seq for e in ledger.events(type=["ThingHappened", "Other"], stream="s:3")] == [4, 2004]
    with ledger.backend.read() as conn:
        cur = conn.execute("SELECT seq AS position, stream FROM events WHERE seq = :seq", {"seq": 1})
        assert column_names(cur) == ["position", "stream"] and cur.fetchall() == [(1, "s:0")]


def test_statements_an_append_runs(tmp_path: Path) -> None:
    """One write transaction taken up front; the head moves by compare-and-set with named parameters."""
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    ledger.close()
    statements: list[str] = []
    ledger.backend.on_connect.append(lambda conn: conn.set_trace_callback(statements.append))
    ledger.append([NewEvent("s:1", "ThingHappened", {"i": 1})])
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
    assert any(s.startswith("UPDATE chain_head SET seq = 1,") and "AND seq = 0 AND hash = '000" in s
               for s in statements)


def test_checkpoint_and_backup_go_through_the_backend(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    ledger.append([NewEvent("s:1", "ThingHappened", {"i": i}) for i in range(100)])
    busy, _logged, _copied = ledger.backend.checkpoint("TRUNCATE")
    assert busy == 0 and Path(f"{ledger.path}-wal").stat().st_size == 0
    with pytest.raises(ValueError, match="unknown checkpoint mode"):
        ledger.backend.checkpoint("PASSIVE); DROP TABLE events; --")
    copy = ledger.backup(tmp_path / "copy.db")
    assert Ledger.open(copy, readonly=True).verify() == (100, 0)
    with pytest.raises(LedgerPathError, match="cannot write backup"):
        ledger.backend.backup(tmp_path / "no-such-folder" / "x.db")


def test_read_only_backend_settles_its_uri_options_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.init(path)[0].append([NewEvent("s:1", "ThingHappened", {"i": 1})])
    reader = Ledger.open(path, readonly=True)
    assert reader.backend.readonly and reader.backend._readonly_options == "mode=ro"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.backend.write(lambda cur: cur.execute("INSERT INTO texts VALUES ('x', 'x', 1)"))
    assert reader.count() == 1


def test_sql_in_sqlite_style_runs_on_both(ledger_url: str) -> None:
    """Named and positional parameters, % and : inside literals, casts: the same text on both."""
    ledger = Ledger.open(ledger_url)
    ledger.append([NewEvent("s:a", "Noted", {"note": "50%:done"}, 0)])
    like = "SELECT COUNT(*) FROM events WHERE payload LIKE '%50\\%:done%' ESCAPE '\\' AND stream = :s"
    assert ledger.query(like, {"s": "s:a"}) == [(1,)]
    assert ledger.query("SELECT COUNT(*) FROM events WHERE payload LIKE '%50%'") == [(1,)]
    assert ledger.query("SELECT COUNT(*) FROM events WHERE stream = ? AND version = ?", ("s:a", 1)) == [(1,)]
    assert ledger.query("SELECT CAST(':x' AS TEXT), 7 % 4") == [(":x", 3)]
