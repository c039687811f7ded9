"""Planning large cohorts in flat memory: rows made on demand, batches, and an all-or-nothing append.

A plan is worked out batch by batch through a scratch database and appended in batches inside one
write transaction. These tests check that the batching changes nothing in what is appended, that a
plan killed part way through its append (a real process, SIGKILL) leaves nothing any reader can
see, and that planning again then gives the very same generations. The all-or-nothing append
(a conflict in a late batch, a kill mid-append) is ledger behaviour and runs on a SQLite file and on
a PostgreSQL database (``ledger_url``, issue 17).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daydream.design import planner
from daydream.design.catalog import load_catalog, repo_catalog_dir
from daydream.design.planner import list_cohorts, plan_cohort
from daydream.design.spec_compile import design_rows
from daydream.design.spec_dsl import load_spec
from daydream.errors import ConcurrencyConflict
from daydream.ledger import events as ev
from daydream.ledger.store import Ledger, NewEvent
from daydream.run.pending import pending_counts
from tests.runner_fixtures import daydream_cmd, run_cli, subprocess_env

DEMO = repo_catalog_dir().parent / "cohorts" / "demo.yaml"


def shuffled_study(folder: Path, replicates: int = 2) -> Path:
    """A few thousand generations over every 3 of the starter concepts, rows shuffled by a seed."""
    concepts = ", ".join(sorted(load_catalog().concepts))
    path = folder / "study.yaml"
    path.write_text(f"""\
combos: {{concepts: [{concepts}], k: 3, level: paragraph}}
axes:
  draft_template: [bridge-essay-draft, staged-idea-thread]
  draft_llm: [offline]
  essay_template: [focused-essay, copy-draft]
  essay_llm: [offline]
  evaluation_template: [originality-rubric, clarity-rubric]
  evaluation_llm: [offline]
  evaluation_replicate: {replicates}
output:
  seed: 11
""")
    return path


def appended(ledger: Ledger) -> list[tuple]:
    """The ledger's events without their time and hashes (which differ from run to run)."""
    return [(e.seq, e.stream, e.version, e.type, e.payload, e.causation_seq) for e in ledger.events()]


def planned_ids(ledger: Ledger) -> list[str]:
    return [e.payload["gen_id"] for e in ledger.events(type=ev.GENERATION_PLANNED)]


def nothing_visible(ledger: Ledger, events_before: int) -> None:
    """No reader can tell a plan was attempted: no new event, no generation, cohort or pending work."""
    assert ledger.count() == events_before
    assert ledger.query("SELECT COUNT(*) FROM gen_state") == [(0,)]
    assert ledger.query("SELECT COUNT(*) FROM cohort_members") == [(0,)]
    assert ledger.query("SELECT COUNT(*) FROM cohort_progress") == [(0,)]
    assert pending_counts(ledger) == {}
    assert list_cohorts(ledger) == []


# ----------------------------------------------------------------------------- rows on demand
@pytest.mark.parametrize("seed", [None, 1, 20260101])
def test_design_rows_come_in_the_order_of_shuffling_the_whole_list(tmp_path: Path, seed: int | None) -> None:
    spec_path = tmp_path / "grid.yaml"
    output = "output:\n  field_order: [draft_llm, combo_id]\n" + (f"  seed: {seed}\n" if seed is not None else "")
    spec_path.write_text("axes:\n  combo_id: [c1, c2, c3, c4, c5]\n  draft_template: [t1, t2, t3]\n"
                         "  draft_llm: [m1, m2]\n" + output)
    # The rows as a list, built here independently, shuffled the way a list is.
    expected = [{"draft_llm": m, "combo_id": c, "draft_template": t} for c, t, m in itertools.product(
        ["c1", "c2", "c3", "c4", "c5"], ["t1", "t2", "t3"], ["m1", "m2"])]
    if seed is not None:
        random.Random(seed).shuffle(expected)
    rows = design_rows(load_spec(spec_path))
    assert len(rows) == 30
    assert [list(r.items()) for r in rows] == [list(r.items()) for r in expected]
    assert list(rows) == list(rows)  # every iteration makes the same rows again


