"""The read-side views on an empty ledger and on a tiny hand-built cohort whose numbers we know.

The cohort comes from ``tests.read_fixtures``; every expected number below is worked out by hand
in the comments there and here. Every view, status and show test runs on a SQLite file and on a
PostgreSQL database (``ledger`` takes ``ledger_url``, issue 17); only query plans and upgrades from
old revisions are SQLite's (``sqlite_fixture_ledger``, ``tmp_path``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from daydream.ledger.backend import column_names
from daydream.read import views
from daydream.ledger.store import Ledger, NewEvent
from tests.read_fixtures import COHORT, COHORT2, ESSAY_ONE, build_fixture, demo_ledger, import_unpriced


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # conftest's SQLite-only fixture, on both backends here
    """A fresh ledger on SQLite and on PostgreSQL (issue 17)."""
    return Ledger.open(ledger_url)


@pytest.fixture
def fixture_ledger(ledger: Ledger) -> Ledger:
    build_fixture(ledger)
    return ledger


@pytest.fixture
def sqlite_fixture_ledger(ledger_path: Path) -> Ledger:
    """The fixture's cohorts in a SQLite file, for what only SQLite has (query plans, old revisions)."""
    ledger = Ledger.open(ledger_path)
    build_fixture(ledger)
    return ledger


def rows(ledger: Ledger, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    with ledger.backend.read() as conn:
        cursor = conn.execute(sql, params)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r)) for r in cursor.fetchall()]


# ------------------------------------------------------------------------------------------- tests
def test_every_view_exists_is_documented_and_answers_on_an_empty_ledger(ledger: Ledger) -> None:
    if ledger.backend.name == "postgresql":
        # PostgreSQL keeps a view's parsed form, not its text: the SQL comments are SQLite's to show.
        created = {r["name"]: None for r in rows(ledger, "SELECT table_name AS name FROM information_schema.views "
                                                          "WHERE table_schema = current_schema()")}
    else:
        created = {r["name"]: r["sql"] for r in rows(ledger, "SELECT name, sql FROM sqlite_master WHERE type='view'")}
    assert set(views.VIEWS) <= set(created)
    for name, doc in views.VIEWS.items():
        if created[name] is not None:
            assert "-- " in created[name], f"view {name} has no SQL comment"
        assert rows(ledger, f"SELECT * FROM {name}") == []
        columns = _columns(ledger, name)
        assert columns == list(doc.columns), f"columns of {name} differ from their documentation"
        assert all(doc.columns.values()), f"a column of {name} has no description"


def _columns(ledger: Ledger, name: str) -> list[str]:
    """A view's column names, in order (from the cursor, so the same on both backends)."""
    with ledger.backend.read() as conn:
        return column_names(conn.execute(f"SELECT * FROM {name} WHERE 1 = 0"))


def test_generations_resolve_texts_and_mark_blocked_work(fixture_ledger: Ledger) -> None:
    by_id = {r["gen_id"]: r for r in rows(fixture_ledger, "SELECT * FROM generations")}
    assert len(by_id) == 14
    assert by_id["e_one"]["parsed"] == ESSAY_ONE
    assert by_id["e_one"]["response"] == ESSAY_ONE
    assert by_id["e_one"]["prompt"] == "Prompt for e_one attempt 1"
    assert by_id["d_three"]["status"] == "failed"
    assert by_id["d_three"]["error"] == "draft has no <links> block"
    assert by_id["e_three"]["status"] == "planned" and by_id["e_three"]["blocked"] == 1
    assert by_id["v_2b2"]["blocked"] == 0
    # d_two: one failed try then a completed one.
    assert (by_id["d_two"]["calls"], by_id["d_two"]["failed_calls"]) == (2, 1)
    # v_1b1 is on its second attempt, which scored 9; both attempts' calls were paid.
    assert by_id["v_1b1"]["attempt"] == 2 and by_id["v_1b1"]["score"] == 9.0
    assert by_id["v_1b1"]["cost_usd"] == pytest.approx(0.001)


