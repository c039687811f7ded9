"""`daydream projections check|rebuild`: the projections are a function of the events.

On a SQLite file and on a PostgreSQL database (``ledger_url``, issue 17): check and rebuild are
supported on both, read the same drift and repair it the same way. That both backends project the
same events into the same rows is tests/test_pg_projections.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.ledger import projections
from daydream.cli import cli
from daydream.ledger.store import Ledger
from daydream.transfer.copy import copy_ledger
from tests.pg_fixtures import raw, raw_rows
from tests.read_fixtures import build_fixture

TABLES = projections.TABLES
EXAMPLE = Path(__file__).resolve().parents[1] / "ledger.db.example"


def _dump(db: str | Path) -> dict[str, list[tuple]]:
    out = {t: raw_rows(db, f"SELECT * FROM {t} ORDER BY 1, 2, 3") for t in TABLES}
    out["events"] = raw_rows(db, "SELECT seq, hash FROM events ORDER BY seq")
    return out


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def fixture_path(ledger_url: str) -> str:
    """The read-side fixture's cohorts in a fresh ledger on each backend (its path or URL)."""
    ledger = Ledger.open(ledger_url)
    build_fixture(ledger)
    ledger.close()
    return ledger_url


@pytest.fixture(params=["sqlite", "postgres"])
def example_copy(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The shipped example (a finished demo cohort) as a file, or copied into an empty PostgreSQL database."""
    copy = tmp_path / "demo.db"
    shutil.copy(EXAMPLE, copy)
    if request.param == "sqlite":
        return str(copy)
    url = request.getfixturevalue("pg_empty_url")
    copy_ledger(str(copy), url)
    return url


def test_check_is_clean_on_a_real_run_and_changes_nothing(example_copy: str) -> None:
    copy = example_copy
    before = _dump(copy)
    code, out, err = _run("projections", "check", "--db", str(copy))
    assert (code, err) == (0, "") and out.startswith("ok: projections match a rebuild from ")
    assert _dump(copy) == before
    code, out, _ = _run("projections", "check", "--db", str(copy), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["rows"]["gen_state"] == len(before["gen_state"]) > 0


def test_check_names_a_drifted_table_and_rebuild_repairs_it(fixture_path: str) -> None:
    before = _dump(fixture_path)
    raw(fixture_path, "UPDATE gen_state SET score = 0 WHERE gen_id = 'v_1a1'",  # hand edits: a score changed,
        "DELETE FROM cohort_members WHERE gen_id = 'e_two'")                   # a membership lost
    code, out, err = _run("projections", "check", "--db", str(fixture_path))
    assert code == 1 and out == ""
    assert "drift: gen_state: 1 row(s) missing, 1 row(s) that the events do not give (gen_id v_1a1)" in err
    assert "drift: cohort_members: 1 row(s) missing" in err
    assert "drift: cohort_essay_scores" in err  # the read-side counters followed the bad edits
    assert "projections rebuild" in err

    code, out, err = _run("projections", "rebuild", "--db", str(fixture_path))
    assert code == 0 and err == ""
    assert "repaired gen_state: 1 row(s) missing" in out and "rebuilt from " in out
    assert _dump(fixture_path) == before  # exactly the projections the appends had made; events untouched
    assert _run("projections", "check", "--db", str(fixture_path))[0] == 0
    assert Ledger.open(fixture_path).verify()[0] == len(before["events"])


def test_rebuild_of_an_intact_ledger_reports_nothing_to_repair(fixture_path: str) -> None:
    before = _dump(fixture_path)
    outcome = projections.rebuild(Ledger.open(fixture_path))
    assert outcome.drift == [] and outcome.rows["gen_state"] == len(before["gen_state"])
    assert _dump(fixture_path) == before


def test_projections_help_and_bad_db(tmp_path: Path) -> None:  # a missing file: SQLite's case
    for args in (["projections", "--help"], ["projections", "check", "--help"],
                 ["projections", "rebuild", "--help"]):
        code, out, _ = _run(*args)
        assert code == 0 and "Usage:" in out
    code, out, err = _run("projections", "rebuild", "--db", str(tmp_path / "none.db"))
    assert code != 0 and "none.db" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "none.db").exists()
