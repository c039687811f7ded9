"""Migration 0010 and the report on mixed rubric scales: rankings, per-rubric views, charts, counters.

A cohort whose rubrics use different scales (0-9, 1-5, 0-10) is ranked and summarised on score_norm
(each score's 0-1 position on its rubric's scale), and every view or file that does so says it; what
belongs to one rubric stays on that rubric's scale. The scores are chosen so that ranking by raw
means and ranking by score_norm disagree: a view that averaged raw scores would fail here.

Views, counters, rebuilds and the report run on a SQLite file and on a PostgreSQL database
(``ledger`` takes ``ledger_url``, issue 17); migrations from old revisions and browse pages are SQLite's.
"""

from __future__ import annotations

import csv
import io
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from daydream.read import browse_plugin, views
from daydream.ledger import projections
from daydream.read.compare import compare, read_scores
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.read.report import collect_report, comparison_svg, histograms, publish_report
from tests.read_fixtures import build_fixture, import_unpriced

MIXED, SINGLE = "mixed", "single"
SCALES = {"nine": [0, 9], "five": [1, 5], "ten": [0, 10]}
# Raw means put e1 first (20/3), then e3 (17/3), then e2 (16/3); on score_norm e2 leads:
# e1 (9/9 + 0/4 + 10/10) / 3 = 0.666667, e2 (5/9 + 4/4 + 6/10) / 3 = 0.718519,
# e3 (7/9 + 2/4 + 7/10) / 3 = 0.659259.
SCORES = {"e1": {"nine": 9, "five": 1, "ten": 10}, "e2": {"nine": 5, "five": 5, "ten": 6},
          "e3": {"nine": 7, "five": 3, "ten": 7}}
NORM_MEANS = {"e1": 2 / 3, "e2": (5 / 9 + 1 + 0.6) / 3, "e3": (7 / 9 + 0.5 + 0.7) / 3}


def planned(gen_id: str, stage: str, cohort: str, template: str, model: str | None, parent: str | None,
            combo: str, replicate: int = 1) -> NewEvent:
    return NewEvent(f"gen:{gen_id}", "GenerationPlanned", {
        "gen_id": gen_id, "stage": stage, "parent_gen_id": parent, "combo_id": combo, "template_id": template,
        "template_hash": None, "generator": "llm", "parser": "score" if stage == "evaluation" else "identity",
        "model_id": model, "replicate": replicate, "cohort_id": cohort, "catalog_hash": None})


def scored(gen_id: str, essay: str, rubric: str, judge: str, score: float, scale: list[int] | None,
           attempt: int = 1) -> list[NewEvent]:
    text = f"SCORE: {score:g}"
    payload: dict[str, Any] = {"gen_id": gen_id, "attempt": attempt, "essay_gen_id": essay, "score": float(score),
                               "rubric": rubric, "evaluator": judge, "replicate": 1}
    if scale is not None:
        payload["scale"] = scale
    return [NewEvent(f"gen:{gen_id}", "ResponseParsed", {
                "gen_id": gen_id, "attempt": attempt, "parser": "score", "parsed_hash": text_hash(text),
                "chars": len(text), "copied_from": None}),
            NewEvent(f"gen:{gen_id}", "ScoreRecorded", payload)]


def build_mixed(ledger: Ledger) -> None:
    """Cohort ``mixed``: three essays scored by one judge on a 0-9, a 1-5 and a 0-10 rubric.
    Cohort ``single``: the same essays linked, with their 0-9 scores only."""
    for cohort in (MIXED, SINGLE):
        ledger.append([NewEvent(f"cohort:{cohort}", "CohortPlanned", {"cohort_id": cohort, "planned": {}})])
    for i, (essay, by_rubric) in enumerate(SCORES.items(), start=1):
        draft, combo = f"d{i}", f"combo{i}"
        texts: list[str] = []
        events = [planned(draft, "draft", MIXED, "links", "writer", None, combo),
                  planned(essay, "essay", MIXED, "essay-t", "writer", draft, combo)]
        for rubric, score in by_rubric.items():
            gen_id = f"v_{essay}_{rubric}"
            events.append(planned(gen_id, "evaluation", MIXED, rubric, "judge", essay, combo))
            events += scored(gen_id, essay, rubric, "judge", score, SCALES[rubric])
            texts.append(f"SCORE: {score:g}")
        events += [NewEvent(f"gen:{g}", "GenerationLinked", {"gen_id": g, "stage": s, "cohort_id": SINGLE})
                   for g, s in ((draft, "draft"), (essay, "essay"), (f"v_{essay}_nine", "evaluation"))]
        ledger.append(events, texts)


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # conftest's SQLite-only fixture, on both backends here
    """A fresh ledger on SQLite and on PostgreSQL (issue 17)."""
    return Ledger.open(ledger_url)


