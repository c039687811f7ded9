"""``daydream report``: the files parse, the numbers are the hand-computed ones, runs are repeatable.

The hand-built cohort sits in a SQLite file and in a PostgreSQL database (``ledger`` takes
``ledger_url``, issue 17): the report reads the same views on both."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from daydream.cli import main
from daydream.ledger.store import Ledger
from daydream.read.report import HeatCell, comparison_svg, heatmap_svg, publish_report, render_markdown
from tests.read_fixtures import COHORT, build_fixture, demo_ledger, import_unpriced

FILES = {"scores.csv", "pivot.csv", "rankings.csv", "summary.csv", "comparisons.csv", "template_model.csv",
         "reliability.csv", "judges.csv", "self_preference.csv", "report.md", "report.html"}


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # conftest's SQLite-only fixture, on both backends here
    """A fresh ledger on SQLite and on PostgreSQL (issue 17)."""
    return Ledger.open(ledger_url)


@pytest.fixture
def fixture_ledger(ledger: Ledger) -> Ledger:
    build_fixture(ledger)
    return ledger


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_report_writes_every_file_with_hand_computed_numbers(fixture_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "report"
    published = publish_report(fixture_ledger, COHORT, out, top=1)
    assert set(published.files) == FILES | {"results/e_one.md"}

    scores = read_csv(out / "scores.csv")
    assert len(scores) == 8
    assert list(scores[0]) == ["evaluation_gen_id", "essay_gen_id", "draft_gen_id", "combo_id", "concepts",
                               "draft_template", "draft_model", "essay_template", "essay_model", "rubric",
                               "evaluator", "replicate", "attempt", "status", "score", "parse_status",
                               "parse_error", "scale_min", "scale_max", "score_norm"]
    by_id = {r["evaluation_gen_id"]: r for r in scores}
    assert (by_id["v_1a1"]["draft_gen_id"], by_id["v_1a1"]["concepts"], by_id["v_1a1"]["score"]) == (
        "d_one", "Lanterns + Tide pools", "8.0000")
    assert (by_id["v_2b1"]["score"], by_id["v_2b1"]["parse_status"], by_id["v_2b1"]["parse_error"]) == (
        "", "parse_failed", "no SCORE line")
    # Scores recorded without a scale are on 0-9; the pending one has none yet.
    assert [by_id["v_1a1"][k] for k in ("scale_min", "scale_max", "score_norm")] == ["0", "9", "0.8889"]
    assert [by_id["v_2b2"][k] for k in ("status", "parse_status", "scale_min", "score_norm")] == [
        "planned", "pending", "", ""]
    # Sorted by essay, rubric, evaluator, replicate.
    assert [r["evaluation_gen_id"] for r in scores] == ["v_1a1", "v_1a3", "v_1a2", "v_1b1", "v_2a1", "v_2a2",
                                                        "v_2b1", "v_2b2"]

    ranks = read_csv(out / "rankings.csv")
    assert [(r["rank"], r["essay_gen_id"], r["title"], r["mean"], r["n"]) for r in ranks] == [
        ("1", "e_one", "Tide Lanterns", "8.2500", "4"), ("2", "e_two", "Honey Tides", "5.5000", "2")]
    # e_one: 8, 7, 9, 9 → sd = sqrt(2.75 / 3) = 0.9574; t(3) = 3.182 → half-width 1.5233
    assert (ranks[0]["stdev"], ranks[0]["ci95_low"], ranks[0]["ci95_high"]) == ("0.9574", "6.7267", "9.7733")

    pivot = read_csv(out / "pivot.csv")
    assert pivot[0]["essay_gen_id"] == "e_one"
    assert (pivot[0]["rubric_a·ev1 mean"], pivot[0]["rubric_a·ev1 n"]) == ("8.5000", "2")  # 8 and 9
    assert (pivot[1]["rubric_b·ev1 mean"], pivot[1]["rubric_b·ev1 n"]) == ("", "0")  # parse failed

    summary = {(r["factor"], r["level"]): r for r in read_csv(out / "summary.csv")}
    # rubric_a: 8, 7, 9, 5, 6 → mean 7, sd sqrt(2.5); share ≥ 8: 2 of 5
    assert (summary[("rubric", "rubric_a")]["count"], summary[("rubric", "rubric_a")]["mean"],
            summary[("rubric", "rubric_a")]["stdev"], summary[("rubric", "rubric_a")]["share_ge_8"]) == (
        "5", "7.0000", "1.5811", "0.4000")
    # ev1 scored 8, 9, 9, 5 → mean 7.75
    assert summary[("evaluator", "ev1")]["mean"] == "7.7500"
    assert {k[0] for k in summary} == {"draft_template", "draft_model", "essay_template", "essay_model",
                                       "rubric", "evaluator"}
    # The interval resamples units (drafts), not the five scores: d_one holds 8, 7, 9 and d_two 5, 6.
    # A resample is {d_one, d_one} → 8, {d_two, d_two} → 5.5 or a mix → 35 / 5 = 7; with two units
    # the expanded percentile interval reaches the extremes: 5.5 – 8.
    rubric_a = summary[("rubric", "rubric_a")]
    assert (rubric_a["units"], rubric_a["ci95_low"], rubric_a["ci95_high"]) == ("2", "5.5000", "8.0000")

    comparisons = {(r["factor"], r["a"], r["b"]): r for r in read_csv(out / "comparisons.csv")}
    # One judge, one rubric, one model per stage: only rubrics and evaluators have two levels.
    assert set(comparisons) == {("evaluation_template", "rubric_a", "rubric_b"),
                                ("evaluation_llm", "ev1", "ev2")}
    # rubric_a − rubric_b: only e_one · ev1 · r1 has both (8 − 9); the other four rubric_a scores
    # have no rubric_b partner and are counted, not used.
    rubrics = comparisons[("evaluation_template", "rubric_a", "rubric_b")]
    assert [rubrics[k] for k in ("n_pairs", "n_units", "n_unmatched", "diff", "wins", "ties", "losses",
                                 "ci_low", "p")] == ["1", "1", "4", "-1.0000", "0", "0", "1", "", "1.0000"]
    # ev1 − ev2 on rubric_a, replicate 1: e_one 8 − 7, e_two 5 − 6; ev1's replicate 2 and rubric_b
    # scores have no ev2 partner.
    judges = comparisons[("evaluation_llm", "ev1", "ev2")]
    assert [judges[k] for k in ("n_pairs", "n_units", "n_unmatched", "mean_a", "mean_b", "diff", "wins",
                                "losses", "ci_low", "ci_high", "p", "p_holm")] == [
        "2", "2", "2", "6.5000", "6.5000", "0.0000", "1", "1", "-1.0000", "1.0000", "1.0000", "1.0000"]

    cells = {(r["stage"], r["template"], r["model"]): r for r in read_csv(out / "template_model.csv")}
    assert set(cells) == {("draft", "links", "m1"), ("essay", "essay_plain", "m1")}
    # 8 + 7 + 9 + 9 + 5 + 6 = 44 over 6 scores from 2 drafts
    assert (cells[("draft", "links", "m1")]["mean"], cells[("draft", "links", "m1")]["units"]) == ("7.3333", "2")

    # Offsets on rubric_a: e_one ev1 8.5 (mean of 8, 9) vs ev2 7 → ±0.75; e_two 5 vs 6 → ∓0.5.
    offsets = {r["evaluator"]: r for r in read_csv(out / "judges.csv")}
    assert [offsets["ev1"][k] for k in ("cells", "units", "offset", "ci95_low", "ci95_high")] == [
        "2", "2", "0.1250", "-0.5000", "0.7500"]
    assert offsets["ev2"]["offset"] == "-0.1250"
    assert read_csv(out / "self_preference.csv") == []  # no judge wrote an essay

    reliability = {r["rubric"]: r for r in read_csv(out / "reliability.csv")}
    # rubric_a units: e_one (ev1 mean of 8 and 9 = 8.5, ev2 7), e_two (ev1 5, ev2 6).
    # Ordinal: four distinct values, one each; adjacent pairs δ² = 1, two apart 4, three apart 9.
    #   observed 2·1 + 2·1 = 4; expected 2·(3·1 + 2·4 + 1·9) = 40; alpha = 1 - 3·4/40 = 0.7
    # Interval: observed 2·1.5² + 2·1² = 6.5; expected 2·(1+4+12.25+1+6.25+2.25) = 53.5;
    #   alpha = 1 - 3·6.5/53.5 = 0.6355
    assert (reliability["rubric_a"]["alpha_ordinal"], reliability["rubric_a"]["alpha_interval"]) == (
        "0.7000", "0.6355")
    # replicates: only e_one/ev1 has two (8, 9): sd 0.7071
    assert reliability["rubric_a"]["replicate_spread"] == "0.7071"
    # rubric_b: one evaluator per essay → alpha undefined; 1 parse failure of 2 finished
    assert (reliability["rubric_b"]["alpha_ordinal"], reliability["rubric_b"]["parse_failure_rate"]) == (
        "", "0.5000")
    # ...and the report says why instead of leaving a blank.
    assert reliability["rubric_b"]["alpha_note"].startswith("one judge (ev1) scored this rubric")
    assert reliability["rubric_a"]["alpha_note"] == ""
    # Between replicates only e_one · ev1 has two (8, 9): one pairable unit, whose disagreement is
    # exactly what chance gives → 0. rubric_b has one replicate everywhere.
    assert reliability["rubric_a"]["alpha_replicates"] == "0.0000"
    assert reliability["rubric_b"]["alpha_replicates_note"].startswith("one replicate per essay and judge")

    result = (out / "results" / "e_one.md").read_text(encoding="utf-8")
    assert result.startswith("# Tide Lanterns\n")
    assert "mean score: 8.2500 (n = 4" in result and "draft: `d_one`" in result
    assert result.rstrip().endswith("- second point")

    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| 1 | e_one | 8.2500 | 4 |" in md and "A **bold** idea" in md
    assert "Krippendorff's alpha is how much the judges agree" in md
    assert "— (one judge (ev1) scored this rubric" in md
    assert "Not computed: no judge's model also wrote essays" in md


def test_report_html_is_self_contained_with_charts_and_essays(fixture_ledger: Ledger, tmp_path: Path) -> None:
    publish_report(fixture_ledger, COHORT, tmp_path, top=2)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    for chart in ('class="chart histogram"', 'class="chart comparison"', 'class="chart heatmap"',
                  'class="chart forest"'):
        assert chart in page
    assert page.count('class="chart histogram"') == 2  # one per rubric
    # A forest plot for each factor with two levels (rubric, evaluator); one-level factors get none.
    assert page.count('class="chart forest"') == 2
    assert "Rubric: A − B, 95% CI" in page and "Draft template: A − B" not in page
    assert "95% CI" in page
    assert "<h1>Tide Lanterns</h1>" in page and "<strong>bold</strong>" in page
    assert "Last line: the swarm returns at dusk." in page  # the second essay in full
    # Nothing to fetch: no scripts, stylesheets or images from elsewhere.
    for needle in ("<script", "<link", "src=", "https://"):
        assert needle not in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_report_twice_gives_identical_files_and_one_event_per_run(fixture_ledger: Ledger, tmp_path: Path) -> None:
    first = publish_report(fixture_ledger, COHORT, tmp_path / "a", top=2)
    snapshot = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    second = publish_report(fixture_ledger, COHORT, tmp_path / "a", top=2)
    third = publish_report(fixture_ledger, COHORT, tmp_path / "b", top=2)
    assert first.files == second.files == third.files
    for rel, content in snapshot.items():
        assert (tmp_path / "a" / rel).read_bytes() == content == (tmp_path / "b" / rel).read_bytes()
        assert first.files[str(rel)] == hashlib.sha256(content).hexdigest()
    events = fixture_ledger.events(type="ReportPublished")
    assert [e.seq for e in events] == [first.seq, second.seq, third.seq]
    assert all(e.stream == f"report:{COHORT}" for e in events)
    assert events[0].payload == {"cohort_id": COHORT, "out_dir": str((tmp_path / "a").resolve()),
                                 "files": first.files}


def test_a_smaller_report_into_the_same_folder_removes_the_essays_it_no_longer_ranks(
        fixture_ledger: Ledger, tmp_path: Path) -> None:
    out = tmp_path / "r"
    publish_report(fixture_ledger, COHORT, out, top=2)
    assert sorted(p.name for p in (out / "results").iterdir()) == ["e_one.md", "e_two.md"]
    mine = out / "results" / "notes.md"  # a file the report never wrote stays
    mine.write_text("my notes", encoding="utf-8")
    second = publish_report(fixture_ledger, COHORT, out, top=1)
    # results/ must show this report's top essays, not also the last report's.
    assert sorted(p.name for p in (out / "results").iterdir()) == ["e_one.md", "notes.md"]
    assert {n for n in second.files if n.startswith("results/")} == {"results/e_one.md"}
    edited = out / "results" / "e_one.md"
    edited.write_text("edited by hand", encoding="utf-8")
    publish_report(fixture_ledger, COHORT, out, top=0)
    assert edited.read_text(encoding="utf-8") == "edited by hand"  # changed since written: kept


def test_report_progress_says_when_spend_is_unknown(fixture_ledger: Ledger, tmp_path: Path) -> None:
    import_unpriced(fixture_ledger)  # c-legacy: one imported draft with tokens but no price
    publish_report(fixture_ledger, "c-legacy", tmp_path / "legacy")
    assert "| draft | 1 | 1 | 0 | 0 | 1 | 1600 | 0.0000 (1 unpriced) |" in (tmp_path / "legacy" / "report.md").read_text()
    assert "0.0000 (1 unpriced)" in (tmp_path / "legacy" / "report.html").read_text()
    publish_report(fixture_ledger, COHORT, tmp_path / "priced")
    assert "unpriced" not in (tmp_path / "priced" / "report.md").read_text()


def test_report_of_unknown_cohort_is_one_line_and_records_nothing(
        fixture_ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = fixture_ledger.count()
    with pytest.raises(SystemExit) as exit_:
        main(["report", "nope", "--db", str(fixture_ledger.path), "--out", str(tmp_path / "r")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cohort 'nope'" in err and "c-one" in err
    assert fixture_ledger.count() == before and not (tmp_path / "r").exists()


def test_report_command_prints_where_it_wrote(fixture_ledger: Ledger, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["report", COHORT, "--db", str(fixture_ledger.path), "--out", str(tmp_path / "r"), "--top", "1"])
    assert exit_.value.code in (0, None)
    out = capsys.readouterr().out
    assert str(tmp_path / "r" / "report.html") in out and "results/e_one.md" in out


def test_heat_map_names_every_rubric_in_full_and_says_when_it_shows_only_the_best() -> None:
    # Rubric ids often share a long prefix; cut to ten characters both columns read the same.
    rubrics = ["daydreaming-verification-v2", "daydreaming-verification-v3"]
    essays = [f"e_{i:02d}" for i in range(45)]
    cells = {(e, r): HeatCell(float(i % 10), 1, (0.0, 9.0)) for i, e in enumerate(essays) for r in rubrics}
    svg = heatmap_svg(rubrics, essays[:40], cells, len(essays))
    for rubric in rubrics:
        assert f">{rubric}</text>" in svg
    assert "best 40 of 45 essays" in svg
    assert ">e_39</text>" in svg and ">e_40</text>" not in svg
    small = heatmap_svg(rubrics, essays[:2], cells)
    assert "best" not in small


def test_heat_map_colours_each_cell_by_its_rubrics_own_scale() -> None:
    # A 10 on 0-10 and a 5 on 1-5 are both the top of their scale: the same, darkest colour.
    cells = {("e", "ten"): HeatCell(10.0, 1, (0.0, 10.0)), ("e", "five"): HeatCell(5.0, 1, (1.0, 5.0)),
             ("f", "ten"): HeatCell(0.0, 1, (0.0, 10.0)), ("f", "five"): HeatCell(1.0, 1, (1.0, 5.0))}
    svg = heatmap_svg(["five", "ten"], ["e", "f"], cells)
    assert svg.count('fill="#08306b"') == 2 and svg.count('fill="#f7fbff"') == 2
    assert "10.00 on 0–10" in svg and "5.00 on 1–5" in svg


def test_comparison_chart_names_every_level_in_full() -> None:
    levels = ["daydreaming-verification-v2", "daydreaming-verification-v3"]
    rows = [{"level": name, "mean": 5.0, "count": 4, "ci95_low": 4.0, "ci95_high": 6.0} for name in levels]
    svg = comparison_svg("Rubric", rows)
    for name in levels:
        assert f">{name}</text>" in svg


def test_default_report_folder_stays_under_reports_whatever_the_cohort_id(
        fixture_ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Cohort ids come from specs and imports; one like "../evil" must not steer the default
    # folder (reports/COHORT) out of reports/.
    from daydream.ledger.store import NewEvent

    # A scored evaluation with its essay and draft: a report of nothing scored is refused (exit 1).
    fixture_ledger.append([NewEvent(f"gen:{gen_id}", "GenerationLinked",
                                    {"gen_id": gen_id, "stage": stage, "cohort_id": "../evil"})
                           for gen_id, stage in (("d_one", "draft"), ("e_one", "essay"), ("v_1a1", "evaluation"))])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as exit_:
        main(["report", "../evil", "--db", str(fixture_ledger.path)])
    assert exit_.value.code in (0, None)
    assert not (tmp_path / "evil").exists()
    written = [p for p in (work / "reports").iterdir()]
    assert len(written) == 1 and (written[0] / "report.html").is_file()
    assert str(written[0].relative_to(work)) in capsys.readouterr().out


def test_report_md_nests_essay_headings_under_the_essay_section(fixture_ledger: Ledger, tmp_path: Path) -> None:
    # An essay's own "# Title" must not become a top-level heading of report.md (it would break
    # the outline a Markdown viewer shows); it sits below "### rank. title".
    publish_report(fixture_ledger, COHORT, tmp_path / "r", top=2)
    lines = (tmp_path / "r" / "report.md").read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("# ")] == [f"# Report: cohort {COHORT}"]
    assert "#### Tide Lanterns" in lines and "#### Honey Tides" in lines
    from daydream.read.report import demote_headings

    text = "# A\n\n```\n# not a heading\n```\n\n###### deep\n\n#hashtag"
    assert demote_headings(text, 3) == "#### A\n\n```\n# not a heading\n```\n\n###### deep\n\n#hashtag"


def test_markdown_in_essays_cannot_inject_html() -> None:
    rendered = render_markdown("# T\n\n<script>alert(1)</script> [x](javascript:alert(1))")
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert 'href="javascript:' not in rendered


def test_report_on_the_demo_ledger(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    db = demo_ledger(tmp_path_factory)
    published = publish_report(Ledger.open(db), "demo", tmp_path / "out", top=3)
    ranks = read_csv(tmp_path / "out" / "rankings.csv")
    assert ranks and ranks[0]["rank"] == "1" and all(r["title"] for r in ranks)
    assert len([n for n in published.files if n.startswith("results/")]) == 3
    assert read_csv(tmp_path / "out" / "reliability.csv")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with everything that would reach the network turned off."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--no-first-run", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_html_renders_in_chromium_with_title_and_score(fixture_ledger: Ledger, tmp_path: Path) -> None:
    publish_report(fixture_ledger, COHORT, tmp_path / "r", top=2)
    page = (tmp_path / "r" / "report.html").as_uri()
    shot = tmp_path / "report.png"
    run = chromium([f"--screenshot={shot}", "--window-size=1280,2000", page], tmp_path / "profile")
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", run.stderr[-500:]
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few KB
    dom = chromium(["--dump-dom", page], tmp_path / "profile2").stdout
    assert "<h1>Tide Lanterns</h1>" in dom and '<span class="score">8.25</span>' in dom
    assert "<svg" in dom


def test_report_of_a_cohort_with_nothing_scored_yet(ledger: Ledger, tmp_path: Path) -> None:
    from tests.read_fixtures import _planned

    ledger.append([_planned("d_x", "draft", "fresh", "links", "m1", combo="combo_a"),
                   _planned("e_x", "essay", "fresh", "essay_plain", "m1", parent="d_x", combo="combo_a"),
                   _planned("v_x", "evaluation", "fresh", "rubric_a", "ev1", parent="e_x", combo="combo_a")])
    published = publish_report(ledger, "fresh", tmp_path, top=5)
    assert not any(name.startswith("results/") for name in published.files)
    assert read_csv(tmp_path / "rankings.csv") == []
    assert [r["parse_status"] for r in read_csv(tmp_path / "scores.csv")] == ["pending"]
    assert read_csv(tmp_path / "reliability.csv")[0]["alpha_ordinal"] == ""
    assert "No scored essays yet" in (tmp_path / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("df, exact", [(1, 12.706), (3, 3.182), (30, 2.042), (31, 2.0395), (60, 2.0003),
                                       (120, 1.9799), (1000, 1.9623)])
def test_t_critical_values_match_the_tables(df: int, exact: float) -> None:
    from daydream.read.report import t95

    assert t95(df) == pytest.approx(exact, abs=0.0005)
