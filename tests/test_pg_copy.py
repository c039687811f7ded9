"""``daydream copy`` between SQLite and PostgreSQL (issue 17): byte-identical round trips, the
prefix rule (only the missing suffix appended, anything else refused with nothing written), a
tampered source refused, and ``backup`` of a PostgreSQL ledger into a SQLite file."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from daydream.ledger.store import Ledger, NewEvent
from daydream.transfer.copy import CopyRefused, copy_ledger
from tests.pg_fixtures import pg_empty_url, pg_server, pg_template, pg_url  # noqa: F401
from tests.runner_fixtures import run_cli

REPO = Path(__file__).resolve().parent.parent
EVENTS = "SELECT seq, stream, version, type, payload, recorded_at, causation_seq, prev_hash, hash FROM events ORDER BY seq"
TEXTS = "SELECT sha256, text, chars FROM texts ORDER BY sha256"


def rows(url: str, sql: str) -> list[tuple]:
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    with sqlite3.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def example(tmp_path: Path) -> str:
    """A copy of the committed demo ledger (a whole cohort's events and texts)."""
    path = tmp_path / "example.db"
    shutil.copyfile(REPO / "ledger.db.example", path)
    return str(path)


def test_round_trip_sqlite_postgresql_sqlite_is_byte_identical(example: str, pg_empty_url: str, tmp_path: Path) -> None:
    there = copy_ledger(example, pg_empty_url)
    back_path = str(tmp_path / "back.db")
    back = copy_ledger(pg_empty_url, back_path)
    source_events, source_texts = rows(example, EVENTS), rows(example, TEXTS)
    assert there.events == back.events == len(source_events) > 400
    assert there.texts == back.texts == len(source_texts) > 100
    for url in (pg_empty_url, back_path):
        assert rows(url, EVENTS) == source_events
        assert rows(url, TEXTS) == source_texts
        assert Ledger.open(url).verify() == (len(source_events), len(source_texts))
    # The SQLite ledger that came back ran its projections on the copied events: same state.
    for table in ("gen_state", "cohort_members", "combos"):
        assert rows(back_path, f"SELECT * FROM {table} ORDER BY 1, 2") == rows(example, f"SELECT * FROM {table} ORDER BY 1, 2")
    assert rows(back_path, "SELECT * FROM generations ORDER BY gen_id") == rows(example, "SELECT * FROM generations ORDER BY gen_id")


def _ledger_with(path: str, n: int, start: int = 0) -> Ledger:
    ledger = Ledger.open(path) if Path(path).exists() else Ledger.init(path)[0]
    for i in range(start, start + n):
        ledger.append([NewEvent("s:a", "Noted", {"i": i}, expected_version=i)], texts=[f"text {i}"])
    return ledger


def test_only_the_missing_suffix_is_appended_and_anything_else_refused(pg_url: str, tmp_path: Path) -> None:
    src = str(tmp_path / "src.db")
    _ledger_with(src, 10)
    assert copy_ledger(src, pg_url).events == 10
    _ledger_with(src, 5, start=10)
    again = copy_ledger(src, pg_url)
    assert (again.dest_was, again.events, again.texts, again.dest_seq) == (10, 5, 5, 15)
    assert copy_ledger(src, pg_url).events == 0
    assert rows(pg_url, EVENTS) == rows(src, EVENTS)
    # DEST longer than SRC: refused.
    short = str(tmp_path / "short.db")
    _ledger_with(short, 3)
    with pytest.raises(CopyRefused, match="has 15 events and SRC .* only 3"):
        copy_ledger(short, pg_url)
    # Diverged: same length, another history. Refused both ways, nothing written.
    other = str(tmp_path / "other.db")
    _ledger_with(other, 20)
    Ledger.open(pg_url).append([NewEvent("s:b", "Noted", {"x": 1}, 0)])
    with pytest.raises(CopyRefused, match="event 16 differs"):
        copy_ledger(other, pg_url)
    with pytest.raises(CopyRefused, match="has 20 events and SRC .* only 16"):
        copy_ledger(pg_url, other)
    assert Ledger.open(pg_url).verify() == (16, 15) and Ledger.open(other).verify() == (20, 20)


def test_a_tampered_source_is_refused_before_its_events_are_written(pg_empty_url: str, tmp_path: Path) -> None:
    src = str(tmp_path / "src.db")
    _ledger_with(src, 6).close()
    with sqlite3.connect(src) as conn:
        conn.execute("DROP TRIGGER events_no_update")
        conn.execute("""UPDATE events SET payload = '{"i":99}' WHERE seq = 4""")
    with pytest.raises(CopyRefused, match="SRC event 4: hash does not match"):
        copy_ledger(src, pg_empty_url)
    assert rows(pg_empty_url, "SELECT COUNT(*) FROM events") == [(0,)]


def test_sqlite_to_sqlite_and_the_command_line(tmp_path: Path) -> None:
    src, dest = str(tmp_path / "src.db"), str(tmp_path / "dest.db")
    _ledger_with(src, 4)
    done = run_cli("copy", src, dest)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("copied 4 events and 4 texts from ") and "now 4" in done.stdout
    assert rows(dest, EVENTS) == rows(src, EVENTS)
    refused = run_cli("copy", str(tmp_path / "missing.db"), dest)
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
    _ledger_with(dest, 1, start=4)
    diverged = run_cli("copy", src, dest)
    assert diverged.returncode != 0 and "has 5 events and SRC" in diverged.stderr
    assert "Traceback" not in diverged.stderr and len(diverged.stderr.strip().splitlines()) == 1


def test_backup_of_a_postgresql_ledger_is_a_sqlite_file(pg_url: str, tmp_path: Path) -> None:
    ledger = Ledger.open(pg_url)
    ledger.append([NewEvent("s:a", "Noted", {"i": 1}, 0)], texts=["kept"])
    target = tmp_path / "backup.db"
    done = run_cli("backup", "--db", pg_url, str(target))
    assert done.returncode == 0, done.stderr
    assert rows(str(target), EVENTS) == rows(pg_url, EVENTS) and Ledger.open(target).verify() == (1, 1)