def test_cohort_membership_tells_planned_from_linked(fixture_ledger: Ledger) -> None:
    got = rows(fixture_ledger, "SELECT cohort_id, stage, gen_id, joined_as FROM cohort_membership "
                               "WHERE cohort_id = ? ORDER BY gen_id", (COHORT2,))
    assert [(r["gen_id"], r["joined_as"]) for r in got] == [
        ("d_one", "linked"), ("e_one", "linked"), ("v_1a1", "linked")]
    assert rows(fixture_ledger, "SELECT COUNT(*) AS n FROM cohort_membership WHERE cohort_id = ?",
                (COHORT,))[0]["n"] == 14


def test_cohort_progress_counts_by_stage(fixture_ledger: Ledger) -> None:
    got = {r["stage"]: r for r in rows(fixture_ledger, "SELECT * FROM cohort_progress WHERE cohort_id = ?",
                                       (COHORT,))}
    pick = ("planned", "completed", "failed", "running", "pending", "blocked", "calls")
    assert {s: tuple(got[s][k] for k in pick) for s in got} == {
        # d_one 1 call, d_two 2 calls (one failed), d_three 1 call
        "draft": (3, 2, 1, 0, 0, 0, 4),
        # e_three waits on the failed d_three: pending and blocked
        "essay": (3, 2, 0, 0, 1, 1, 2),
        # 8 planned: 6 scored (v_1b1 after a retry: 2 calls), v_2b1 parse failed, v_2b2 pending
        "evaluation": (8, 6, 1, 0, 1, 0, 8),
    }
    # 3 draft calls at $0.001, 2 essays at $0.002, 8 evaluation calls at $0.0005
    assert got["draft"]["cost_usd"] == pytest.approx(0.003)
    assert got["essay"]["cost_usd"] == pytest.approx(0.004)
    assert got["evaluation"]["cost_usd"] == pytest.approx(0.004)
    # tokens: 150 per completed call (failed tries carry none)
    assert got["evaluation"]["tokens"] == 8 * 150


def test_scores_give_each_evaluation_with_its_parse_status(fixture_ledger: Ledger) -> None:
    got = {r["evaluation_gen_id"]: r for r in rows(fixture_ledger, "SELECT * FROM scores")}
    assert {g: (r["essay_gen_id"], r["rubric"], r["evaluator"], r["replicate"], r["score"], r["parse_status"])
            for g, r in got.items()} == {
        "v_1a1": ("e_one", "rubric_a", "ev1", 1, 8.0, "parsed"),
        "v_1a2": ("e_one", "rubric_a", "ev2", 1, 7.0, "parsed"),
        "v_1a3": ("e_one", "rubric_a", "ev1", 2, 9.0, "parsed"),
        "v_1b1": ("e_one", "rubric_b", "ev1", 1, 9.0, "parsed"),
        "v_2a1": ("e_two", "rubric_a", "ev1", 1, 5.0, "parsed"),
        "v_2a2": ("e_two", "rubric_a", "ev2", 1, 6.0, "parsed"),
        "v_2b1": ("e_two", "rubric_b", "ev1", 1, None, "parse_failed"),
        "v_2b2": ("e_two", "rubric_b", "ev2", 1, None, "pending"),
    }
    assert got["v_2b1"]["parse_error"] == "no SCORE line"


def test_essay_scores_aggregate_per_rubric(fixture_ledger: Ledger) -> None:
    got = {(r["essay_gen_id"], r["rubric"]): r for r in rows(fixture_ledger, "SELECT * FROM essay_scores")}
    assert set(got) == {("e_one", "rubric_a"), ("e_one", "rubric_b"), ("e_two", "rubric_a")}
    one_a = got[("e_one", "rubric_a")]
    # 8, 7, 9: mean 8, sample stdev 1
    assert (one_a["n"], one_a["mean"], one_a["min"], one_a["max"], one_a["stdev"]) == (3, 8.0, 7.0, 9.0, 1.0)
    two_a = got[("e_two", "rubric_a")]
    # 5, 6: mean 5.5, stdev sqrt(0.5)
    assert (two_a["n"], two_a["mean"]) == (2, 5.5)
    assert two_a["stdev"] == pytest.approx(math.sqrt(0.5), abs=1e-4)
    assert got[("e_one", "rubric_b")]["stdev"] is None