@pytest.fixture
def mixed(ledger: Ledger) -> Ledger:
    build_mixed(ledger)
    return ledger


@pytest.fixture
def mixed_sqlite(ledger_path: Path) -> Ledger:
    """``mixed`` in a SQLite file: browse pages read SQLite (Datasette; a PostgreSQL ledger is browsed
    through a SQLite snapshot, tests/test_pg_browse.py)."""
    ledger = Ledger.open(ledger_path)
    build_mixed(ledger)
    return ledger


def rows(ledger: Ledger, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return views.query(ledger, sql, params)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


# ------------------------------------------------------------------------------------ views
def test_a_cohort_mixing_scales_is_ranked_on_score_norm_and_says_so(mixed: Ledger) -> None:
    ranked = rows(mixed, "SELECT * FROM essay_rankings WHERE cohort_id = ? ORDER BY rank", (MIXED,))
    assert [r["essay_gen_id"] for r in ranked] == ["e2", "e1", "e3"]  # raw means would say e1, e3, e2
    assert [r["rank"] for r in ranked] == [1, 2, 3]
    for r in ranked:
        assert r["mean"] == pytest.approx(NORM_MEANS[r["essay_gen_id"]], abs=1e-6) and r["n"] == 3
        assert r["scale"] == "0-1 (score_norm; rubrics on 0-10, 0-9, 1-5)"
    # The lineage comes with the ranking, as before.
    assert (ranked[0]["draft_gen_id"], ranked[0]["combo_id"], ranked[0]["draft_template"],
            ranked[0]["essay_template"], ranked[0]["essay_model"]) == ("d2", "combo2", "links", "essay-t", "writer")


def test_a_cohort_on_one_scale_keeps_its_raw_means(mixed: Ledger) -> None:
    ranked = rows(mixed, "SELECT essay_gen_id, mean, rank, scale FROM essay_rankings WHERE cohort_id = ? "
                         "ORDER BY rank", (SINGLE,))
    assert [(r["essay_gen_id"], r["mean"], r["rank"], r["scale"]) for r in ranked] == [
        ("e1", 9.0, 1, "0-9"), ("e3", 7.0, 2, "0-9"), ("e2", 5.0, 3, "0-9")]


def test_per_rubric_views_stay_on_the_rubrics_own_scale(mixed: Ledger) -> None:
    by_rubric = {r["rubric"]: r for r in rows(mixed, "SELECT * FROM essay_scores WHERE essay_gen_id = 'e1'")}
    assert {k: (v["mean"], v["scale"]) for k, v in by_rubric.items()} == {
        "nine": (9.0, "0-9"), "five": (1.0, "1-5"), "ten": (10.0, "0-10")}
    agreement = {r["rubric"]: r for r in rows(mixed, "SELECT * FROM evaluator_agreement")}
    assert (agreement["ten"]["mean"], agreement["ten"]["scale"]) == (pytest.approx(23 / 3, abs=1e-4), "0-10")
    assert agreement["five"]["scale"] == "1-5"


def test_one_rubrics_scores_on_two_scales_are_averaged_as_score_norm(mixed: Ledger) -> None:
    # A second judge scored e1 on "nine" as if it were 0-10 (say before a reparse): its row mixes.
    mixed.append([planned("v_e1_nine_b", "evaluation", MIXED, "nine", "judge-b", "e1", "combo1"),
                  *scored("v_e1_nine_b", "e1", "nine", "judge-b", 5, [0, 10])])
    [row] = rows(mixed, "SELECT * FROM essay_scores WHERE essay_gen_id = 'e1' AND rubric = 'nine'")
    assert row["scale"] == "0-1 (score_norm)"
    assert (row["mean"], row["min"], row["max"]) == (pytest.approx(0.75), 0.5, 1.0)


def test_the_counters_kept_by_triggers_equal_a_recomputation(mixed: Ledger) -> None:
    # A re-parse on another scale, a retry, a failed parse and a link: every path the triggers follow.
    mixed.append(scored("v_e3_five", "e3", "five", "judge", 6, [0, 10]))
    mixed.append([NewEvent("gen:v_e2_ten", "GenerationRetried", {"gen_id": "v_e2_ten", "attempt": 2,
                                                                  "previous_attempt": 1, "reason": "forced"})])
    mixed.append([NewEvent("gen:v_e1_ten", "ParseFailed", {"gen_id": "v_e1_ten", "attempt": 1, "parser": "score",
                                                            "reason": "no SCORE", "preview": "?"})])
    mixed.append([NewEvent("gen:v_e3_ten", "GenerationLinked", {"gen_id": "v_e3_ten", "stage": "evaluation",
                                                                "cohort_id": SINGLE})])
    tables = ("cohort_totals", "cohort_essay_scores", "cohort_scales")
    live = {t: rows(mixed, f"SELECT * FROM {t} WHERE {'generations' if t == 'cohort_totals' else 'n'} != 0 "
                           "ORDER BY 1, 2, 3") for t in tables}
    assert {r["scale"] for r in live["cohort_scales"] if r["cohort_id"] == SINGLE} == {"0-9", "0-10"}
    views.refresh_read_projections(mixed)
    assert {t: rows(mixed, f"SELECT * FROM {t} WHERE {'generations' if t == 'cohort_totals' else 'n'} != 0 "
                           "ORDER BY 1, 2, 3") for t in tables} == live
    ranked = rows(mixed, "SELECT essay_gen_id, n, scale FROM essay_rankings WHERE cohort_id = ? ORDER BY 1", (SINGLE,))
    assert [(r["essay_gen_id"], r["n"]) for r in ranked] == [("e1", 1), ("e2", 1), ("e3", 2)]
    assert ranked[0]["scale"] == "0-1 (score_norm; rubrics on 0-10, 0-9)"


def test_a_projection_rebuild_gives_the_same_rankings(mixed: Ledger) -> None:
    before = rows(mixed, "SELECT * FROM essay_rankings ORDER BY 1, 2")
    outcome = projections.rebuild(mixed)
    assert outcome.drift == []
    assert rows(mixed, "SELECT * FROM essay_rankings ORDER BY 1, 2") == before


def test_unpriced_generations_are_counted_from_the_kept_totals(ledger: Ledger) -> None:
    build_fixture(ledger)
    import_unpriced(ledger)
    progress = {(r["cohort_id"], r["stage"]): r["unpriced"] for r in views.cohort_status(ledger)}
    assert progress == {**{k: 0 for k in progress}, ("c-legacy", "draft"): 1}
    assert rows(ledger, "SELECT cohort_id, stage, unpriced FROM cohort_totals WHERE unpriced != 0") == [
        {"cohort_id": "c-legacy", "stage": "draft", "unpriced": 1}]
    # The count a walk over the generations gives (what a ledger before 0010 is read with).
    counted = rows(ledger, """SELECT m.cohort_id, g.stage, COUNT(*) AS n FROM cohort_members m
                              JOIN gen_state g ON g.gen_id = m.gen_id
                              WHERE g.calls > g.failed_calls AND g.cost_usd IS NULL GROUP BY 1, 2""")
    assert {(r["cohort_id"], r["stage"]): r["n"] for r in counted} == {k: v for k, v in progress.items() if v}


def _at(path: Path, revision: str) -> Ledger:
    from alembic import command

    from daydream.ledger import db

    backend = db.create_backend(path, create=True)
    with db.schema_connection(backend) as conn:
        command.upgrade(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()
    return Ledger(path, backend)


def test_upgrading_fills_the_new_counters_and_downgrading_restores_0009(tmp_path: Path, mixed: Ledger) -> None:
    from alembic import command

    from daydream.ledger import db

    old = _at(tmp_path / "old.db", "0009_comparisons")
    build_mixed(old)
    import_unpriced(old)
    import_unpriced(mixed)
    upgraded = Ledger.open(old.path)  # opening upgrades to head
    for view in ("essay_rankings", "cohort_progress", "spend", "essay_scores", "evaluator_agreement",
                 "cohort_totals", "cohort_essay_scores", "cohort_scales"):
        sql = f"SELECT * FROM {view} ORDER BY 1, 2, 3"
        assert rows(upgraded, sql) == rows(mixed, sql), view
    with db.schema_connection(upgraded.backend) as conn:
        command.downgrade(db._alembic_config(conn), "0009_comparisons")
        if conn.in_transaction():
            conn.commit()
    columns = [r["name"] for r in rows(upgraded, "SELECT name FROM pragma_table_info('essay_rankings')")]
    assert "scale" not in columns and "rank" in columns
    ranked = rows(upgraded, "SELECT essay_gen_id FROM essay_rankings WHERE cohort_id = ? ORDER BY rank", (MIXED,))
    assert [r["essay_gen_id"] for r in ranked] == ["e1", "e3", "e2"]  # 0003's raw means, as before
    assert Ledger.open(old.path).query("SELECT COUNT(*) FROM cohort_scales")  # and back up again


def test_a_generations_page_ranks_it_as_essay_rankings_does(mixed_sqlite: Ledger) -> None:
    mixed = mixed_sqlite
    found = browse_plugin.generation(mixed, "e1")
    standing = {s["cohort_id"]: (s["rank"], s["essays"]) for s in found["standings"]}
    assert standing == {MIXED: (2, 3), SINGLE: (1, 3)}
    assert [s["mean"] for s in found["standings"] if s["cohort_id"] == MIXED] == [pytest.approx(2 / 3, abs=1e-6)]


# ------------------------------------------------------------------------------------ report
def test_the_report_of_a_mixed_cohort_pools_on_score_norm_and_keeps_each_rubric_on_its_scale(
        mixed: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "r"
    publish_report(mixed, MIXED, out, top=3)
    ranks = read_csv(out / "rankings.csv")
    assert [(r["essay_gen_id"], r["mean"]) for r in ranks] == [
        (e, f"{NORM_MEANS[e]:.4f}") for e in ("e2", "e1", "e3")]
    summary = {(r["factor"], r["level"]): r for r in read_csv(out / "summary.csv")}
    assert summary[("rubric", "five")]["mean"] == f"{(0 + 1 + 0.5) / 3:.4f}"  # 1, 5, 3 on 1-5
    assert summary[("draft_template", "links")]["mean"] == f"{sum(NORM_MEANS.values()) / 3:.4f}"
    # share ≥ 8: the top ninth of each scale (9 and 10 on 0-10, 5 on 1-5, 8 and 9 on 0-9).
    assert summary[("rubric", "ten")]["share_ge_8"] == f"{1 / 3:.4f}"
    assert summary[("rubric", "five")]["share_ge_8"] == f"{1 / 3:.4f}"
    scores = {r["evaluation_gen_id"]: r for r in read_csv(out / "scores.csv")}
    assert [scores["v_e1_ten"][k] for k in ("score", "scale_min", "scale_max", "score_norm")] == [
        "10.0000", "0", "10", "1.0000"]
    pivot = read_csv(out / "pivot.csv")
    assert pivot[1]["ten·judge mean"] == "10.0000"  # e1, on its rubric's own scale
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "the rubrics use different scales (0-9, 0-10, 1-5)" in md and "score_norm" in md
    assert "| 1 | e2 | 0.7185 | 3 |" in md
    result = (out / "results" / "e1.md").read_text(encoding="utf-8")
    assert "mean score (score_norm, 0–1): 0.6667" in result and "10.0000 (0–10)" in result
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "ten (0–10)" in page and "five (1–5)" in page and "nine (0–9)" in page
    # Comparisons in the report are those of daydream compare, on score_norm.
    table = read_csv(out / "comparisons.csv")
    found = compare(read_scores(mixed, MIXED), "evaluation_template")
    assert [r["diff"] for r in table if r["factor"] == "evaluation_template"] == [
        f"{c.diff:.4f}" for c in found.comparisons]


def test_the_histogram_bins_each_rubric_on_its_own_scale(mixed: Ledger) -> None:
    data = collect_report(mixed, MIXED)
    hist = {h.rubric: h for h in histograms(data)}
    assert [(b[0], b[2]) for b in hist["ten"].bins] == [(float(v), 1 if v in (6, 7, 10) else 0) for v in range(11)]
    assert [b[0] for b in hist["five"].bins] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert hist["nine"].scale == (0.0, 9.0) and len(hist["nine"].bins) == 10
    assert data.scale == (0.0, 1.0) and data.mixed


def test_a_long_scale_is_counted_in_ranges(ledger: Ledger) -> None:
    ledger.append([NewEvent("cohort:c", "CohortPlanned", {"cohort_id": "c", "planned": {}})])
    events = [planned("d", "draft", "c", "t", "m", None, "k"), planned("e", "essay", "c", "t", "m", "d", "k")]
    for i, score in enumerate((0, 37, 100)):
        events.append(planned(f"v{i}", "evaluation", "c", "hundred", "j", "e", "k", replicate=i + 1))
        events += scored(f"v{i}", "e", "hundred", "j", score, [0, 100])
    ledger.append(events)
    [hist] = histograms(collect_report(ledger, "c"))
    assert len(hist.bins) <= 20 and hist.bins[0][:2] == (0.0, 5.0) and hist.bins[-1][1] == 100.0
    assert sum(b[2] for b in hist.bins) == 3 and [b for b in hist.bins if b[0] <= 37 <= b[1]][0][2] == 1


def test_mean_charts_follow_the_scale_they_show() -> None:
    rows_ = [{"level": "a", "mean": 0.5, "count": 4, "ci95_low": 0.4, "ci95_high": 0.6}]
    norm = comparison_svg("Rubric", rows_, (0.0, 1.0))
    assert ">0.5</text>" in norm and ">1</text>" in norm and ">9</text>" not in norm
    ten = comparison_svg("Rubric", rows_, (0.0, 10.0))
    assert ">10</text>" in ten


def _catalog_with_ten_point_rubric(tmp_path: Path) -> Path:
    from daydream.design.catalog import repo_catalog_dir

    folder = tmp_path / "catalog"
    shutil.copytree(repo_catalog_dir(), folder)
    templates = yaml.safe_load((folder / "templates.yaml").read_text())
    templates["evaluation"].append({"id": "ten-point", "parser": "score", "generator": "llm", "scale": [0, 10],
                                    "description": "A 0-10 rubric"})
    (folder / "templates.yaml").write_text(yaml.safe_dump(templates, sort_keys=False))
    (folder / "templates" / "evaluation" / "ten-point.j2").write_text(
        "Judge this essay.\n\n{{ response }}\n\nEnd with a line SCORE: X, where X is a number from 0 to 10.\n")
    return folder


def test_a_real_run_on_a_0_9_and_a_0_10_rubric_is_ranked_and_reported_on_score_norm(tmp_path: Path) -> None:
    from daydream.design.planner import plan_cohort
    from daydream.run.runner import RunOptions, run_cohort

    spec = tmp_path / "two-scales.yaml"
    spec.write_text(yaml.safe_dump({"axes": {
        "combo": [{"concepts": ["feedback-loop", "redundancy"], "level": "paragraph"},
                  {"concepts": ["bottleneck", "emergence"], "level": "paragraph"}],
        "draft_template": ["link-brainstorm"], "draft_llm": ["offline"], "essay_template": ["copy-draft"],
        "evaluation_template": ["originality-rubric", "ten-point"], "evaluation_llm": ["offline"]}}))
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    plan_cohort(ledger, spec, _catalog_with_ten_point_rubric(tmp_path), cohort_id="two")
    assert run_cohort(ledger, RunOptions(cohort="two")).failed == 0
    scored_rows = rows(ledger, "SELECT rubric, score, scale_min, scale_max, score_norm FROM scores")
    assert {(r["rubric"], r["scale_max"]) for r in scored_rows} == {("originality-rubric", 9), ("ten-point", 10)}
    by_essay: dict[str, list[float]] = {}
    for r in rows(ledger, "SELECT essay_gen_id, score_norm FROM scores"):
        by_essay.setdefault(r["essay_gen_id"], []).append(r["score_norm"])
    ranked = rows(ledger, "SELECT essay_gen_id, mean, scale FROM essay_rankings WHERE cohort_id = 'two'")
    assert len(ranked) == 2 and all(r["scale"].startswith("0-1 (score_norm") for r in ranked)
    for r in ranked:
        assert r["mean"] == pytest.approx(sum(by_essay[r["essay_gen_id"]]) / 2, abs=1e-6)
    published = publish_report(ledger, "two", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "every score is compared as score_norm" in md and published.files


def test_reading_an_old_ledger_read_only_still_counts_unpriced_work(tmp_path: Path) -> None:
    old = _at(tmp_path / "old.db", "0009_comparisons")
    build_fixture(old)
    import_unpriced(old)
    old.close()
    readonly = Ledger.open(old.path, readonly=True)  # not upgraded: 0009's cohort_progress
    status = {(r["cohort_id"], r["stage"]): r["unpriced"] for r in views.cohort_status(readonly)}
    assert status[("c-legacy", "draft")] == 1 and status[("c-one", "draft")] == 0
    with sqlite3.connect(old.path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0009_comparisons"