# ----------------------------------------------------------------------------- batching
def test_batch_sizes_change_nothing_in_the_appended_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = shuffled_study(tmp_path)
    whole = Ledger.init(tmp_path / "whole.db")[0]
    result = plan_cohort(whole, spec)
    assert sum(c["new"] for c in result.counts.values()) == 364 * (2 + 4 + 16)

    # Tiny batches everywhere: 13 rows per planning batch, 7 events per append batch.
    monkeypatch.setattr(planner, "ROWS_PER_BATCH", 13)
    small = Ledger.init(tmp_path / "small.db")[0]
    assert plan_cohort(small, spec, chunk_events=7).as_dict() == result.as_dict()
    assert appended(small) == appended(whole)
    state = "SELECT * FROM gen_state ORDER BY gen_id"
    assert small.query(state) == whole.query(state)
    assert small.query("SELECT * FROM cohort_members ORDER BY gen_id") == \
        whole.query("SELECT * FROM cohort_members ORDER BY gen_id")
    small.verify()


def test_a_conflict_in_a_late_batch_appends_nothing_of_the_plan(ledger_url: str, tmp_path: Path,
                                                                 request: pytest.FixtureRequest) -> None:
    """The plan's last generation's stream is taken by another event: the plan's batches before it
    are rolled back with it, so the ledger holds exactly what it held before."""
    reference = Ledger.init(tmp_path / "reference.db")[0]
    plan_cohort(reference, DEMO)
    last_gen = planned_ids(reference)[-1]

    ledger = Ledger.open(ledger_url)
    ledger.append([NewEvent(ev.gen_stream(last_gen), "NoteRecorded", {"note": "in the way"}, expected_version=0)])
    with pytest.raises(ConcurrencyConflict):
        plan_cohort(ledger, DEMO, chunk_events=10)
    nothing_visible(ledger, events_before=1)
    ledger.verify()


# ----------------------------------------------------------------------------- killed part way
# Plans the demo cohort in batches of 10 events and stops for good after the third batch is
# inserted, inside the append's write transaction: the parent kills it there with SIGKILL.
CHILD = textwrap.dedent("""\
    import sys, time
    from daydream.design.planner import plan_cohort
    from daydream.ledger.store import Ledger

    real = Ledger._append_in
    batches = 0

    def append_in(self, cur, events, text_rows):
        global batches
        stored = real(self, cur, events, text_rows)
        batches += 1
        if batches == 3:
            print("mid-append", stored[0][-1].seq, flush=True)
            time.sleep(600)
        return stored

    Ledger._append_in = append_in
    plan_cohort(Ledger.open(sys.argv[1]), sys.argv[2], chunk_events=10)
    print("finished", flush=True)
""")


def test_a_plan_killed_mid_append_leaves_nothing_visible_and_planning_again_gives_the_same_ids(
        ledger_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    db = ledger_url
    child = tmp_path / "plan_and_stop.py"
    child.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(child), str(db), str(DEMO)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env(), cwd=Path(__file__).parent.parent)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("mid-append"), (line, proc.stderr.read() if proc.stderr else "")
        assert int(line.split()[1]) >= 30  # three batches are in the (uncommitted) transaction
        ledger = Ledger.open(db)
        # While the plan is half appended, readers see none of it.
        nothing_visible(ledger, events_before=0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    ledger = Ledger.open(db)
    nothing_visible(ledger, events_before=0)
    status = run_cli("status", "--db", str(db), "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"cohorts": {}}
    assert run_cli("verify", "--db", str(db)).returncode == 0

    # Planning again works and plans exactly what an undisturbed plan does.
    again = subprocess.run(daydream_cmd("cohort", "plan", str(DEMO), "--db", str(db)), capture_output=True,
                           text=True, env=subprocess_env(), timeout=120)
    assert again.returncode == 0, again.stderr
    reference = Ledger.init(tmp_path / "reference.db")[0]
    plan_cohort(reference, DEMO)
    ledger = Ledger.open(db)
    assert planned_ids(ledger) == planned_ids(reference) and len(planned_ids(ledger)) == 88
    assert [e[1:] for e in appended(ledger)] == [e[1:] for e in appended(reference)]
    assert pending_counts(ledger)["draft"]["ready"] == 8
    assert run_cli("verify", "--db", str(db)).returncode == 0


def test_progress_says_rows_planned_then_events_appended(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planner, "ROWS_PER_BATCH", 10)
    seen: list[tuple[str, int, int]] = []
    result = plan_cohort(ledger, DEMO, chunk_events=10, progress=lambda *step: seen.append(step))
    planning = [s for s in seen if s[0] == "planning"]
    appending = [s for s in seen if s[0] == "appending"]
    assert seen == planning + appending
    assert [done for _, done, _ in planning] == [10, 20, 30, 40, 50, 60, 64]
    assert {total for _, _, total in planning} == {64}
    assert [done for _, done, _ in appending] == list(range(10, 91, 10)) + [96]
    assert {total for _, _, total in appending} == {result.events} == {ledger.count()}