def test_essay_rankings_rank_within_each_cohort(fixture_ledger: Ledger) -> None:
    got = rows(fixture_ledger, "SELECT * FROM essay_rankings ORDER BY cohort_id, rank")
    assert [(r["cohort_id"], r["essay_gen_id"], r["mean"], r["n"], r["rank"]) for r in got] == [
        (COHORT, "e_one", 8.25, 4, 1),
        (COHORT, "e_two", 5.5, 2, 2),
        (COHORT2, "e_one", 8.0, 1, 1),  # only v_1a1 (score 8) is in the second cohort
    ]
    first = got[0]
    assert (first["draft_gen_id"], first["draft_template"], first["draft_model"], first["essay_template"],
            first["essay_model"], first["combo_id"]) == ("d_one", "links", "m1", "essay_plain", "m1", "combo_a")


def test_an_evaluation_of_an_essay_whose_draft_failed_is_blocked_too(fixture_ledger: Ledger) -> None:
    # e_three waits on the failed d_three; an evaluation of e_three can never run either (until a
    # rerun), so it is blocked as well, not merely pending.
    fixture_ledger.append([NewEvent("gen:v_3a1", "GenerationPlanned", {
        "gen_id": "v_3a1", "stage": "evaluation", "parent_gen_id": "e_three", "combo_id": "combo_b",
        "template_id": "rubric_a", "template_hash": None, "generator": "llm", "parser": "score",
        "model_id": "ev1", "replicate": 1, "cohort_id": COHORT, "catalog_hash": None})])
    got = rows(fixture_ledger, "SELECT gen_id, blocked FROM generations WHERE gen_id IN ('v_3a1', 'v_2b2')")
    assert {r["gen_id"]: r["blocked"] for r in got} == {"v_3a1": 1, "v_2b2": 0}
    got = rows(fixture_ledger, "SELECT gen_id, blocked FROM cohort_membership WHERE gen_id = 'v_3a1'")
    assert got == [{"gen_id": "v_3a1", "blocked": 1}]
    progress = rows(fixture_ledger, "SELECT pending, blocked FROM cohort_progress "
                                    "WHERE cohort_id = ? AND stage = 'evaluation'", (COHORT,))
    assert progress == [{"pending": 2, "blocked": 1}]


def test_llm_calls_list_every_try_with_its_outcome(fixture_ledger: Ledger) -> None:
    got = rows(fixture_ledger, "SELECT * FROM llm_calls ORDER BY seq")
    outcomes = [r["outcome"] for r in got]
    # 3 drafts + 2 essays + 8 evaluation calls completed, 1 rate-limited try failed, none open
    assert outcomes.count("completed") == 13 and outcomes.count("failed") == 1 and "open" not in outcomes
    failed = next(r for r in got if r["outcome"] == "failed")
    assert (failed["gen_id"], failed["stage"], failed["error_class"], failed["try"]) == (
        "d_two", "draft", "RateLimited", 1)
    done = next(r for r in got if r["gen_id"] == "e_one")
    assert (done["prompt_tokens"], done["completion_tokens"], done["cost_usd"], done["latency_s"],
            done["resolved_model"]) == (100, 50, 0.002, 2.0, "m1-v1")


