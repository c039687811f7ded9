"""What only a PostgreSQL ledger has (issue 17): TRUNCATE refused too, even in replica mode; NUL
characters refused with nothing written; a database that is not (yet) a ledger; the psycopg extra
named when missing; verify --full naming a disabled or foreign trigger; several hosts initialising
one database at once; ``DAYDREAM_DB`` naming a URL; a password kept out of messages.

Ledger behaviour common to both backends (append, conflicts, the append-only triggers, verify on
each kind of tampering, appends from several processes) is tests/test_ledger.py, on SQLite and on
PostgreSQL alike (``ledger_url``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from daydream.ledger.store import Ledger, NewEvent, text_hash
from tests.pg_fixtures import raw
from tests.runner_fixtures import run_cli
from tests.test_ledger import event

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
    assert "ok: schema is what the migrations create" in done.stdout
    raw(pg_url, "ALTER TABLE events DISABLE TRIGGER events_no_update")
    disabled = run_cli("verify", "--full", "--db", pg_url)
    assert disabled.returncode != 0 and "events_no_update is not enabled ALWAYS" in disabled.stdout + disabled.stderr
    raw(pg_url, "ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update",
        "CREATE FUNCTION sneaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
        "CREATE TRIGGER sneaky BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION sneaky()")
    foreign = run_cli("verify", "--full", "--db", pg_url)
    assert foreign.returncode != 0 and "trigger sneaky on events was not created" in foreign.stdout + foreign.stderr



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


def test_replay_from_a_postgresql_ledger(pg_url: str, tmp_path) -> None:
    assert run_cli("demo", "--db", pg_url, "--quiet").returncode == 0
    target = str(tmp_path / "target.db")
    assert run_cli("init", "--db", target).returncode == 0
    assert run_cli("cohort", "plan", "specs/cohorts/demo.yaml", "--db", target, "--cohort-id", "demo").returncode == 0
    done = run_cli("run", "--db", target, "--replay-from", pg_url, "--quiet")
    assert done.returncode == 0, done.stderr
    query = "SELECT gen_id, parsed_hash, score FROM gen_state ORDER BY gen_id"
    assert Ledger.open(target).query(query) == Ledger.open(pg_url).query(query)
