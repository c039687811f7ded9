"""Every command on a PostgreSQL ledger (issue 17): the same session of real CLI processes on a
SQLite file and on a PostgreSQL database — init, cohort plan, run (offline model), status,
report, compare, rerun, reparse, show, events, verify --full, backup — and an import of a
Dagster data root, must agree: the same events (but for their times and hashes), the same
status, the same report tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.dagster_root import build_dagster_root
from tests.pg_fixtures import pg_empty_url, pg_server  # noqa: F401
from tests.runner_fixtures import pipeline_spec, run_cli, write_spec


def ok(*args: str) -> str:
    done = run_cli(*args, timeout=300)
    assert done.returncode == 0, (args, done.stderr[-2000:])
    return done.stdout


def by_stream(events: list[dict]) -> dict[str, list[str]]:
    streams: dict[str, list[str]] = {}
    for e in sorted(events, key=lambda e: e["seq"]):
        streams.setdefault(e["stream"], []).append(e["type"])
    return streams


def session(db: str, tmp: Path, name: str) -> dict[str, object]:
    spec = write_spec(tmp, "c", pipeline_spec(n_combos=2, model="offline", eval_replicates=2))
    ok("init", "--db", db)
    ok("cohort", "plan", str(spec), "--cohort-id", "c", "--db", db)
    ok("run", "--db", db)
    status = json.loads(ok("status", "c", "--json", "--db", db))
    out = tmp / f"report-{name}"
    ok("report", "c", "--out", str(out), "--db", db)
    rankings = list(csv.reader((out / "rankings.csv").open()))
    compared = ok("compare", "c", "--by", "evaluation_replicate", "--db", db)
    ok("rerun", "--cohort", "c", "--failed", "--db", db)
    reparsed = ok("reparse", "--cohort", "c", "--db", db)
    events = [json.loads(line) for line in ok("events", "--json", "--db", db).splitlines() if line.strip()]
    some_gen = next(e["payload"]["gen_id"] for e in events if e["type"] == "ResponseParsed")
    shown = ok("show", some_gen, "--db", db)
    verified = ok("verify", "--full", "--db", db)
    backup = tmp / f"backup-{name}.db"
    ok("backup", str(backup), "--db", db)
    return {"status": status, "rankings": rankings, "compared": compared, "reparsed": reparsed,
            # A run's concurrent generations interleave differently from run to run: each stream's
            # events, in order, are what must agree.
            "events": by_stream(events), "shown": shown,
            "verified": verified, "backup": backup}


def test_a_cohort_session_gives_the_same_results_on_both(pg_empty_url: str, tmp_path: Path) -> None:
    lite = session(str(tmp_path / "ledger.db"), tmp_path, "sqlite")
    pg = session(pg_empty_url, tmp_path, "pg")
    assert lite["events"] == pg["events"] and sum(map(len, pg["events"].values())) > 50
    assert lite["status"] == pg["status"]
    assert lite["rankings"] == pg["rankings"] and len(pg["rankings"]) > 2
    assert lite["compared"] == pg["compared"]
    assert lite["reparsed"] == pg["reparsed"]
    assert "--- events ---" in pg["shown"]
    assert pg["verified"].startswith("ok: ") and "append-only guards" in pg["verified"]
    assert run_cli("verify", "--db", str(pg["backup"])).returncode == 0


def test_importing_a_dagster_root_gives_the_same_ledger_on_both(pg_empty_url: str, tmp_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=2, evaluation_replicates=2)
    lite = str(tmp_path / "ledger.db")
    for db in (lite, pg_empty_url):
        ok("init", "--db", db)
        ok("import", "dagster", str(built.root), "--db", db)
        before = len(ok("events", "--json", "--db", db).splitlines())
        ok("import", "dagster", str(built.root), "--db", db)  # the same root again: nothing new
        assert len(ok("events", "--json", "--db", db).splitlines()) == before
    events = [[(e["seq"], e["stream"], e["type"]) for e in map(json.loads, ok("events", "--json", "--db", db).splitlines())]
              for db in (lite, pg_empty_url)]
    assert events[0] == events[1] and len(events[0]) > 5
    status = [json.loads(ok("status", "--json", "--db", db)) for db in (lite, pg_empty_url)]
    assert status[0] == status[1]