def test_llm_calls_by_generation_or_stream_are_index_lookups_with_0003s_rows(sqlite_fixture_ledger: Ledger) -> None:
    # SQLite only: revision 0003's view and EXPLAIN QUERY PLAN are SQLite's (PostgreSQL ledgers start at 0011).
    import importlib.util

    fixture_ledger = sqlite_fixture_ledger

    path = Path(__file__).resolve().parents[1] / "migrations" / "versions" / "0005_llm_calls_by_stream.py"
    spec = importlib.util.spec_from_file_location("m0005", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    with fixture_ledger.backend.read() as raw:
        raw.execute(f"CREATE TEMP VIEW llm_calls_0003 AS {module._view_0003()}")  # what downgrade restores
        old = raw.execute("SELECT * FROM llm_calls_0003 ORDER BY seq").fetchall()
        raw.execute("DROP VIEW temp.llm_calls_0003")
    # 0007 adds estimated_cost_usd after 0003's columns; with no lost calls the rows are the same.
    now = rows(fixture_ledger, "SELECT * FROM llm_calls ORDER BY seq")
    assert all(r.pop("estimated_cost_usd") is None for r in now)
    assert now == [dict(zip(now[0], r)) for r in old]
    for where in ("gen_id = 'v_1b1'", "stream = 'gen:v_1b1'"):
        plan = " | ".join(r["detail"] for r in rows(fixture_ledger, f"EXPLAIN QUERY PLAN SELECT * FROM llm_calls WHERE {where}"))
        assert "SCAN" not in plan and "ix_events_type_seq" not in plan, plan
        assert len(rows(fixture_ledger, f"SELECT * FROM llm_calls WHERE {where}")) == \
            sum(r[2] == "v_1b1" for r in old) == 2


def test_llm_calls_show_a_started_call_without_answer_as_open(fixture_ledger: Ledger) -> None:
    fixture_ledger.append([
        NewEvent("gen:v_2b2", "LLMCallStarted", {
            "gen_id": "v_2b2", "attempt": 1, "call": 1, "model_id": "ev2", "provider": "offline",
            "provider_model": "ev2", "lease_until": "2026-11-30T00:10:00Z", "worker": {"pid": 2}})])
    got = rows(fixture_ledger, "SELECT gen_id, outcome FROM llm_calls WHERE outcome = 'open'")
    assert got == [{"gen_id": "v_2b2", "outcome": "open"}]
    progress = rows(fixture_ledger, "SELECT running, pending FROM cohort_progress "
                                    "WHERE cohort_id = ? AND stage = 'evaluation'", (COHORT,))
    assert progress == [{"running": 1, "pending": 1}]


def test_llm_calls_leave_out_a_claim_given_back_before_its_call_was_sent(fixture_ledger: Ledger) -> None:
    # A run stopped (Ctrl-C, --limit, budget) after claiming v_2b2: the claim is released unsent.
    # Nothing is in flight and nothing was sent, so llm_calls must not show an open call.
    started = {"gen_id": "v_2b2", "attempt": 1, "call": 1, "model_id": "ev2", "provider": "offline",
               "provider_model": "ev2", "lease_until": "2026-11-30T00:10:00Z", "worker": {"pid": 2}}
    fixture_ledger.append([
        NewEvent("gen:v_2b2", "LLMCallStarted", started),
        NewEvent("gen:v_2b2", "ClaimReleased", {"gen_id": "v_2b2", "attempt": 1, "call": 1,
                                                "reason": "stopped before the call was sent"})])
    assert rows(fixture_ledger, "SELECT gen_id FROM llm_calls WHERE gen_id = 'v_2b2'") == []
    progress = rows(fixture_ledger, "SELECT running, pending FROM cohort_progress "
                                    "WHERE cohort_id = ? AND stage = 'evaluation'", (COHORT,))
    assert progress == [{"running": 0, "pending": 1}]
    # Claimed again later and now in flight: that new start is open.
    fixture_ledger.append([NewEvent("gen:v_2b2", "LLMCallStarted", started)])
    got = rows(fixture_ledger, "SELECT gen_id, outcome FROM llm_calls WHERE gen_id = 'v_2b2'")
    assert got == [{"gen_id": "v_2b2", "outcome": "open"}]


def test_spend_sums_by_cohort_stage_and_model(fixture_ledger: Ledger) -> None:
    got = {(r["cohort_id"], r["stage"], r["model_id"]): r for r in rows(fixture_ledger, "SELECT * FROM spend")}
    assert got[(COHORT, "draft", "m1")]["cost_usd"] == pytest.approx(0.002)
    assert got[(COHORT, "draft", "m1")]["calls"] == 3
    assert got[(COHORT, "draft", "m2")]["cost_usd"] == pytest.approx(0.001)
    # ev1: v_1a1, v_1a3, v_2a1, v_2b1 and two calls for v_1b1 → 6 calls at $0.0005
    assert got[(COHORT, "evaluation", "ev1")]["cost_usd"] == pytest.approx(0.003)
    assert got[(COHORT, "evaluation", "ev2")]["generations"] == 3
    assert got[(COHORT2, "essay", "m1")]["cost_usd"] == pytest.approx(0.002)
    assert sum(r["cost_usd"] for k, r in got.items() if k[0] == COHORT) == pytest.approx(0.011)


def test_failures_say_what_failed_and_why(fixture_ledger: Ledger) -> None:
    got = {r["gen_id"]: r for r in rows(fixture_ledger, "SELECT * FROM failures")}
    assert set(got) == {"d_three", "v_2b1"}
    assert (got["d_three"]["kind"], got["d_three"]["reason"], got["d_three"]["blocked_children"]) == (
        "generation", "draft has no <links> block", 1)
    assert got["d_three"]["response"] == "garbage"
    assert (got["v_2b1"]["kind"], got["v_2b1"]["reason"]) == ("parse", "ParseFailed: no SCORE line")
    failed_event = fixture_ledger.events(type="ParseFailed", stream="gen:v_2b1")[0]
    assert got["v_2b1"]["failed_seq"] == failed_event.seq


def test_evaluator_agreement_summarises_each_evaluator(fixture_ledger: Ledger) -> None:
    got = {(r["rubric"], r["evaluator"]): r for r in rows(fixture_ledger, "SELECT * FROM evaluator_agreement")}
    # rubric_a ev1: 8, 9, 5 → mean 22/3
    assert got[("rubric_a", "ev1")]["mean"] == pytest.approx(22 / 3, abs=1e-4)
    assert got[("rubric_b", "ev1")]["parse_failure_rate"] == 0.5
    assert got[("rubric_b", "ev2")]["scored"] == 0


def test_views_answer_on_the_demo_ledger(tmp_path_factory: pytest.TempPathFactory) -> None:
    db = demo_ledger(tmp_path_factory)
    demo = Ledger.open(db)
    for name in views.VIEWS:
        rows(demo, f"SELECT * FROM {name}")
    progress = rows(demo, "SELECT * FROM cohort_progress")
    assert progress and all(r["planned"] == r["completed"] + r["failed"] + r["pending"] for r in progress)
    ranked = rows(demo, "SELECT * FROM essay_rankings ORDER BY cohort_id, rank")
    assert ranked and all(0 <= r["mean"] <= 9 for r in ranked)
    essays = {r["gen_id"] for r in rows(demo, "SELECT gen_id FROM generations WHERE stage = 'essay'")}
    assert {r["essay_gen_id"] for r in ranked} <= essays
    json.dumps(rows(demo, "SELECT * FROM spend"))


def _totals(ledger: Ledger) -> tuple[list[dict[str, Any]], ...]:
    return (rows(ledger, "SELECT * FROM cohort_totals WHERE generations != 0 ORDER BY 1, 2, 3"),
            rows(ledger, "SELECT * FROM cohort_essay_scores WHERE n != 0 ORDER BY 1, 2"),
            rows(ledger, "SELECT * FROM cohort_scales WHERE n != 0 ORDER BY 1, 2"))


def test_trigger_maintained_totals_match_a_recomputation(fixture_ledger: Ledger) -> None:
    live = _totals(fixture_ledger)
    assert all(live)
    views.refresh_read_projections(fixture_ledger)
    assert _totals(fixture_ledger) == live


def test_totals_follow_a_projection_rebuild_in_either_order(fixture_ledger: Ledger) -> None:
    before = rows(fixture_ledger, "SELECT * FROM cohort_progress ORDER BY 1, 2")
    ranked = rows(fixture_ledger, "SELECT * FROM essay_rankings ORDER BY 1, 2")

    def rebuild(cur) -> None:  # in one write transaction
        # Delete generations first, then memberships; re-insert memberships first.
        cur.execute("CREATE TEMP TABLE g AS SELECT * FROM gen_state")
        cur.execute("CREATE TEMP TABLE m AS SELECT * FROM cohort_members")
        cur.execute("DELETE FROM gen_state")
        assert cur.execute("SELECT COUNT(*) FROM cohort_totals WHERE generations != 0").fetchone()[0] == 0
        cur.execute("DELETE FROM cohort_members")
        cur.execute("INSERT INTO cohort_members SELECT * FROM m")
        cur.execute("INSERT INTO gen_state SELECT * FROM g")
        cur.execute("DROP TABLE g")
        cur.execute("DROP TABLE m")

    fixture_ledger.backend.write(rebuild)
    assert rows(fixture_ledger, "SELECT * FROM cohort_progress ORDER BY 1, 2") == before
    assert rows(fixture_ledger, "SELECT * FROM essay_rankings ORDER BY 1, 2") == ranked


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from daydream.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return int(code), out.out, out.err


def test_status_prints_each_stage_and_json(fixture_ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["status", COHORT, "--db", str(fixture_ledger.path)], capsys)
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["essay"][1:7] == ["3", "2", "0", "1", "0", "1"]
    assert lines["total"][1:4] == ["14", "10", "2"] and lines["total"][-1] == "0.0110"
    code, out, _ = _cli(["status", "--json", "--db", str(fixture_ledger.path)], capsys)
    data = json.loads(out)["cohorts"]
    assert set(data) == {COHORT, COHORT2}
    assert data[COHORT]["evaluation"] == {"planned": 8, "completed": 6, "failed": 1, "pending": 1, "running": 0,
                                          "blocked": 0, "calls": 8, "tokens": 1200, "cost_usd": 0.004,
                                          "unpriced": 0, "lost_calls": 0, "estimated_cost_usd": None}


def test_status_and_show_say_when_spend_is_unknown(fixture_ledger: Ledger,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Calls were made (1,600 tokens) but their price was never recorded: "0.0000" would claim
    # they were free. The cost shown is what is known, and the unpriced generations are counted.
    import_unpriced(fixture_ledger)
    db = ["--db", str(fixture_ledger.path)]
    code, out, _ = _cli(["status", "c-legacy", "--json", *db], capsys)
    assert code == 0
    draft = json.loads(out)["cohorts"]["c-legacy"]["draft"]
    assert (draft["tokens"], draft["cost_usd"], draft["unpriced"]) == (1600, 0.0, 1)
    code, out, _ = _cli(["status", "c-legacy", *db], capsys)
    assert code == 0 and "1 unpriced" in out
    code, out, _ = _cli(["status", COHORT, "--json", *db], capsys)
    assert json.loads(out)["cohorts"][COHORT]["draft"]["unpriced"] == 0
    code, out, _ = _cli(["show", "d_old", "--no-text", *db], capsys)
    assert code == 0 and "cost_usd: unknown" in out and "0.000000" not in out


def test_status_of_unknown_cohort_is_one_line(fixture_ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["status", "nope", "--db", str(fixture_ledger.path)], capsys)
    assert code == 1 and out == "" and err.count("\n") == 1 and "cohort 'nope'" in err


def test_status_on_an_empty_ledger(ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["status", "--db", str(ledger.path)], capsys)
    assert code == 0 and "no cohorts" in out
    code, out, _ = _cli(["status", "--json", "--db", str(ledger.path)], capsys)
    assert json.loads(out) == {"cohorts": {}}


def test_show_gives_lineage_texts_scores_and_events(fixture_ledger: Ledger,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(["show", "e_one", "--db", str(fixture_ledger.path)], capsys)
    assert code == 0
    assert "combo combo_a" in out and "Lanterns (c_lantern)" in out and "Tide pools (c_tide)" in out
    assert "draft  d_one  links  m1" in out
    assert "evaluation  v_1b1  rubric_b  ev1  r1  completed  score 9" in out
    assert "cohorts: c-one, c-two" in out
    assert "--- prompt ---\nPrompt for e_one attempt 1" in out and "A **bold** idea" in out
    assert "GenerationPlanned" in out and "GenerationLinked" in out
    code, out, _ = _cli(["show", "v_1b1", "--json", "--db", str(fixture_ledger.path)], capsys)
    found = json.loads(out)
    assert [a["gen_id"] for a in found["ancestors"]] == ["d_one", "e_one"]
    assert [e["type"] for e in found["events"]].count("PromptRendered") == 2  # two attempts
    assert found["generation"]["score"] == 9.0


def test_show_of_unknown_generation_is_one_line(fixture_ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(["show", "e_nope", "--db", str(fixture_ledger.path)], capsys)
    assert code == 1 and err.count("\n") == 1 and "'e_nope'" in err


def test_upgrading_a_ledger_with_work_fills_the_read_projections(tmp_path: Path, fixture_ledger: Ledger) -> None:
    from alembic import command

    from daydream.ledger import db

    old = tmp_path / "old.db"
    backend = db.create_backend(old, create=True)
    with db.schema_connection(backend) as conn:
        command.upgrade(db._alembic_config(conn), "0002_projections")
        if conn.in_transaction():
            conn.commit()
    build_fixture(Ledger(old, backend))
    assert db.current_revision(backend) == "0002_projections"
    upgraded = Ledger.open(old)  # opening upgrades to head
    for view in ("cohort_progress", "essay_rankings", "spend"):
        sql = f"SELECT * FROM {view} ORDER BY 1, 2, 3"
        assert rows(upgraded, sql) == rows(fixture_ledger, sql), view
