"""Tampering that used to pass unseen (issue 10, point 5), each done the hostile way: with the
append-only triggers dropped, on a real ledger, checked through the real command line.

- the last events deleted: verify compares the chain with the stored head;
- the stored head rewound or removed: refused by its own guards;
- a text an event refers to deleted: verify names the event, show says the text is missing;
- a score edited in its event (0 -> 9): verify fails, projections rebuild refuses to adopt it;
- a score edited in the projection, or the projection trigger rewritten: verify --full fails,
  rebuild repairs the first and refuses the second;
- a guard dropped and a foreign trigger added: verify --full names both.

All of it is ledger behaviour and runs on a SQLite file and on a PostgreSQL database (``finished``
takes ``ledger_url``, issue 17), "dropping" a guard being ``DISABLE TRIGGER`` on PostgreSQL. Only
the upgrade of a ledger made at an old revision is SQLite's: PostgreSQL ledgers start at the
revision that created them in one frozen script (migrations/versions/0011_postgresql.sql).
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from daydream.ledger import db as ddb
from daydream.errors import LedgerIntegrityError
from daydream.ledger.store import Ledger, NewEvent
from daydream.design.planner import plan_cohort
from tests.pg_fixtures import is_pg, raw, raw_rows
from tests.runner_fixtures import pipeline_spec, run_cli, write_spec


@pytest.fixture
def finished(ledger_url: str, tmp_path: Path) -> str:
    """A ledger with one finished offline draft -> essay -> evaluation chain (two combos), on SQLite
    and on PostgreSQL: its path or URL."""
    ledger = Ledger.open(ledger_url)
    plan_cohort(ledger, write_spec(tmp_path, "c", pipeline_spec(n_combos=2, model="offline")), cohort_id="c")
    ledger.close()
    ran = run_cli("run", "--db", ledger_url)
    assert ran.returncode == 0, ran.stderr
    return ledger_url


def hostile(path: Path | str, *statements: str, drop: tuple[str, ...] = ()) -> None:
    """Run SQL the way an attacker would: straight on the database, the guards in ``drop`` dropped
    first (on PostgreSQL: disabled)."""
    raw(path, *statements, disable=drop)


def one(path: Path | str, sql: str) -> tuple:
    return raw_rows(path, sql)[0]


def refused(path: str) -> type[Exception]:
    """What the database raises when a guard refuses a statement."""
    if is_pg(path):
        import psycopg

        return psycopg.Error
    return sqlite3.DatabaseError


def cli(*args: str) -> tuple[int, str, str]:
    result = run_cli(*args)
    return result.returncode, result.stdout, result.stderr


def test_deleting_the_last_events_fails_verify_and_blocks_appends(finished: str) -> None:
    last = one(finished, "SELECT MAX(seq) FROM events")[0]
    assert cli("verify", "--db", str(finished))[0] == 0
    hostile(finished, f"DELETE FROM events WHERE seq > {last - 2}", drop=("events_no_delete",))
    code, out, err = cli("verify", "--db", str(finished))
    assert code == 1 and out == ""
    assert err.strip() == (f"verify failed: seq {last - 1}: the stored chain head is at seq {last} but the last "
                           f"event is seq {last - 2}: 2 event(s) at the end of the ledger were removed")
    # Appending would move the head past the evidence: refused, nothing written.
    with pytest.raises(LedgerIntegrityError, match="2 event.s. at the end of the ledger were removed.*nothing was appended"):
        Ledger.open(finished).append([NewEvent("s", "ThingHappened", {})])
    assert one(finished, "SELECT MAX(seq) FROM events")[0] == last - 2


def test_the_stored_head_cannot_be_rewound_or_removed_without_dropping_its_guards(finished: str) -> None:
    head = one(finished, "SELECT seq, hash FROM chain_head")
    with pytest.raises(refused(finished), match="only moves forward"):
        hostile(finished, "UPDATE chain_head SET seq = seq - 1")
    with pytest.raises(refused(finished), match="cannot be deleted"):
        hostile(finished, "DELETE FROM chain_head")
    with pytest.raises(refused(finished)):  # one row only
        hostile(finished, "INSERT INTO chain_head (id, seq, hash) VALUES (2, 0, '')")
    assert raw_rows(finished, "SELECT seq, hash FROM chain_head") == [head]
    assert cli("verify", "--db", finished)[0] == 0


def test_a_deleted_response_text_fails_verify_and_show_says_it_is_missing(finished: str) -> None:
    gen_id, raw_hash = one(finished, "SELECT gen_id, raw_hash FROM gen_state WHERE stage = 'essay' LIMIT 1")
    seq = one(finished, f"SELECT seq FROM events WHERE type = 'LLMCallCompleted' "
                        f"AND json_extract(payload, '$.text_hash') = '{raw_hash}'")[0]
    hostile(finished, f"DELETE FROM texts WHERE sha256 = '{raw_hash}'", drop=("texts_no_delete",))
    code, _out, err = cli("verify", "--db", str(finished))
    assert code == 1
    assert f"seq {seq}: LLMCallCompleted refers to text {raw_hash[:16]}… (text_hash), which is missing" in err
    code, out, err = cli("show", gen_id, "--db", str(finished))
    assert code == 0
    assert f"--- response ---\n(missing: text {raw_hash[:16]}… is not in the ledger; run 'daydream verify')" in out
    assert f"text(s) of {gen_id} missing from the ledger (response" in err  # (and parsed, the same text)
    code, out, _ = cli("show", gen_id, "--db", str(finished), "--json")
    assert json.loads(out)["missing_texts"]["response"] == raw_hash


def test_a_score_edited_in_its_event_is_never_adopted_by_a_rebuild(finished: str, tmp_path: Path) -> None:
    gen_id, score = one(finished, "SELECT gen_id, score FROM gen_state WHERE stage = 'evaluation' LIMIT 1")
    seq = one(finished, f"SELECT seq FROM events WHERE type = 'ScoreRecorded' AND stream = 'gen:{gen_id}'")[0]
    forged = 9.0 if score != 9 else 0.0
    edit = (f"jsonb_set(payload::jsonb, '{{score}}', '{forged}')::text" if is_pg(finished)
            else f"json_set(payload, '$.score', {forged})")
    hostile(finished, f"UPDATE events SET payload = {edit} WHERE seq = {seq}", drop=("events_no_update",))
    assert one(finished, f"SELECT json_extract(payload, '$.score') FROM events WHERE seq = {seq}")[0] in (forged, str(forged))

    code, _out, err = cli("verify", "--db", str(finished))
    assert code == 1 and f"seq {seq}: hash does not match the event's content (altered)" in err
    code, out, err = cli("projections", "rebuild", "--db", str(finished))
    assert code == 1 and out == ""
    assert err.strip() == (f"error: seq {seq}: hash does not match the event's content (altered); refusing to "
                           "rebuild the projections from events that fail verification (they would adopt the "
                           "altered data): restore the ledger from a backup")
    assert one(finished, f"SELECT score FROM gen_state WHERE gen_id = '{gen_id}'")[0] == score
    code, _out, err = cli("report", "c", "--db", str(finished), "--out", str(tmp_path / "report"))
    assert code == 0, err
    with open(tmp_path / "report" / "scores.csv", newline="") as fh:
        published = {row["evaluation_gen_id"]: row for row in csv.DictReader(fh)}
    assert float(published[gen_id]["score"]) == score  # the recorded score, not the forged one


def test_a_score_edited_in_the_projection_is_caught_by_verify_full_and_repaired(finished: str) -> None:
    gen_id, score = one(finished, "SELECT gen_id, score FROM gen_state WHERE stage = 'evaluation' LIMIT 1")
    hostile(finished, f"UPDATE gen_state SET score = {9 if score != 9 else 0} WHERE gen_id = '{gen_id}'")
    assert cli("verify", "--db", str(finished))[0] == 0  # the events are intact
    code, out, err = cli("verify", "--full", "--db", str(finished))
    assert code == 1 and "ok: schema is what the migrations create" in out
    assert f"verify failed: projections: gen_state: 1 row(s) missing, 1 row(s) that the events do not give " \
           f"(gen_id {gen_id})" in err
    code, out, _ = cli("projections", "rebuild", "--db", str(finished))
    assert code == 0 and out.startswith(f"repaired gen_state: 1 row(s) missing")
    assert one(finished, f"SELECT score FROM gen_state WHERE gen_id = '{gen_id}'")[0] == score
    assert cli("verify", "--full", "--db", str(finished))[0] == 0


def test_a_rewritten_projection_trigger_fails_verify_full_and_blocks_rebuild(finished: str) -> None:
    if is_pg(finished):  # one trigger function projects every type there: the function is what differs
        what = "function daydream_project"
        sql = one(finished, "SELECT pg_get_functiondef('daydream_project'::regproc)")[0]
        forged = sql.replace("UPDATE gen_state SET score = (p ->> 'score')::double precision",
                             "UPDATE gen_state SET score = 9", 1)
        assert forged != sql
        hostile(finished, forged)
    else:
        what = "trigger project_ScoreRecorded"
        sql = one(finished, "SELECT sql FROM sqlite_master WHERE name = 'project_ScoreRecorded'")[0]
        forged = sql.replace("score = json_extract(NEW.payload, '$.score')", "score = 9", 1)
        assert forged != sql
        hostile(finished, "DROP TRIGGER project_ScoreRecorded", forged)
    code, _out, err = cli("verify", "--full", "--db", str(finished))
    assert code == 1
    assert f"verify failed: schema: {what} differs from what migration {ddb.head_revision()} created" in err
    code, _out, err = cli("projections", "rebuild", "--db", str(finished))
    assert code == 1 and f"the schema was altered: {what} differs" in err
    assert one(finished, "SELECT COUNT(*) FROM gen_state WHERE score = 9 AND stage = 'evaluation'")[0] == \
        one(finished, "SELECT COUNT(*) FROM events WHERE type = 'ScoreRecorded' "
                      "AND CAST(json_extract(payload, '$.score') AS REAL) = 9")[0]


def test_a_dropped_guard_alone_shows_in_verify_full(finished: str) -> None:
    if is_pg(finished):
        hostile(finished, "DROP TRIGGER events_no_update ON events",
                "CREATE FUNCTION sneaky() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
                "CREATE TRIGGER sneaky AFTER INSERT ON texts FOR EACH ROW EXECUTE FUNCTION sneaky()")
    else:
        hostile(finished, "DROP TRIGGER events_no_update",
                "CREATE TRIGGER sneaky AFTER INSERT ON texts BEGIN SELECT 1; END")
    code, _out, err = cli("verify", "--full", "--db", str(finished))
    assert code == 1
    assert "verify failed: schema: trigger events_no_update is missing" in err
    assert "verify failed: schema: trigger sneaky on texts was not created by daydream's migrations" in err


def test_upgrading_an_old_ledger_stores_its_current_head(tmp_path: Path) -> None:
    # SQLite only: a PostgreSQL ledger is never at a revision before 0011 (see the module docstring).
    from alembic import command

    path = tmp_path / "old.db"
    backend = ddb.create_backend(path, create=True)
    with ddb.schema_connection(backend) as conn:
        command.upgrade(ddb._alembic_config(conn), "0005_llm_calls_by_stream")
        conn.commit()
    old = Ledger(path, backend)
    stored = old.append([NewEvent("s", "ThingHappened", {"i": i}) for i in range(5)])
    assert old.check_integrity().head is None  # nothing to compare with before 0006
    backend.close()
    upgraded = Ledger.open(path)
    assert upgraded.check_integrity().head == (5, stored[-1].hash)
    upgraded.append([NewEvent("s", "ThingHappened", {"i": 5})])
    assert upgraded.check_integrity().head[0] == 6
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == ddb.APPLICATION_ID
