"""``daydream compare``: hand-computed small cohorts, the SQL views behind it, bad input, determinism.

The ledgers here are real SQLite files and PostgreSQL databases (``ledger`` takes ``ledger_url``,
issue 17) holding the events a run records (plans, parses, scores); every expected number is worked
out by hand in a comment next to it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from daydream.cli import main
from daydream.errors import UsageError
from daydream.read.compare import (EXACT_SIGN_FLIP_UNITS, Comparison, compare, compare_cohort, expanded_level, holm,
                              paired_rows, read_scores, sign_flip_p)
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.read.report import publish_report
from tests.compare_model import Model, simulate_scores
from tests.read_fixtures import demo_ledger

JSON_FIELDS = ["factor", "a", "b", "within", "n_pairs", "n_unmatched", "mean_a", "mean_b", "diff", "ci_low",
               "ci_high", "wins", "ties", "losses", "p", "p_holm"]


# ------------------------------------------------------------------------------------ building ledgers
def planned(gen_id: str, stage: str, cohort: str, template: str, model: str | None, parent: str | None,
            combo: str, replicate: int = 1, generator: str = "llm") -> NewEvent:
    return NewEvent(f"gen:{gen_id}", "GenerationPlanned", {
        "gen_id": gen_id, "stage": stage, "parent_gen_id": parent, "combo_id": combo, "template_id": template,
        "template_hash": None, "generator": generator, "parser": "score" if stage == "evaluation" else "identity",
        "model_id": model, "replicate": replicate, "cohort_id": cohort, "catalog_hash": None})


def evaluation(gen_id: str, cohort: str, essay: str, combo: str, rubric: str, judge: str, replicate: int,
               score: float | None) -> list[NewEvent]:
    """A planned evaluation and its outcome: a score, or (``None``) a parse failure."""
    stream = f"gen:{gen_id}"
    events = [planned(gen_id, "evaluation", cohort, rubric, judge, essay, combo, replicate)]
    if score is None:
        events.append(NewEvent(stream, "ParseFailed", {"gen_id": gen_id, "attempt": 1, "parser": "score",
                                                        "reason": "no SCORE line", "preview": "hmm"}))
        return events
    text = f"SCORE: {score:g}"
    events += [NewEvent(stream, "ResponseParsed", {"gen_id": gen_id, "attempt": 1, "parser": "score",
                                                   "parsed_hash": text_hash(text), "chars": len(text),
                                                   "copied_from": None}),
               NewEvent(stream, "ScoreRecorded", {"gen_id": gen_id, "attempt": 1, "essay_gen_id": essay,
                                                  "score": float(score), "rubric": rubric, "evaluator": judge,
                                                  "replicate": replicate})]
    return events


# The hand case: 3 combos x 2 draft templates (A, B), one draft model, each draft copied as its
# essay, one rubric, one judge, two replicates. c3's B replicate 2 failed to parse.
#                 A r1, A r2    B r1, B r2      pairs (A − B)        unit means A, B   d_u
HAND = {"c1": ((7, 8), (5, 6)),  # +2, +2 (2 wins)       7.5, 5.5          +2
        "c2": ((6, 6), (6, 7)),  # 0, −1 (tie, loss)     6.0, 6.5          −0.5
        "c3": ((5, 9), (4, None))}  # +1 (win); A r2 unmatched  5.0, 4.0     +1


def build_hand(ledger: Ledger, cohort: str = "hand") -> None:
    ledger.append([NewEvent(f"cohort:{cohort}", "CohortPlanned", {"cohort_id": cohort, "planned": {}})])
    for combo, sides in HAND.items():
        for template, scores in zip(("A", "B"), sides):
            draft, essay = f"d_{combo}_{template}", f"e_{combo}_{template}"
            events = [planned(draft, "draft", cohort, template, "m", None, combo),
                      planned(essay, "essay", cohort, "copy-draft", None, draft, combo, generator="copy")]
            for replicate, score in enumerate(scores, start=1):
                events += evaluation(f"v_{combo}_{template}_{replicate}", cohort, essay, combo, "r", "j",
                                     replicate, score)
            ledger.append(events)


# The copy case: two combos, one draft each; its essays: a copy (no model) and one focused essay by
# each of two models; one rubric, one judge, one replicate.
#           copy  focused m1  focused m2
COPY = {"c1": (5, 7, 8), "c2": (6, 6, 4)}


def build_copy(ledger: Ledger, cohort: str = "copies") -> None:
    for combo, (copied, m1, m2) in COPY.items():
        draft = f"dc_{combo}"
        events = [planned(draft, "draft", cohort, "T", "m", None, combo)]
        for essay, template, model, generator, score in ((f"ec_{combo}", "copy-draft", None, "copy", copied),
                                                         (f"ef1_{combo}", "focused", "m1", "llm", m1),
                                                         (f"ef2_{combo}", "focused", "m2", "llm", m2)):
            events.append(planned(essay, "essay", cohort, template, model, draft, combo, generator=generator))
            events += evaluation(f"v_{essay}", cohort, essay, combo, "r", "j", 1, score)
        ledger.append(events)


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # conftest's SQLite-only fixture, on both backends here
    """A fresh ledger on SQLite and on PostgreSQL (issue 17)."""
    return Ledger.open(ledger_url)


@pytest.fixture
def hand(ledger: Ledger) -> Ledger:
    build_hand(ledger)
    build_copy(ledger)
    # A cohort planned but not scored yet.
    ledger.append([planned("d_new", "draft", "unscored", "A", "m", None, "c1"),
                   planned("e_new", "essay", "unscored", "copy-draft", None, "d_new", "c1", generator="copy"),
                   planned("v_new", "evaluation", "unscored", "r", "j", "e_new", "c1")])
    return ledger


def only(found: list[Comparison]) -> Comparison:
    assert len(found) == 1, found
    return found[0]


# ------------------------------------------------------------------------------------ hand-computed
def test_three_combos_two_templates_by_hand(hand: Ledger) -> None:
    c = only(compare_cohort(hand, "hand", "draft_template").comparisons)
    assert (c.factor, c.a, c.b, c.within) == ("draft_template", "A", "B", None)
    assert (c.n_pairs, c.n_units, c.n_unmatched, c.n_unmatched_a, c.n_unmatched_b) == (5, 3, 1, 1, 0)
    assert (c.wins, c.ties, c.losses) == (3, 1, 1)
    # Units weigh the same: (2 − 0.5 + 1) / 3, not the pair mean (2 + 2 + 0 − 1 + 1) / 5 = 0.8.
    assert c.diff == pytest.approx(2.5 / 3)
    assert (c.mean_a, c.mean_b) == (pytest.approx((7.5 + 6 + 5) / 3), pytest.approx((5.5 + 6.5 + 4) / 3))
    assert c.mean_a - c.mean_b == pytest.approx(c.diff)
    # Sign flips of d = (2, −0.5, 1): |sum| over the 8 patterns is 2.5, 0.5, 3.5, 1.5, 1.5, 3.5,
    # 0.5, 2.5; four reach the observed 2.5 → p = 4 / 8, exact. One comparison: Holm changes nothing.
    assert (c.p, c.p_method, c.p_holm) == (0.5, "exact", 0.5)
    # With three units the expanded percentile tail is ~1e-7, so the interval runs from the
    # all-c2 resample (−0.5) to the all-c1 resample (2): each comes up ~74 times in 2,000.
    assert (c.ci_low, c.ci_high) == (pytest.approx(-0.5), pytest.approx(2.0))


def test_within_gives_one_comparison_per_level_and_holm_runs_over_all_of_them(hand: Ledger) -> None:
    found = compare_cohort(hand, "hand", "draft_template", ["evaluation_replicate"]).comparisons
    assert [c.within for c in found] == [{"evaluation_replicate": 1}, {"evaluation_replicate": 2}]
    first, second = found
    # Replicate 1: c1 7 − 5, c2 6 − 6, c3 5 − 4 → d = (2, 0, 1), mean 1; |sum| ≥ 3 for 4 of 8 patterns.
    assert (first.n_pairs, first.n_unmatched, first.diff, first.p) == (3, 0, pytest.approx(1.0), 0.5)
    # Replicate 2: c1 8 − 6, c2 6 − 7; c3's A has no partner → d = (2, −1), every pattern ≥ 0.5.
    assert (second.n_pairs, second.n_unmatched, second.diff, second.p) == (2, 1, pytest.approx(0.5), 1.0)
    # Holm: 0.5 · 2 = 1, then max(1, 1 · 1) = 1.
    assert [c.p_holm for c in found] == [1.0, 1.0]


def test_a_copied_essay_is_paired_with_every_models_essay_of_its_draft(hand: Ledger) -> None:
    c = only(compare_cohort(hand, "copies", "essay_template").comparisons)
    # c1: copy 5 vs 7 and 8; c2: copy 6 vs 6 and 4 → pairs −2, −3, 0, +2.
    assert (c.a, c.b, c.n_pairs, c.n_units, c.n_unmatched) == ("copy-draft", "focused", 4, 2, 0)
    assert (c.wins, c.ties, c.losses) == (1, 1, 2)
    # Units (drafts): c1 5 − 7.5 = −2.5, c2 6 − 5 = 1 → diff −0.75.
    assert (c.mean_a, c.mean_b, c.diff) == (pytest.approx(5.5), pytest.approx(6.25), pytest.approx(-0.75))
    models = only(compare_cohort(hand, "copies", "essay_llm").comparisons)
    # A copy has no model: it is not a level of essay_llm. m1 − m2: 7 − 8, 6 − 4.
    assert (models.a, models.b, models.n_pairs, models.n_unmatched, models.diff) == (
        "m1", "m2", 2, 0, pytest.approx(0.5))


def test_aliases_name_the_same_axes(hand: Ledger) -> None:
    assert compare_cohort(hand, "copies", "essay_model").comparisons == compare_cohort(
        hand, "copies", "essay_llm").comparisons


# ------------------------------------------------------------------------------------ the CLI
def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code or 0, out.out, out.err


def test_json_prints_one_object_per_comparison_with_the_issue_fields(hand: Ledger,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["compare", "hand", "--by", "draft_template", "--within", "evaluation_replicate",
                          "--json", "--db", str(hand.path)], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    objects = [json.loads(line) for line in lines]
    assert all(list(o)[:len(JSON_FIELDS)] == JSON_FIELDS for o in objects)
    library = compare_cohort(hand, "hand", "draft_template", ["evaluation_replicate"]).comparisons
    assert objects == [json.loads(json.dumps(c.as_json())) for c in library]


def test_table_output_names_the_method_and_the_numbers(hand: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["compare", "hand", "--by", "draft_template", "--db", str(hand.path)], capsys)
    assert code == 0
    assert "cohort hand: draft_template, A − B (2,000 resamples" in out
    row = next(line for line in out.splitlines() if line.startswith("A "))
    assert row.split() == ["A", "B", "5", "3", "1", "6.167", "5.333", "0.833", "[-0.500,", "2.000]", "3/1/1",
                           "0.5000", "0.5000"]
    assert "sign-flip permutation test" in out and "1 scores had no partner" in out
    assert "note: few units (3 units: p ≥ 0.25, interval coverage ≤ 75%)." in out


def ledger_state(ledger: Ledger) -> tuple[int, object]:
    """What "nothing written" compares: the events and, on SQLite, every byte of the file (on
    PostgreSQL, the stored chain head and the projections' row counts)."""
    if ledger.backend.name == "postgresql":
        return ledger.count(), ledger.query("SELECT (SELECT hash FROM chain_head), (SELECT COUNT(*) FROM gen_state), "
                                            "(SELECT COUNT(*) FROM cohort_members)")
    return ledger.count(), hashlib.sha256(Path(ledger.path).read_bytes()).hexdigest()


@pytest.mark.parametrize("args, code, expected", [
    (["hand", "--by", "draft_temp"], 2, "unknown factor 'draft_temp' for --by; factors: combo, draft_template"),
    (["hand", "--by", "draft_llm"], 2, "draft_llm has 1 level in cohort 'hand' (m): nothing to compare"),
    (["unscored", "--by", "draft_template"], 1, "no scores in cohort 'unscored' yet: nothing to compare"),
    (["nope", "--by", "draft_template"], 1, "cohort 'nope' has no generations in the ledger"),
    (["hand", "--by", "draft_template", "--rubric", "clarity"], 1,  # an unknown rubric: 1, as an unknown cohort
     "rubric 'clarity' has no scores in cohort 'hand' (rubrics: r)"),
    (["hand", "--by", "draft_template", "--within", "draft_template"], 2,
     "draft_template is the factor compared (--by); it cannot also be a --within axis"),
    (["hand", "--by", "draft_template", "--within", "colour"], 2, "unknown factor 'colour' for --within"),
    (["hand", "--by", "rubric", "--rubric", "r"], 2, "--rubric keeps one rubric, so rubrics cannot be compared"),
    (["hand", "--by", "draft_template", "--within", "draft_gen_id"], 2, "unknown factor 'draft_gen_id'"),
    (["copies", "--by", "essay_template", "--within", "essay_llm"], 2,
     "essay_template has one level within each level of essay_llm: nothing to compare (essay_llm = (none): "
     "1 level of essay_template; essay_llm = m1: 1 level of essay_template; essay_llm = m2: 1 level of "
     "essay_template)"),
    (["hand", "--by", "draft_template", "--resamples", "0"], 2, "Invalid value for '--resamples'"),
])
def test_bad_input_is_one_line_a_nonzero_exit_and_nothing_written(
        hand: Ledger, capsys: pytest.CaptureFixture[str], args: list[str], code: int, expected: str) -> None:
    before = ledger_state(hand)
    got, out, err = run(["compare", *args, "--db", str(hand.path)], capsys)
    assert got == code
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and expected in err
    assert "Traceback" not in err
    assert ledger_state(hand) == before


def test_one_level_error_lists_the_factors_that_can_be_compared(hand: Ledger) -> None:
    with pytest.raises(Exception, match="factors with two or more levels: combo, draft_template, "
                                        "evaluation_replicate"):
        compare_cohort(hand, "hand", "evaluation_llm")


def test_a_factor_with_too_many_levels_is_refused_before_any_work() -> None:
    rows = simulate_scores(Model({f"t{i:02d}": 0.0 for i in range(46)}), 2, rubrics=1, replicates=1)
    with pytest.raises(UsageError, match="draft_template has 46 levels: 1,035 pairwise comparisons, more than "
                                         "1,000"):
        compare(rows, "draft_template")
    fewer = [r for r in rows if r.draft_template != "t45"]
    assert len(compare(fewer, "draft_template", resamples=10).comparisons) == 990  # 45 levels: fine


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_same_numbers_other_seed_other_draws() -> None:
    rows = simulate_scores(Model({"A": 0.3, "B": 0.0}), 20, seed="determinism")
    first = compare(rows, "draft_template", seed=7, resamples=500).comparisons
    assert compare(rows, "draft_template", seed=7, resamples=500).comparisons == first
    other = only(compare(rows, "draft_template", seed=8, resamples=500).comparisons)
    assert other.diff == first[0].diff and other.n_pairs == first[0].n_pairs
    assert (other.ci_low, other.ci_high, other.p) != (first[0].ci_low, first[0].ci_high, first[0].p)
    # A comparison's draws depend on its own key only: adding other levels leaves it unchanged.
    more = rows + simulate_scores(Model({"C": 0.0}), 20, seed="determinism-c")
    ab = next(c for c in compare(more, "draft_template", seed=7, resamples=500).comparisons if c.b == "B")
    assert (ab.ci_low, ab.ci_high, ab.p) == (first[0].ci_low, first[0].ci_high, first[0].p)


def test_the_cli_default_seed_gives_the_same_output_twice(hand: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compare", "copies", "--by", "essay_llm", "--db", str(hand.path)]
    assert run(args, capsys) == run(args, capsys)


# ------------------------------------------------------------------------------------ statistics
def test_sign_flip_p_enumerates_small_cases_and_samples_large_ones() -> None:
    import itertools

    import numpy as np

    d = [1.5, -0.25, 2.0, 0.75, -1.0]
    observed = abs(sum(d))
    brute = sum(abs(sum(s * x for s, x in zip(signs, d))) >= observed - 1e-12
                for signs in itertools.product((1, -1), repeat=len(d))) / 2 ** len(d)
    assert sign_flip_p(d, np.random.default_rng(0), 100) == (brute, "exact")
    many = [0.3] * (EXACT_SIGN_FLIP_UNITS + 6)  # every unit favours A: only the two all-equal patterns reach it
    p, method = sign_flip_p(many, np.random.default_rng(0), 999)
    assert method == "monte carlo" and p == pytest.approx(1 / 1000, abs=0.002)
    assert sign_flip_p([0.0, 0.0, 0.0], np.random.default_rng(0), 10) == (1.0, "exact")


def test_holm_adjusts_step_down_and_keeps_order() -> None:
    # sorted 0.01, 0.03, 0.04 → 3·0.01 = 0.03, max(0.03, 2·0.03) = 0.06, max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # None is no test: m = 2 → 2·0.2 = 0.4, then max(0.4, 0.9) = 0.9
    assert holm([0.2, None, 0.9]) == [pytest.approx(0.4), None, pytest.approx(0.9)]


def test_expanded_percentile_level_widens_more_for_fewer_units() -> None:
    # Hesterberg's adjustment: Φ(−√(n/(n−1)) · t) tends to 0.025 as n grows.
    assert expanded_level(3) < expanded_level(10) < expanded_level(100) < 0.025
    assert expanded_level(10) == pytest.approx(0.5 * math.erfc(math.sqrt(10 / 9) * 2.262 / math.sqrt(2)))
    assert expanded_level(2000) == pytest.approx(0.025, abs=0.0002)


# ------------------------------------------------------------------------------------ SQL views
def view_pairs(ledger: Ledger, cohort: str, factor: str) -> list[tuple[Any, ...]]:
    rows = ledger.query(
        "SELECT a, b, unit, evaluation_a, evaluation_b, score_a, score_b, diff FROM comparisons "
        "WHERE cohort_id = ? AND factor = ?", (cohort, factor))
    if ledger.backend.name == "postgresql" and factor.endswith("_replicate"):
        # Columns a and b hold every factor's levels; PostgreSQL needs one type for them: text.
        rows = [(int(a), int(b), *rest) for a, b, *rest in rows]
    return sorted(rows)


def library_pairs(rows: list, factor: str) -> list[tuple[Any, ...]]:
    from daydream.read.compare import levels

    found = levels(rows, factor)
    out = []
    for x, a in enumerate(found):
        for b in found[x + 1:]:
            out += [(a, b, p.unit, p.a.evaluation_gen_id, p.b.evaluation_gen_id, p.a.score, p.b.score,
                     p.a.score - p.b.score) for p in paired_rows(rows, factor, a, b)]
    return sorted(out)


FACTORS = ["combo", "draft_template", "draft_llm", "essay_template", "essay_llm", "evaluation_template",
           "evaluation_llm", "evaluation_replicate"]


@pytest.mark.parametrize("cohort", ["hand", "copies"])
def test_the_comparisons_view_holds_exactly_the_pairs_compare_uses(hand: Ledger, cohort: str) -> None:
    rows = read_scores(hand, cohort)
    for factor in FACTORS:
        assert view_pairs(hand, cohort, factor) == library_pairs(rows, factor), factor


def test_every_number_of_a_comparison_can_be_redone_in_sql(hand: Ledger) -> None:
    c = only(compare_cohort(hand, "hand", "draft_template").comparisons)
    [(n_pairs, wins, ties, losses)] = hand.query(
        "SELECT COUNT(*), SUM(CASE WHEN score_a > score_b THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN score_a = score_b THEN 1 ELSE 0 END), SUM(CASE WHEN score_a < score_b THEN 1 ELSE 0 END) "
        "FROM comparisons WHERE cohort_id = 'hand' AND factor = 'draft_template' AND a = 'A' AND b = 'B'")
    [(diff, units)] = hand.query(
        "SELECT AVG(d), COUNT(*) FROM (SELECT AVG(diff) AS d FROM comparisons WHERE cohort_id = 'hand' "
        "AND factor = 'draft_template' AND a = 'A' AND b = 'B' GROUP BY unit) AS per_unit")
    assert (n_pairs, wins, ties, losses, units) == (c.n_pairs, c.wins, c.ties, c.losses, c.n_units)
    assert diff == pytest.approx(c.diff)


def test_evaluation_design_view_has_the_rows_read_scores_reads(hand: Ledger) -> None:
    for cohort in ("hand", "copies", "unscored"):
        view = hand.query(
            "SELECT evaluation_gen_id, essay_gen_id, draft_gen_id, combo, draft_template, draft_llm, "
            "draft_replicate, essay_template, essay_llm, essay_replicate, evaluation_template, evaluation_llm, "
            "evaluation_replicate, score, draft_copy, essay_copy, scale_min, scale_max FROM evaluation_design "
            "WHERE cohort_id = ? "
            "ORDER BY evaluation_gen_id", (cohort,))
        expected = [tuple(s) for s in read_scores(hand, cohort)]
        assert [tuple(r) for r in view] == expected


def test_views_and_compare_agree_on_the_demo_cohort(tmp_path_factory: pytest.TempPathFactory) -> None:
    demo = Ledger.open(demo_ledger(tmp_path_factory), readonly=True)
    rows = read_scores(demo, "demo")
    for factor in FACTORS:
        assert view_pairs(demo, "demo", factor) == library_pairs(rows, factor), factor


# ------------------------------------------------------------------------------------ report = compare
def test_the_report_shows_exactly_what_compare_prints(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "demo.db"
    db.write_bytes(demo_ledger(tmp_path_factory).read_bytes())
    publish_report(Ledger.open(db), "demo", tmp_path / "r")
    table = list(csv.DictReader(io.StringIO((tmp_path / "r" / "comparisons.csv").read_text())))
    factors = sorted({r["factor"] for r in table if not r["within"]})
    assert factors == ["draft_template", "essay_template", "evaluation_template"]  # the demo's 2-level factors
    for factor in factors:
        code, out, _ = run(["compare", "demo", "--by", factor, "--json", "--db", str(db)], capsys)
        assert code == 0
        printed = [json.loads(line) for line in out.splitlines()]
        shown = [r for r in table if r["factor"] == factor and not r["within"]]
        assert len(printed) == len(shown) > 0
        for p, r in zip(printed, shown):
            for key in JSON_FIELDS:
                if key == "within":
                    continue
                value = p[key]
                expected = "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
                assert r[key] == expected, (factor, key)


def test_a_cohort_mixing_rubric_scales_is_compared_on_the_normalised_score(ledger: Ledger) -> None:
    # Two combos x two draft templates; each essay judged on a 0-9 rubric and on a 1-5 rubric. Raw
    # scores of the two scales cannot be averaged, so every score is read as its 0-1 position.
    cohort = "mixed"
    ledger.append([NewEvent(f"cohort:{cohort}", "CohortPlanned", {"cohort_id": cohort, "planned": {}})])
    raw = {("c1", "A"): (9, 5), ("c1", "B"): (0, 1), ("c2", "A"): (3, 3), ("c2", "B"): (6, 2)}
    for (combo, template), (on_nine, on_five) in raw.items():
        draft, essay = f"d_{combo}_{template}", f"e_{combo}_{template}"
        events = [planned(draft, "draft", cohort, template, "m", None, combo),
                  planned(essay, "essay", cohort, "copy-draft", None, draft, combo, generator="copy")]
        for rubric, score, scale in (("nine", on_nine, [0, 9]), ("five", on_five, [1, 5])):
            gen_id = f"v_{combo}_{template}_{rubric}"
            events += evaluation(gen_id, cohort, essay, combo, rubric, "j", 1, score)
            events[-1] = NewEvent(events[-1].stream, "ScoreRecorded", {**events[-1].payload, "scale": scale})
        ledger.append(events)

    rows = read_scores(ledger, cohort)
    norm = {r.evaluation_gen_id: r.score for r in rows}
    assert norm["v_c1_A_nine"] == pytest.approx(1.0) and norm["v_c1_A_five"] == pytest.approx(1.0)
    assert norm["v_c2_B_nine"] == pytest.approx(6 / 9) and norm["v_c2_B_five"] == pytest.approx(0.25)
    assert {(r.scale_min, r.scale_max) for r in rows} == {(0, 9), (1, 5)}
    found = compare(rows, "draft_template")
    assert found.scales is not None and "score_norm" in found.scales and "0-9" in found.scales
    # Units: c1 d = mean(1, 1) - mean(0, 0) = 1; c2 d = mean(3/9, 0.5) - mean(6/9, 0.25) = -1/24.
    assert only(found.comparisons).diff == pytest.approx((1 - 1 / 24) / 2)
    view = ledger.query("SELECT evaluation_gen_id, score FROM evaluation_design WHERE cohort_id = ?", (cohort,))
    assert {g: pytest.approx(s) for g, s in view} == norm
    # A cohort on one scale keeps its raw scores and says nothing about scales.
    build_hand(ledger)
    assert compare(read_scores(ledger, "hand"), "draft_template").scales is None
