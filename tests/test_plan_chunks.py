"""Plans in several transactions (issue 15, migration 0013): staged, invisible until complete, resumable.

A plan bigger than ``transaction_events`` is appended between a ``PlanStarted`` and the
``CohortPlanned`` that completes it, each part in its own write transaction. These tests check, on
SQLite and PostgreSQL, that it ends exactly as a plan appended in one transaction does (rows,
counters, views); that while it is open no reader sees any of it; that a plan killed part way
(a real process, SIGKILL, between two of its transactions) stays invisible and is resumed by
planning the same spec again, giving what an uninterrupted plan gives; that another spec
supersedes it; and that a process whose plan was taken over stops with a clear error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daydream.design.catalog import repo_catalog_dir
from daydream.design.planner import list_cohorts, plan_cohort, show_cohort
from daydream.errors import NotFound, PlanTakenOver
from daydream.ledger import events as ev
from daydream.ledger.store import Ledger
from daydream.read import score_table, views
from daydream.run.pending import PENDING_SQL, pending_calls_by_model, pending_counts
from tests.pg_fixtures import ledger_url, pg_server, pg_template, pg_url  # noqa: F401
from tests.runner_fixtures import run_cli, subprocess_env

DEMO = repo_catalog_dir().parent / "cohorts" / "demo.yaml"  # 88 generations, 89 events planned alone
PART = 20  # events per transaction in these tests: the demo plan (97 events staged) takes 5

VISIBLE = "(plan_id IS NULL OR plan_id NOT IN (SELECT plan_id FROM open_plans))"
# Projection rows (those no open plan staged) compared between two ledgers: without the seqs, which differ with the events
# before them (a resumed plan has one PlanStarted more).
STATE = ("SELECT gen_id, stage, parent_gen_id, combo_id, template_id, template_hash, generator, parser, model_id, "
         "replicate, origin_cohort_id, imported, attempt, status, calls, failed_calls FROM gen_state "
         f"WHERE {VISIBLE} ORDER BY gen_id")
MEMBERS = f"SELECT cohort_id, gen_id, stage FROM cohort_members WHERE {VISIBLE} ORDER BY cohort_id, gen_id"
# Rows an open plan staged: invisible to every reader.
STAGED = "SELECT COUNT(*) FROM gen_state WHERE plan_id IN (SELECT plan_id FROM open_plans)"
COUNTERS = ("SELECT cohort_id, stage, model_key, generations, completed, failed, running, calls FROM cohort_totals "
            "WHERE generations != 0 ORDER BY 1, 2, 3")
PROGRESS = "SELECT cohort_id, stage, planned, completed, failed, pending, blocked FROM cohort_progress ORDER BY 1, 2"
VIEW_COUNTS = {name: f"SELECT COUNT(*) FROM {name}" for name in
               ("generations", "cohort_membership", "scores", "evaluator_agreement", "cohort_progress", "spend")}


def projection(ledger: Ledger) -> dict[str, list]:
    out = {"state": ledger.query(STATE), "members": ledger.query(MEMBERS), "counters": ledger.query(COUNTERS),
           "progress": ledger.query(PROGRESS)}
    out.update({name: ledger.query(sql) for name, sql in VIEW_COUNTS.items()})
    return out


def invisible(ledger: Ledger) -> None:
    """No reader shows a generation or a cohort: runner, views, status, cohort listing."""
    for name, sql in VIEW_COUNTS.items():
        assert ledger.query(sql) == [(0,)], name
    assert pending_counts(ledger) == {} and pending_calls_by_model(ledger) == {}
    assert ledger.query(PENDING_SQL.format(cohort=""), {"stage": "draft", "after": "", "limit": 10}) == []
    assert views.cohort_status(ledger, None) == [] and views.cohort_ids(ledger) == []
    assert list_cohorts(ledger) == []
    with pytest.raises(NotFound):
        show_cohort(ledger, "demo")


def test_a_plan_in_several_transactions_ends_as_one_in_one_transaction(ledger_url: str, tmp_path: Path,  # noqa: F811
                                                                        ) -> None:
    chunked = Ledger.open(ledger_url)
    result = plan_cohort(chunked, DEMO, transaction_events=PART)
    assert result.plan_id and result.transactions == 5 and not result.resumed
    started = chunked.events(type=ev.PLAN_STARTED)
    assert [e.payload["events"] for e in started] == [result.events - 1]
    assert {e.payload.get("plan_id") for e in chunked.events(type=ev.GENERATION_PLANNED)} == {result.plan_id}
    assert chunked.events(type=ev.COHORT_PLANNED)[-1].payload["plan_id"] == result.plan_id

    whole = Ledger.init(tmp_path / "whole.db")[0]
    alone = plan_cohort(whole, DEMO)
    assert alone.plan_id is None and alone.transactions == 1 and not whole.events(type=ev.PLAN_STARTED)
    assert result.counts == alone.counts and result.events == alone.events + 1
    assert projection(chunked) == projection(whole)
    assert chunked.query(STAGED) == [(0,)] and chunked.query("SELECT COUNT(*) FROM open_plans") == [(0,)]
    assert chunked.query("SELECT COUNT(*) FROM plan_totals") == chunked.query("SELECT COUNT(*) FROM plan_links")
    assert pending_counts(chunked) == pending_counts(whole)
    chunked.verify()

    # Planned again, unchanged: nothing to append, as after a plan in one transaction.
    assert plan_cohort(chunked, DEMO, transaction_events=PART).events == 0
    # Another cohort of the same spec links everything, staged too: the links and their counters
    # appear with its CohortPlanned, as they do in one transaction.
    linked = plan_cohort(chunked, DEMO, cohort_id="again", transaction_events=PART)
    plan_cohort(whole, DEMO, cohort_id="again")
    assert linked.plan_id and sum(c["linked"] for c in linked.counts.values()) == 88
    assert projection(chunked) == projection(whole)


def test_counters_added_at_completion_are_those_recomputed_from_the_rows(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    plan_cohort(ledger, DEMO, transaction_events=PART)
    done = run_cli("run", "--db", str(ledger.path), "--cohort", "demo")
    assert done.returncode == 0, done.stderr
    # The finished, scored generations join a second cohort through a staged plan's links.
    plan_cohort(ledger, DEMO, cohort_id="reused", transaction_events=PART)
    tables = ("cohort_totals", "cohort_essay_scores", "cohort_scales")
    kept = {t: ledger.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables}
    assert ledger.query("SELECT SUM(n) FROM cohort_essay_scores WHERE cohort_id = 'reused'") == [(64,)]
    views.refresh_read_projections(ledger)
    assert {t: ledger.query(f"SELECT * FROM {t} ORDER BY 1, 2") for t in tables} == kept


# ----------------------------------------------------------------------------- killed part way
# Plans the demo cohort 20 events per transaction and is killed (SIGKILL, by itself: no chance to
# clean up) right after its third transaction committed.
CHILD = textwrap.dedent("""\
    import os, signal, sys
    from daydream.design.planner import plan_cohort
    from daydream.ledger.store import Ledger

    def progress(phase, done, total):
        if phase == "appending" and done >= 60:
            print("killed after", done, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    plan_cohort(Ledger.open(sys.argv[1]), sys.argv[2], transaction_events=20, progress=progress)
    print("finished", flush=True)
""")


def kill_mid_plan(db: str, folder: Path) -> None:
    child = folder / "plan_and_die.py"
    child.write_text(CHILD)
    done = subprocess.run([sys.executable, str(child), db, str(DEMO)], capture_output=True, text=True,
                          env=subprocess_env(), cwd=Path(__file__).parent.parent, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout.startswith("killed after 60"), done.stdout


def test_a_plan_killed_between_transactions_stays_invisible_and_planning_again_resumes_it(
        ledger_url: str, tmp_path: Path) -> None:  # noqa: F811
    kill_mid_plan(ledger_url, tmp_path)
    ledger = Ledger.open(ledger_url)
    assert ledger.count() == 60 and len(ledger.events(type=ev.GENERATION_PLANNED)) > 40  # in the ledger
    invisible(ledger)  # and seen by nobody
    assert ledger.query(STAGED)[0][0] > 40
    if not ledger_url.startswith("postgres"):
        status = run_cli("status", "--db", ledger_url, "--json")
        assert status.returncode == 0 and '"cohorts": {}' in status.stdout, status.stdout + status.stderr
    ledger.verify()

    result = plan_cohort(ledger, DEMO, transaction_events=PART)
    assert result.resumed and result.plan_id == ledger.events(type=ev.PLAN_STARTED)[0].payload["plan_id"]
    # Each generation planned once: what the dead process appended is not appended again.
    planned = [e.payload["gen_id"] for e in ledger.events(type=ev.GENERATION_PLANNED)]
    assert len(planned) == len(set(planned)) == 88
    assert [e.payload["resumed"] for e in ledger.events(type=ev.PLAN_STARTED)] == [False, True]

    reference = Ledger.init(tmp_path / "reference.db")[0]
    uninterrupted = plan_cohort(reference, DEMO, transaction_events=PART)
    assert result.counts == uninterrupted.counts
    final = ledger.events(type=ev.COHORT_PLANNED)[-1].payload
    assert {k: final[k] for k in ("planned", "linked", "spec_version")} == {
        k: reference.events(type=ev.COHORT_PLANNED)[-1].payload[k] for k in ("planned", "linked", "spec_version")}
    assert projection(ledger) == projection(reference)
    assert pending_counts(ledger)["draft"]["ready"] == 8
    ledger.verify()


def test_another_spec_supersedes_a_plan_killed_part_way(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    Ledger.init(db)
    kill_mid_plan(str(db), tmp_path)
    # The same cohort with one evaluation replicate instead of two.
    smaller = tmp_path / "demo.yaml"
    smaller.write_text(DEMO.read_text().replace("evaluation_replicate: 2", "evaluation_replicate: 1"))
    assert smaller.read_text() != DEMO.read_text()
    ledger = Ledger.open(db)
    result = plan_cohort(ledger, smaller, cohort_id="demo", transaction_events=PART)
    assert result.plan_id and not result.resumed

    reference = Ledger.init(tmp_path / "reference.db")[0]
    plan_cohort(reference, smaller, cohort_id="demo")
    visible = "SELECT gen_id, stage, status FROM generations ORDER BY gen_id"
    assert ledger.query(visible) == reference.query(visible)
    assert ledger.query(PROGRESS) == reference.query(PROGRESS)
    assert ledger.query("SELECT cohort_id, gen_id FROM cohort_membership ORDER BY 2") == \
        reference.query("SELECT cohort_id, gen_id FROM cohort_membership ORDER BY 2")
    assert pending_counts(ledger) == pending_counts(reference)
    # What the dead plan staged and the new one does not want stays in the ledger, unseen.
    assert ledger.query(STAGED)[0][0] > 0
    ledger.verify()


def test_a_plan_taken_over_by_another_process_stops_with_a_clear_error(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    taken = False

    def take_over(phase: str, done: int, total: int) -> None:
        # After this process's first transaction, another one plans the same spec: it resumes the
        # open plan and finishes it.
        nonlocal taken
        if phase == "appending" and not taken:
            taken = True
            other = Ledger.open(ledger.path)
            assert plan_cohort(other, DEMO, transaction_events=PART).resumed

    with pytest.raises(PlanTakenOver, match="cohort 'demo' was taken over"):
        plan_cohort(ledger, DEMO, transaction_events=PART, progress=take_over)
    reference = Ledger.init(tmp_path / "reference.db")[0]
    plan_cohort(reference, DEMO, transaction_events=PART)
    assert projection(ledger) == projection(reference)
    ledger.verify()


class Stop(Exception):
    """Stands for whatever makes a plan fail between two of its transactions."""


def test_a_bigger_spec_failing_part_way_leaves_the_cohort_as_it_was(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    plan_cohort(ledger, DEMO)  # version 1, in one transaction
    before = projection(ledger)
    report_rows = ledger.query(score_table.EVALUATIONS_SQL, ("demo",))
    bigger = tmp_path / "demo.yaml"
    bigger.write_text(DEMO.read_text().replace("evaluation_replicate: 2", "evaluation_replicate: 3"))

    def fail(phase: str, done: int, total: int) -> None:
        if phase == "appending":
            raise Stop

    with pytest.raises(Stop):
        plan_cohort(ledger, bigger, cohort_id="demo", transaction_events=PART, progress=fail)
    assert ledger.query(STAGED)[0][0] > 0  # the new evaluations are in, staged
    assert projection(ledger) == before and ledger.query(score_table.EVALUATIONS_SQL, ("demo",)) == report_rows
    assert list_cohorts(ledger)[0]["spec_version"] == 1

    # Planned again, the bigger spec resumes: version 2 as if it had never stopped.
    assert plan_cohort(ledger, bigger, cohort_id="demo", transaction_events=PART).resumed
    reference = Ledger.init(tmp_path / "reference.db")[0]
    plan_cohort(reference, DEMO)
    plan_cohort(reference, bigger, cohort_id="demo")
    assert projection(ledger) == projection(reference)
    assert list_cohorts(ledger)[0]["spec_version"] == 2
