"""Ledger behaviour on both backends (issue 17): the same tests on a SQLite file and on PostgreSQL.

Append and read back, stream-version conflicts (also across ledger objects, as two processes
would meet them), ``transact``'s compare-and-set, the append-only triggers (UPDATE, DELETE and,
on PostgreSQL, TRUNCATE, refused to the tables' owner too), ``verify`` on an intact chain and on
each kind of tampering, texts, and appends from several processes at once forming one chain.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
from collections.abc import Sequence

import pytest

from daydream.errors import ConcurrencyConflict, LedgerIntegrityError
from daydream.ledger.store import GENESIS_HASH, Ledger, NewEvent, text_hash
from tests.pg_fixtures import ledger_url, pg_empty_url, pg_server, pg_template, pg_url  # noqa: F401
from tests.runner_fixtures import run_cli


def is_pg(url: str) -> bool:
    return url.startswith("postgresql://")


def raw(url: str, *statements: str, disable: Sequence[str] = ()) -> None:
    """Run SQL straight on the database, as someone bypassing daydream would, guards in ``disable`` off."""
    if is_pg(url):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for trigger in disable:
                table = trigger.split("_no_")[0]
                conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
            for sql in statements:
                conn.execute(sql)
        return
    conn = sqlite3.connect(url, isolation_level=None)
    try:
        for trigger in disable:
            conn.execute(f"DROP TRIGGER {trigger}")
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


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


@pytest.mark.parametrize("table", ["events", "texts", "chain_head"])
def test_truncate_is_refused_on_postgresql(pg_url: str, table: str) -> None:
    import psycopg

    ledger = Ledger.open(pg_url)
    ledger.append([event("s:a", 1, 0)], texts=["kept"])
    with pytest.raises(psycopg.IntegrityError, match="append-only|chain_head"):
        raw(pg_url, f"TRUNCATE {table} CASCADE")
    with pytest.raises(psycopg.IntegrityError):  # replica mode does not switch them off (ENABLE ALWAYS)
        raw(pg_url, "SET session_replication_role = replica", f"DELETE FROM {table}")
    assert ledger.verify() == (1, 1)


@pytest.mark.parametrize("tamper, disable, message", [
    ("UPDATE events SET payload = '{{\"n\":9}}' WHERE seq = 2", ["events_no_update"], "seq 2.*altered"),
    ("DELETE FROM events WHERE seq = 3", ["events_no_delete"], "removed"),
    ("UPDATE texts SET text = 'y'", ["texts_no_update"], "does not match its hash"),
    ("UPDATE events SET prev_hash = '{zero}' WHERE seq = 2", ["events_no_update"], "prev_hash"),
])
def test_verify_detects_tampering(ledger_url: str, tamper: str, disable: list[str], message: str) -> None:
    ledger = Ledger.open(ledger_url)
    ledger.append([event("s:a", 1, 0), event("s:a", 2),
                   event("s:a", 3)], texts=["x"])
    assert ledger.verify() == (3, 1)
    raw(ledger_url, tamper.format(zero=GENESIS_HASH), disable=disable)
    with pytest.raises(LedgerIntegrityError, match=message):
        Ledger.open(ledger_url).verify()


def test_verify_through_the_command_line(ledger_url: str) -> None:
    Ledger.open(ledger_url).append([event("s:a", 1, 0)])
    done = run_cli("verify", "--db", ledger_url)
    assert done.returncode == 0, done.stderr
    raw(ledger_url, "DELETE FROM events WHERE seq = 1", disable=["events_no_delete"])
    failed = run_cli("verify", "--db", ledger_url)
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "removed" in failed.stderr


def _appender(url: str, worker: int, n: int) -> None:
    ledger = Ledger.open(url)
    for i in range(n):
        ledger.append([NewEvent(f"w:{worker}", "Noted", {"i": i}, expected_version=i)])
    ledger.close()


def test_appends_from_four_processes_form_one_chain(ledger_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_appender, args=(ledger_url, w, 40)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(120)
        assert p.exitcode == 0
    ledger = Ledger.open(ledger_url)
    assert ledger.verify() == (160, 0)
    assert {ledger.stream_version(f"w:{w}") for w in range(4)} == {40}


def test_nul_characters_are_refused_on_postgresql_with_nothing_written(pg_url: str) -> None:
    ledger = Ledger.open(pg_url)
    # In a payload, JSON spells U+0000 as the escape \u0000: stored and read back as it was.
    stored = ledger.append([NewEvent("s:a", "Noted", {"text": "a\x00b"}, 0)])
    assert Ledger.open(pg_url).events() == stored and stored[0].payload == {"text": "a\x00b"}
    # A text is stored as it is, and PostgreSQL's TEXT cannot hold U+0000: refused, nothing written.
    with pytest.raises(Exception, match="U\\+0000") as info:
        ledger.append([NewEvent("s:a", "Noted", {"n": 2}, 1)], texts=["fine", "a\x00b"])
    assert "PostgreSQL" in str(info.value)
    with pytest.raises(Exception, match="U\\+0000"):
        ledger.put_texts(["a\x00b"])
    assert ledger.last_seq() == 1 and ledger.get_text(text_hash("fine")) is None and ledger.verify() == (1, 0)


def test_open_refuses_what_is_not_a_ledger(pg_server: str, pg_empty_url: str) -> None:
    not_yet = run_cli("status", "--db", pg_empty_url)
    assert not_yet.returncode != 0 and "daydream init" in not_yet.stderr and "Traceback" not in not_yet.stderr
    raw(pg_empty_url, "CREATE TABLE someone_elses (x int)")
    foreign = run_cli("init", "--db", pg_empty_url)
    assert foreign.returncode != 0 and "not a daydream ledger" in foreign.stderr
    missing = run_cli("verify", "--db", pg_server.rsplit("/", 1)[0] + "/no_such_database")
    assert missing.returncode != 0 and "cannot connect" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "Traceback" not in missing.stderr


def test_init_makes_a_ledger_of_an_empty_database(pg_empty_url: str) -> None:
    done = run_cli("init", "--db", pg_empty_url)
    assert done.returncode == 0, done.stderr
    assert Ledger.open(pg_empty_url).verify() == (0, 0)


def test_a_postgresql_url_without_psycopg_names_the_extra(tmp_path) -> None:
    hide = ("import sys; sys.modules['psycopg'] = None; sys.argv = ['daydream', 'verify', '--db', "
            "'postgresql://nobody@127.0.0.1:9/none']; from daydream.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", hide], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "daydream[postgres]" in done.stderr and "Traceback" not in done.stderr


def test_verify_full_names_a_disabled_or_foreign_trigger_on_postgresql(pg_url: str) -> None:
    Ledger.open(pg_url).append([event("s:a", 1, 0)])
    done = run_cli("verify", "--full", "--db", pg_url)
    assert done.returncode == 0, done.stderr
    assert "append-only guards are what the migrations create" in done.stdout
    raw(pg_url, "ALTER TABLE events DISABLE TRIGGER events_no_update")
    disabled = run_cli("verify", "--full", "--db", pg_url)
    assert disabled.returncode != 0 and "events_no_update is not enabled ALWAYS" in disabled.stdout + disabled.stderr
    raw(pg_url, "ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update",
        "CREATE FUNCTION sneaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER sneaky BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION sneaky()")
    foreign = run_cli("verify", "--full", "--db", pg_url)
    assert foreign.returncode != 0 and "trigger sneaky on events was not created" in foreign.stdout + foreign.stderr


def test_projections_check_finds_a_hand_edited_row_and_rebuild_repairs_it(ledger_url: str, tmp_path) -> None:
    from daydream.design.planner import plan_cohort
    from tests.runner_fixtures import pipeline_spec, write_spec

    ledger = Ledger.open(ledger_url)
    plan_cohort(ledger, write_spec(tmp_path, "c", pipeline_spec(n_combos=2, model="offline")), cohort_id="c")
    assert run_cli("run", "--db", ledger_url).returncode == 0
    clean = run_cli("projections", "check", "--db", ledger_url)
    assert clean.returncode == 0, clean.stderr
    full = run_cli("verify", "--full", "--db", ledger_url)
    assert full.returncode == 0 and "projections match a rebuild" in full.stdout, full.stderr
    gen = ledger.query("SELECT gen_id FROM gen_state WHERE stage = 'evaluation' ORDER BY gen_id LIMIT 1")[0][0]
    raw(ledger_url, f"UPDATE gen_state SET score = 0 WHERE gen_id = '{gen}'")
    drift = run_cli("projections", "check", "--db", ledger_url)
    assert drift.returncode != 0 and "gen_state: 1 row(s) missing, 1 row(s)" in drift.stdout + drift.stderr
    repaired = run_cli("projections", "rebuild", "--db", ledger_url)
    assert repaired.returncode == 0 and "repaired gen_state" in repaired.stdout, repaired.stderr
    assert run_cli("projections", "check", "--db", ledger_url).returncode == 0


def test_two_hosts_initialising_one_database_at_once_take_turns(pg_empty_url: str) -> None:
    from tests.runner_fixtures import daydream_cmd, subprocess_env

    procs = [subprocess.Popen(daydream_cmd("init", "--db", pg_empty_url), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=subprocess_env()) for _ in range(3)]
    outcomes = [(p.wait(120), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in outcomes), outcomes
    ledger = Ledger.open(pg_empty_url)
    assert ledger.append([event("s:a", 1, 0)])[0].seq == 1 and ledger.verify() == (1, 0)


def test_daydream_db_may_name_a_postgresql_ledger_and_events_lists_it(pg_url: str) -> None:
    from tests.runner_fixtures import subprocess_env

    Ledger.open(pg_url).append([event("s:a", 1, 0), event("s:b", 1, 0)])
    done = run_cli("events", "--json", env=subprocess_env(DAYDREAM_DB=pg_url))
    assert done.returncode == 0, done.stderr
    assert done.stdout.count('"stream"') == 2 and '"s:b"' in done.stdout


def test_sql_in_sqlite_style_runs_on_both(ledger_url: str) -> None:
    """Named and positional parameters, % and : inside literals, casts: the same text on both."""
    ledger = Ledger.open(ledger_url)
    ledger.append([NewEvent("s:a", "Noted", {"note": "50%:done"}, 0)])
    like = "SELECT COUNT(*) FROM events WHERE payload LIKE '%50\\%:done%' ESCAPE '\\' AND stream = :s"
    assert ledger.query(like, {"s": "s:a"}) == [(1,)]
    assert ledger.query("SELECT COUNT(*) FROM events WHERE payload LIKE '%50%'") == [(1,)]
    assert ledger.query("SELECT COUNT(*) FROM events WHERE stream = ? AND version = ?", ("s:a", 1)) == [(1,)]
    assert ledger.query("SELECT CAST(':x' AS TEXT), 7 % 4") == [(":x", 3)]


def test_the_postgresql_backend_answers_the_append_s_own_last_event_query() -> None:
    from daydream.ledger import pg_backend, store

    assert pg_backend.LAST_EVENT == store.LAST_EVENT  # read with the lock, in the same round trip


def test_a_password_in_the_url_stays_out_of_messages(pg_server: str) -> None:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_server)
    secret = urlunsplit(parts._replace(netloc=f"{parts.username}:s3cr3t-pw@{parts.hostname}:{parts.port}",
                                       path="/no_such_database"))
    done = run_cli("verify", "--db", secret)
    assert done.returncode != 0 and "s3cr3t-pw" not in done.stderr + done.stdout
    assert ":***@" in done.stderr
