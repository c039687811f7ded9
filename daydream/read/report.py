"""The cohort report: CSV tables, a Markdown summary, a self-contained HTML page, and one event.

``collect_report`` reads a cohort through the SQL views into plain Python data; ``render_report``
turns it into file contents (bytes, deterministic: no timestamps, sorted rows, fixed number
formats, a fixed bootstrap seed, so two runs give identical files); ``publish_report`` writes them
and records one ``ReportPublished`` event with the sha256 of every file. The HTML page has no
external resources: its charts are inline SVG and its essays are Markdown rendered on the server.

Every interval on a mean or a difference comes from ``daydream.read.compare`` (cluster bootstrap over
drafts, see its docstring), and the comparisons section is exactly what ``daydream compare`` prints
for each factor: the report calls the same function with the same seed.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from daydream.read import views
from daydream.read.compare import (AXIS, DEFAULT_RESAMPLES, DEFAULT_SEED, EXACT_SIGN_FLIP_UNITS, ComparisonSet, Score,
                              compare, few_units_note, group_means, label, levels, read_scores, t95)
from daydream.errors import UsageError
from daydream.ledger.events import REPORT_PUBLISHED, ReportPublished
from daydream.ledger.store import Ledger
from daydream.read.reliability import (ALPHA_EXPLAINED, evaluator_offsets, rubric_agreement,
                                  self_preference)

HIGH_SCORE = 8.0  # "share ≥ 8" in summary.csv: the bar for an essay worth reading
FACTORS = (("draft_template", "Draft template"), ("draft_model", "Draft model"),
           ("essay_template", "Essay template"), ("essay_model", "Essay model"),
           ("rubric", "Rubric"), ("evaluator", "Evaluator"))
# The same factors by their design-axis names (what daydream compare --by takes).
FACTOR_AXES = {"draft_template": "draft_template", "draft_model": "draft_llm",
               "essay_template": "essay_template", "essay_model": "essay_llm",
               "rubric": "evaluation_template", "evaluator": "evaluation_llm"}
SCORE_COLUMNS = ["evaluation_gen_id", "essay_gen_id", "draft_gen_id", "combo_id", "concepts",
                 "draft_template", "draft_model", "essay_template", "essay_model", "rubric",
                 "evaluator", "replicate", "attempt", "status", "score", "parse_status", "parse_error"]
# ------------------------------------------------------------------------------------ statistics
@dataclass(frozen=True)
class Stats:
    """Count, mean, sample standard deviation and 95% confidence interval of some scores."""

    n: int
    mean: float | None
    stdev: float | None
    ci_low: float | None
    ci_high: float | None
    share_high: float | None


def describe(scores: Iterable[float]) -> Stats:
    """Stats of ``scores``; the 95% interval is mean ± t · sd / √n (Student's t)."""
    xs = [float(x) for x in scores]
    n = len(xs)
    if n == 0:
        return Stats(0, None, None, None, None, None)
    mean = sum(xs) / n
    share = sum(x >= HIGH_SCORE for x in xs) / n
    if n == 1:
        return Stats(1, mean, None, None, None, share)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t95(n - 1) * sd / math.sqrt(n)
    return Stats(n, mean, sd, mean - half, mean + half, share)


def fmt(value: Any, digits: int = 4) -> str:
    """One spelling for every number in every output: fixed decimals, '' for missing."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}f}"
    return str(value)


# ------------------------------------------------------------------------------------ collecting
@dataclass
class ReportData:
    """Everything a report shows, read from the ledger."""

    cohort_id: str
    progress: list[dict[str, Any]]
    evaluations: list[dict[str, Any]]
    rankings: list[dict[str, Any]]
    essays: dict[str, dict[str, Any]] = field(default_factory=dict)
    top: int = 10
    scores: list[Score] = field(default_factory=list)  # scored evaluations with their design
    seed: int = DEFAULT_SEED
    resamples: int = DEFAULT_RESAMPLES


def collect_report(ledger: Ledger, cohort_id: str, top: int = 10, *, seed: int = DEFAULT_SEED,
                   resamples: int = DEFAULT_RESAMPLES) -> ReportData:
    """Read the cohort's progress, evaluations (with lineage), scores, rankings and top essays.

    Raises ``NotFound`` when the cohort has no generations.
    """
    progress = views.cohort_status(ledger, cohort_id)
    evaluations = views.query(ledger, """
        SELECT s.evaluation_gen_id, s.essay_gen_id, e.parent_gen_id AS draft_gen_id, e.combo_id,
               d.template_id AS draft_template, d.model_id AS draft_model,
               e.template_id AS essay_template, e.model_id AS essay_model,
               s.rubric, s.evaluator, s.replicate, s.attempt, s.status, s.score, s.parse_status,
               s.parse_error
        FROM cohort_members m
        JOIN scores s ON s.evaluation_gen_id = m.gen_id
        LEFT JOIN gen_state e ON e.gen_id = s.essay_gen_id
        LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id AND d.stage != 'essay'
        WHERE m.cohort_id = ? AND m.stage = 'evaluation'
        ORDER BY s.essay_gen_id, s.rubric, s.evaluator, s.replicate, s.evaluation_gen_id""", (cohort_id,))
    names = views.concept_names(ledger)
    combos = {r["combo_id"]: r for r in views.query(ledger, "SELECT combo_id, concept_ids, level FROM combos")}
    for row in evaluations:
        row["concepts"] = _concept_label(combos.get(row["combo_id"]), names)
    rankings = views.query(ledger, "SELECT * FROM essay_rankings WHERE cohort_id = ? ORDER BY rank, essay_gen_id",
                           (cohort_id,))
    by_essay: dict[str, list[float]] = defaultdict(list)
    for row in evaluations:
        if row["score"] is not None:
            by_essay[row["essay_gen_id"]].append(row["score"])
    for row in rankings:
        row["stats"] = describe(by_essay[row["essay_gen_id"]])
        row["concepts"] = _concept_label(combos.get(row["combo_id"]), names)
    data = ReportData(cohort_id, progress, evaluations, rankings, top=top,
                      scores=read_scores(ledger, cohort_id), seed=seed, resamples=resamples)
    texts = {r["essay_gen_id"]: r["text"] or "" for r in views.query(ledger, """
        SELECT s.essay_gen_id, t.text FROM cohort_essay_scores s
        JOIN gen_state g ON g.gen_id = s.essay_gen_id
        LEFT JOIN texts t ON t.sha256 = COALESCE(g.parsed_hash, g.raw_hash)
        WHERE s.cohort_id = ? AND s.n > 0""", (cohort_id,))}
    for i, row in enumerate(rankings):
        text = texts.get(row["essay_gen_id"], "")
        row["title"] = views.essay_title(text, row["essay_gen_id"])
        if i < top:
            data.essays[row["essay_gen_id"]] = {"text": text, "title": row["title"]}
    return data


def _concept_label(combo: dict[str, Any] | None, names: dict[str, str]) -> str:
    if not combo:
        return ""
    ids = json.loads(combo["concept_ids"] or "[]")
    return " + ".join(names.get(c, c) for c in ids)


# ------------------------------------------------------------------------------------ tables
def summary_rows(data: ReportData) -> list[dict[str, Any]]:
    """summary.csv: score statistics by each factor (templates, models, rubric, evaluator).

    ``mean`` is the plain mean of the level's scores; its 95% interval is the cluster bootstrap of
    ``daydream.read.compare.group_means`` (units: drafts), not a t-interval that would count every
    evaluation as independent. ``units`` is how many independent units the level's scores come from.
    """
    out = []
    for key, _label in FACTORS:
        axis = FACTOR_AXES[key]
        values: dict[Any, list[float]] = defaultdict(list)
        for row in data.scores:
            values[getattr(row, axis)].append(row.score)
        for g in group_means(data.scores, [axis], seed=data.seed, resamples=data.resamples):
            s = describe(values[g.key[0]])
            out.append({"factor": key, "level": label(g.key[0]), "count": g.n, "units": g.n_units,
                        "mean": g.mean, "stdev": s.stdev, "ci95_low": g.ci_low, "ci95_high": g.ci_high,
                        "share_ge_8": s.share_high})
    return out


# ------------------------------------------------------------------------------------ comparisons
# The factors the report compares (combos and replicates are left to daydream compare).
REPORT_FACTORS = ("draft_template", "draft_llm", "essay_template", "essay_llm", "evaluation_template",
                  "evaluation_llm")
COMPARISON_COLUMNS = ["factor", "within", "a", "b", "n_pairs", "n_units", "n_unmatched", "mean_a", "mean_b",
                      "diff", "ci_low", "ci_high", "wins", "ties", "losses", "p", "p_holm"]


def comparison_sets(data: ReportData) -> list[ComparisonSet]:
    """What ``daydream compare COHORT --by F`` gives for every report factor with two or more
    levels, then ``--by S_template --within S_llm`` for each stage with several templates and models
    (does the template's effect depend on the model?). Same function, same seed: same numbers."""
    out = []
    for factor in REPORT_FACTORS:
        if len(levels(data.scores, factor)) > 1:
            out.append(compare(data.scores, factor, seed=data.seed, resamples=data.resamples,
                               cohort_id=data.cohort_id))
    for stage in ("draft", "essay"):
        template, model = f"{stage}_template", f"{stage}_llm"
        if len(levels(data.scores, template)) > 1 and len(levels(data.scores, model)) > 1:
            found = compare(data.scores, template, [model], seed=data.seed, resamples=data.resamples,
                            cohort_id=data.cohort_id)
            if found.comparisons:
                out.append(found)
    return out


def _within_text(within: dict[str, Any] | None) -> str:
    return "; ".join(f"{k}={label(v)}" for k, v in (within or {}).items())


def comparison_rows(sets: Sequence[ComparisonSet]) -> list[dict[str, Any]]:
    """comparisons.csv: one row per comparison, the fields of ``daydream compare --json``."""
    rows = []
    for found in sets:
        for c in found.comparisons:
            row = {k: getattr(c, k) for k in COMPARISON_COLUMNS if k != "within"}
            row["within"] = _within_text(c.within)
            rows.append(row)
    return rows


def template_model_rows(data: ReportData) -> list[dict[str, Any]]:
    """template_model.csv: for the draft and the essay stage, the mean score of every template and
    model combination with its clustered 95% interval."""
    rows = []
    for stage in ("draft", "essay"):
        template, model = f"{stage}_template", f"{stage}_llm"
        if not levels(data.scores, template):
            continue
        for g in group_means(data.scores, [template, model], seed=data.seed, resamples=data.resamples):
            rows.append({"stage": stage, "template": label(g.key[0]), "model": label(g.key[1]), "count": g.n,
                         "units": g.n_units, "mean": g.mean, "ci95_low": g.ci_low, "ci95_high": g.ci_high})
    return rows


def _cell(row: dict[str, Any]) -> str:
    ci = f" [{fmt(row['ci95_low'], 2)}, {fmt(row['ci95_high'], 2)}]" if row["ci95_low"] is not None else ""
    return f"{fmt(row['mean'], 2)}{ci} ({row['units']} units)"


def template_model_tables(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """The template x model rows as one pivot per stage: (stage, header, rows of cells)."""
    out = []
    for stage in ("draft", "essay"):
        mine = [r for r in rows if r["stage"] == stage]
        if not mine:
            continue
        models = sorted({r["model"] for r in mine}, key=lambda m: (m == "(none)", m))
        templates = sorted({r["template"] for r in mine})
        cells = {(r["template"], r["model"]): _cell(r) for r in mine}
        out.append((stage, [f"{stage} template", *models],
                    [[t, *(cells.get((t, m), "") for m in models)] for t in templates]))
    return out


def pivot_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    """pivot.csv: one row per essay, a mean and n per rubric·evaluator pair."""
    pairs = sorted({(r["rubric"], r["evaluator"]) for r in data.evaluations}, key=lambda p: (str(p[0]), str(p[1])))
    cells: dict[tuple[str, tuple[str, str]], list[float]] = defaultdict(list)
    for r in data.evaluations:
        if r["score"] is not None:
            cells[(r["essay_gen_id"], (r["rubric"], r["evaluator"]))].append(r["score"])
    order = [r["essay_gen_id"] for r in data.rankings]
    order += sorted({r["essay_gen_id"] for r in data.evaluations} - set(order))
    header = ["essay_gen_id"]
    for rubric, evaluator in pairs:
        header += [f"{rubric}·{evaluator} mean", f"{rubric}·{evaluator} n"]
    rows = []
    for essay in order:
        row: list[Any] = [essay]
        for pair in pairs:
            xs = cells.get((essay, pair), [])
            row += [sum(xs) / len(xs) if xs else None, len(xs)]
        rows.append(row)
    return header, rows


def reliability_rows(data: ReportData) -> list[dict[str, Any]]:
    """reliability.csv: per rubric, agreement between judges and between replicates, or why not.

    Krippendorff's alpha between judges: each essay is a unit and a judge's value for it is the mean
    of its replicate scores. Between replicates: each (essay, judge) is a unit. ``alpha_note`` and
    ``alpha_replicates_note`` say why an alpha is missing. The parse-failure rate is over
    evaluations that finished (completed or failed).
    """
    out = []
    for rubric in sorted({r["rubric"] for r in data.evaluations}, key=str):
        rows = [r for r in data.evaluations if r["rubric"] == rubric]
        agreement = rubric_agreement(data.scores, rubric)
        finished = [r for r in rows if r["status"] in ("completed", "failed")]
        parse_failures = sum(r["parse_status"] == "parse_failed" for r in rows)
        out.append({
            "rubric": rubric,
            "evaluators": len({r["evaluator"] for r in rows}),
            "essays": agreement.essays,
            "essays_multi_rated": agreement.essays_multi_rated,
            "alpha_ordinal": agreement.alpha_ordinal,
            "alpha_interval": agreement.alpha_interval,
            "alpha_note": agreement.reason or "",
            "alpha_replicates": agreement.alpha_replicates,
            "alpha_replicates_note": agreement.replicates_reason or "",
            "replicate_spread": agreement.replicate_spread,
            "evaluations": len(rows),
            "scored": sum(r["score"] is not None for r in rows),
            "parse_failures": parse_failures,
            "parse_failure_rate": parse_failures / len(finished) if finished else None,
        })
    return out


RELIABILITY_COLUMNS = ["rubric", "evaluators", "essays", "essays_multi_rated", "alpha_ordinal", "alpha_interval",
                       "alpha_note", "alpha_replicates", "alpha_replicates_note", "replicate_spread",
                       "evaluations", "scored", "parse_failures", "parse_failure_rate"]
OFFSET_COLUMNS = ["evaluator", "cells", "units", "offset", "ci95_low", "ci95_high"]
SELF_PREFERENCE_COLUMNS = ["evaluator", "n_own", "n_other", "mean_own", "mean_other", "diff", "ci95_low",
                           "ci95_high", "adjusted", "adjusted_ci95_low", "adjusted_ci95_high"]


@dataclass(frozen=True)
class Judges:
    """The judge checks of a report: offsets and self-preference, each with the reason when empty."""

    offsets: list[dict[str, Any]]
    offsets_note: str | None
    self_preference: list[dict[str, Any]]
    self_preference_note: str | None


def judge_rows(data: ReportData) -> Judges:
    """judges.csv (per-evaluator offsets) and self_preference.csv, from ``daydream.read.reliability``."""
    offsets, offsets_note = evaluator_offsets(data.scores, seed=data.seed, resamples=data.resamples)
    prefs, prefs_note = self_preference(data.scores, seed=data.seed, resamples=data.resamples)
    if not data.scores:
        offsets_note = prefs_note = "no scores yet"
    return Judges(
        [{"evaluator": o.evaluator, "cells": o.cells, "units": o.units, "offset": o.offset,
          "ci95_low": o.ci_low, "ci95_high": o.ci_high} for o in offsets], offsets_note,
        [{"evaluator": p.evaluator, "n_own": p.n_own, "n_other": p.n_other, "mean_own": p.mean_own,
          "mean_other": p.mean_other, "diff": p.diff, "ci95_low": p.ci_low, "ci95_high": p.ci_high,
          "adjusted": p.adjusted, "adjusted_ci95_low": p.adjusted_ci_low,
          "adjusted_ci95_high": p.adjusted_ci_high} for p in prefs], prefs_note)


@dataclass(frozen=True)
class Analysis:
    """Every table the report derives from the scores, computed once for all output files."""

    summary: list[dict[str, Any]]
    comparisons: list[ComparisonSet]
    comparison_rows: list[dict[str, Any]]
    template_model: list[dict[str, Any]]
    reliability: list[dict[str, Any]]
    judges: Judges


def analyse(data: ReportData) -> Analysis:
    """The ``Analysis`` of ``data``."""
    sets = comparison_sets(data)
    return Analysis(summary_rows(data), sets, comparison_rows(sets), template_model_rows(data),
                    reliability_rows(data), judge_rows(data))


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([fmt(v) for v in row])
    return buf.getvalue().encode("utf-8")


def _dict_csv(rows: list[dict[str, Any]], header: Sequence[str]) -> bytes:
    return _csv(header, ([r.get(k) for k in header] for r in rows))


RANKING_COLUMNS = ["rank", "essay_gen_id", "title", "mean", "n", "stdev", "ci95_low", "ci95_high",
                   "combo_id", "concepts", "draft_gen_id", "draft_template", "draft_model",
                   "essay_template", "essay_model"]


def _ranking_dicts(data: ReportData) -> list[dict[str, Any]]:
    out = []
    for r in data.rankings:
        s: Stats = r["stats"]
        out.append({**r, "stdev": s.stdev, "ci95_low": s.ci_low, "ci95_high": s.ci_high})
    return out


# ------------------------------------------------------------------------------------ markdown
_MD = MarkdownIt("js-default")  # raw HTML in essays is escaped, not passed through


def render_markdown(text: str) -> str:
    """Markdown → HTML with raw HTML disabled (model output is untrusted)."""
    return _MD.render(text or "")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _essay_scores(data: ReportData, essay: str) -> list[dict[str, Any]]:
    return [r for r in data.evaluations if r["essay_gen_id"] == essay]


def result_markdown(data: ReportData, ranking: dict[str, Any]) -> str:
    """``results/<gen_id>.md``: scores and lineage up front, then the essay in full."""
    essay = data.essays[ranking["essay_gen_id"]]
    s: Stats = ranking["stats"]
    lines = [
        f"# {essay['title']}", "",
        f"- essay: `{ranking['essay_gen_id']}` (cohort `{data.cohort_id}`, rank {ranking['rank']} of "
        f"{len(data.rankings)})",
        f"- mean score: {fmt(s.mean)} (n = {s.n}; 95% CI {fmt(s.ci_low)} – {fmt(s.ci_high)})",
        f"- concepts: {ranking['concepts'] or '—'} (`{ranking['combo_id']}`)",
        f"- draft: `{ranking['draft_gen_id'] or '—'}` — template {ranking['draft_template'] or '—'}, "
        f"model {ranking['draft_model'] or '—'}",
        f"- essay template {ranking['essay_template']}, model {ranking['essay_model'] or '—'}",
        "",
        _md_table(["rubric", "evaluator", "replicate", "score", "evaluation"],
                  [[r["rubric"], r["evaluator"], r["replicate"], r["score"] if r["score"] is not None
                    else r["parse_status"], r["evaluation_gen_id"]] for r in _essay_scores(data, ranking["essay_gen_id"])]),
        "", "---", "", essay["text"].rstrip(), "",
    ]
    return "\n".join(lines)


def _progress_cost(p: dict[str, Any]) -> Any:
    """The stage's known spend, saying how many generations made calls with no recorded price."""
    if not p.get("unpriced"):
        return p["cost_usd"]
    return f"{fmt(float(p['cost_usd'] or 0))} ({p['unpriced']} unpriced)"


_ATX = re.compile(r"^( {0,3})(#{1,6})(?=[ \t]|$)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def demote_headings(text: str, by: int) -> str:
    """``text`` with every ATX heading ``by`` levels deeper (at most ######), code fences untouched.

    Essays are quoted inside report.md under a "### rank. title" heading; their own headings
    have to nest below it rather than start new top-level sections.
    """
    out, fence = [], ""
    for line in text.split("\n"):
        opened = _FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
        elif opened:
            fence = opened.group(1)
        else:
            line = _ATX.sub(lambda m: m.group(1) + "#" * min(6, len(m.group(2)) + by), line)
        out.append(line)
    return "\n".join(out)


METHOD = ("Pairs: scores equal on every other design axis (combo, the other templates and models, "
          "replicates, rubric, evaluator); scores without a partner are counted as unmatched and left out. "
          "Unit: a draft with everything written from it (an essay when there is no draft); pairs are "
          "averaged within units. 95% CI: cluster bootstrap over units. p: sign-flip permutation test on "
          "the unit differences; p_holm: Holm-adjusted within each table. W/T/L: pairs where A scored "
          "above, equal to, below B.")


def _comparison_header(found: ComparisonSet) -> list[str]:
    return [*found.within, "a", "b", "pairs", "units", "unmatched", "mean_a", "mean_b", "diff", "95% CI",
            "W/T/L", "p", "p_holm"]


def _comparison_cells(found: ComparisonSet, digits: int = 4) -> list[list[Any]]:
    rows = []
    for c in found.comparisons:
        ci = f"{fmt(c.ci_low, digits)} – {fmt(c.ci_high, digits)}" if c.ci_low is not None else ""
        rows.append([*(label((c.within or {}).get(w)) for w in found.within), c.a, c.b, c.n_pairs, c.n_units,
                     c.n_unmatched, c.mean_a, c.mean_b, c.diff, ci, f"{c.wins}/{c.ties}/{c.losses}", c.p,
                     c.p_holm])
    return rows


def _comparison_title(found: ComparisonSet) -> str:
    name = AXIS[found.factor].label
    if found.within:
        name += " within " + ", ".join(AXIS[w].label.lower() for w in found.within)
    return name


def _settings(data: ReportData) -> str:
    return (f"{data.resamples:,} bootstrap resamples, seed {data.seed}; p is exact up to "
            f"{EXACT_SIGN_FLIP_UNITS} units, else estimated from {data.resamples:,} random sign patterns "
            f"(so never below {1 / (data.resamples + 1):.2g})")


def report_markdown(data: ReportData, analysis: Analysis) -> str:
    """report.md: progress, rankings, comparisons, means, judges and the top essays in full."""
    out = [f"# Report: cohort {data.cohort_id}", "", "## Progress", "",
           _md_table(["stage", "planned", "completed", "failed", "pending", "calls", "tokens", "cost_usd"],
                     [[p["stage"], p["planned"], p["completed"], p["failed"], p["pending"], p["calls"],
                       p["tokens"], _progress_cost(p)] for p in data.progress]),
           "", "## Rankings", ""]
    out.append(_md_table(["rank", "essay", "mean", "n", "95% CI", "draft template", "essay template",
                          "essay model", "concepts"],
                         [[r["rank"], r["essay_gen_id"], r["mean"], r["n"],
                           f"{fmt(r['stats'].ci_low)} – {fmt(r['stats'].ci_high)}", r["draft_template"],
                           r["essay_template"], r["essay_model"], r["concepts"]] for r in data.rankings])
               if data.rankings else "No scored essays yet.")
    out += ["", "## Comparisons (A − B)", "", f"{METHOD} {_settings(data)}; the same numbers as "
            f"`daydream compare {data.cohort_id} --by FACTOR`.", ""]
    if not analysis.comparisons:
        out += ["No factor has two or more levels with scores: nothing to compare.", ""]
    for found in analysis.comparisons:
        out += [f"### {_comparison_title(found)}", "",
                _md_table(_comparison_header(found), _comparison_cells(found)), ""]
        notes = [f"Skipped {line}." for line in found.skipped]
        few = few_units_note(found.comparisons)
        notes += [f"Note: {few.strip()}"] if few else []
        notes += [f"Note: {found.scales}."] if found.scales else []
        out += [*notes, ""] if notes else []
    out += ["## Templates × models", "",
            "Mean score of each template and model, with its clustered 95% interval and the number of units.", ""]
    tables = template_model_tables(analysis.template_model)
    for _stage, header, rows in tables:
        out += [_md_table(header, rows), ""]
    if not tables:
        out += ["No scored essays yet.", ""]
    out += ["## Scores by factor", "",
            "Plain means of every score; the 95% interval resamples units (drafts), not single evaluations.", "",
            _md_table(["factor", "level", "count", "units", "mean", "stdev", "95% CI", "share ≥ 8"],
                      [[s["factor"], s["level"], s["count"], s["units"], s["mean"], s["stdev"],
                        f"{fmt(s['ci95_low'])} – {fmt(s['ci95_high'])}", s["share_ge_8"]]
                       for s in analysis.summary]),
            "", "## Judges", "", ALPHA_EXPLAINED, "",
            _md_table(["rubric", "evaluators", "essays", "alpha between judges (interval)", "alpha (ordinal)",
                       "alpha between replicates", "replicate spread", "parse-failure rate"],
                      [[r["rubric"], r["evaluators"], r["essays"], _alpha_cell(r["alpha_interval"], r["alpha_note"]),
                        r["alpha_ordinal"], _alpha_cell(r["alpha_replicates"], r["alpha_replicates_note"]),
                        r["replicate_spread"], r["parse_failure_rate"]] for r in analysis.reliability]),
            "", "### Evaluator offsets", "",
            "How much more generous each judge is than the judges' mean on the same essays and rubrics.", ""]
    judges = analysis.judges
    out.append(_md_table(["evaluator", "cells", "units", "offset", "95% CI"],
                         [[o["evaluator"], o["cells"], o["units"], o["offset"],
                           f"{fmt(o['ci95_low'])} – {fmt(o['ci95_high'])}"] for o in judges.offsets])
               if judges.offsets else f"Not computed: {judges.offsets_note}.")
    out += ["", "### Self-preference", "",
            "A judge's mean score on essays its own model wrote minus its mean on other models' essays; "
            "adjusted: the same taken relative to the other judges' scores of each essay (a better writer "
            "is not mistaken for a partial judge).", ""]
    out.append(_md_table(["evaluator", "own", "other", "mean own", "mean other", "diff", "95% CI",
                          "adjusted", "adjusted 95% CI"],
                         [[p["evaluator"], p["n_own"], p["n_other"], p["mean_own"], p["mean_other"], p["diff"],
                           f"{fmt(p['ci95_low'])} – {fmt(p['ci95_high'])}", p["adjusted"],
                           f"{fmt(p['adjusted_ci95_low'])} – {fmt(p['adjusted_ci95_high'])}"
                           if p["adjusted"] is not None else ""] for p in judges.self_preference])
               if judges.self_preference else f"Not computed: {judges.self_preference_note}.")
    out += ["", f"## Top {min(data.top, len(data.rankings))} essays", ""]
    for r in data.rankings[:data.top]:
        essay = data.essays[r["essay_gen_id"]]
        out += [f"### {r['rank']}. {essay['title']} — {fmt(r['mean'])}", "",
                f"`{r['essay_gen_id']}` · {r['concepts']} · draft {r['draft_template'] or '—'} "
                f"({r['draft_model'] or '—'}) · essay {r['essay_template']} ({r['essay_model'] or '—'})",
                "", demote_headings(essay["text"].rstrip(), 3), ""]
    return "\n".join(out).rstrip() + "\n"


def _alpha_cell(alpha: float | None, note: str) -> str:
    """An alpha, or why there is none (never a blank cell)."""
    return fmt(alpha) if alpha is not None else f"— ({note})"


# ------------------------------------------------------------------------------------ charts (SVG)
def _e(value: Any) -> str:
    return html.escape(fmt(value) if not isinstance(value, str) else value, quote=True)


def histogram_svg(rubric: str, scores: Sequence[float]) -> str:
    """Score distribution of one rubric: counts of scores rounded to 0–9."""
    counts = [0] * 10
    for x in scores:
        counts[min(9, max(0, int(math.floor(x + 0.5))))] += 1
    top = max(counts) or 1
    w, h, pad, bar = 300, 150, 24, 24
    parts = [f'<svg class="chart histogram" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>Score distribution: {_e(rubric)}</title>',
             f'<text x="4" y="14" class="label">{_e(rubric)} (n = {len(scores)})</text>']
    for i, c in enumerate(counts):
        bh = (h - 2 * pad - 8) * c / top
        x = pad + i * (bar + 2)
        y = h - pad - bh
        parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{bh:.1f}" class="bar">'
                     f'<title>score {i}: {c}</title></rect>')
        parts.append(f'<text x="{x + bar / 2}" y="{h - pad + 14}" text-anchor="middle" class="tick">{i}</text>')
        if c:
            parts.append(f'<text x="{x + bar / 2}" y="{y - 3:.1f}" text-anchor="middle" class="tick">{c}</text>')
    parts.append("</svg>")
    return "".join(parts)


def comparison_svg(label: str, rows: list[dict[str, Any]]) -> str:
    """Means with 95% confidence intervals for each level of one factor, on a 0–9 axis."""
    # The left margin fits the longest level name (~6.2 px a character): cut names can collide.
    longest = max((len(str(r["level"])) for r in rows), default=0)
    left, right, row_h, top_pad = max(170, 16 + round(longest * 6.2)), 20, 22, 30
    w = left + 450
    h = top_pad + row_h * len(rows) + 26
    scale = (w - left - right) / 9

    def x(v: float) -> float:
        return left + max(0.0, min(9.0, v)) * scale

    parts = [f'<svg class="chart comparison" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{_e(label)}: mean score with 95% CI</title>',
             f'<text x="4" y="16" class="label">{_e(label)}: mean score, 95% confidence interval</text>']
    for t in range(10):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top_pad - 6}" x2="{x(t):.1f}" y2="{h - 22}" class="grid"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{h - 8}" text-anchor="middle" class="tick">{t}</text>')
    for i, r in enumerate(rows):
        cy = top_pad + i * row_h + row_h / 2
        name = str(r["level"])
        parts.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" class="tick">{_e(name)}</text>')
        if r["ci95_low"] is not None:
            parts.append(f'<line x1="{x(r["ci95_low"]):.1f}" y1="{cy:.1f}" x2="{x(r["ci95_high"]):.1f}" '
                         f'y2="{cy:.1f}" class="ci"/>')
        parts.append(f'<circle cx="{x(r["mean"]):.1f}" cy="{cy:.1f}" r="4" class="dot"><title>{_e(name)}: '
                     f'mean {fmt(r["mean"], 2)}, n {r["count"]}, 95% CI {fmt(r["ci95_low"], 2)}–'
                     f'{fmt(r["ci95_high"], 2)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def forest_svg(found: ComparisonSet) -> str:
    """A forest plot of one comparison table: each A − B difference with its 95% interval, around 0."""
    rows = [c for c in found.comparisons if c.diff is not None]
    names = []
    for c in rows:
        prefix = ", ".join(label(v) for v in (c.within or {}).values())
        names.append((f"{prefix}: " if prefix else "") + f"{c.a} − {c.b}")
    longest = max((len(n) for n in names), default=0)
    left, right, row_h, top_pad = max(200, 16 + round(longest * 6.2)), 24, 22, 30
    w = left + 420
    h = top_pad + row_h * max(1, len(rows)) + 26
    values = [0.0] + [v for c in rows for v in (c.diff, c.ci_low, c.ci_high) if v is not None]
    span = max(abs(v) for v in values) or 1.0
    span = math.ceil(span * 2) / 2  # a half-point grid keeps ticks readable
    scale = (w - left - right) / (2 * span)

    def x(v: float) -> float:
        return left + (v + span) * scale

    title = _comparison_title(found)
    parts = [f'<svg class="chart forest" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}: difference A − B with 95% CI</title>',
             f'<text x="4" y="16" class="label">{_e(title)}: A − B, 95% CI</text>']
    step = 0.5 if span <= 2 else 1.0 if span <= 5 else 2.0
    t = -span
    while t <= span + 1e-9:
        parts.append(f'<line x1="{x(t):.1f}" y1="{top_pad - 6}" x2="{x(t):.1f}" y2="{h - 22}" '
                     f'class="{"zero" if abs(t) < 1e-9 else "grid"}"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{h - 8}" text-anchor="middle" class="tick">{t:g}</text>')
        t += step
    for i, (c, name) in enumerate(zip(rows, names)):
        cy = top_pad + i * row_h + row_h / 2
        parts.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end" class="tick">{_e(name)}</text>')
        if c.ci_low is not None and c.ci_high is not None:
            parts.append(f'<line x1="{x(c.ci_low):.1f}" y1="{cy:.1f}" x2="{x(c.ci_high):.1f}" '
                         f'y2="{cy:.1f}" class="ci"/>')
        parts.append(f'<circle cx="{x(c.diff):.1f}" cy="{cy:.1f}" r="4" class="dot"><title>{_e(name)}: '
                     f'{fmt(c.diff, 3)}, 95% CI {fmt(c.ci_low, 3)}–{fmt(c.ci_high, 3)}, {c.n_units} units, '
                     f'{c.n_pairs} pairs, p_holm {fmt(c.p_holm, 4)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _heat_colour(v: float) -> tuple[str, str]:
    t = max(0.0, min(1.0, v / 9))
    lo, hi = (247, 251, 255), (8, 48, 107)
    rgb = tuple(round(a + (b - a) * t) for a, b in zip(lo, hi))
    return "#%02x%02x%02x" % rgb, ("#ffffff" if t > 0.55 else "#111111")


def heatmap_svg(data: ReportData, limit: int = 40) -> str:
    """Essay × rubric mean scores (best essays first), coloured from 0 (light) to 9 (dark)."""
    rubrics = sorted({r["rubric"] for r in data.evaluations}, key=str)
    essays = [r["essay_gen_id"] for r in data.rankings[:limit]]
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in data.evaluations:
        if r["score"] is not None:
            cells[(r["essay_gen_id"], r["rubric"])].append(r["score"])
    # Column labels are the full rubric ids, slanted: rubrics often share long prefixes, so a cut
    # label can make two columns read the same. Room for them: ~6 px per character at 40 degrees.
    longest = max((len(str(r)) for r in rubrics), default=0)
    left, cw, ch = 150, 70, 20
    top_pad = max(60, 34 + round(longest * 6.2 * 0.643))
    w = left + cw * max(1, len(rubrics)) + max(10, round(longest * 6.2 * 0.766) - cw // 2)
    h = top_pad + ch * max(1, len(essays)) + 10
    caption = "Essay × rubric mean score"
    if len(data.rankings) > limit:
        caption += f" (best {limit} of {len(data.rankings)} essays)"
    parts = [f'<svg class="chart heatmap" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>Essay × rubric mean scores</title>',
             f'<text x="4" y="16" class="label">{_e(caption)}</text>']
    for j, rubric in enumerate(rubrics):
        x, y = left + j * cw + cw / 2 - 4, top_pad - 6
        parts.append(f'<text x="{x}" y="{y}" transform="rotate(-40 {x} {y})" text-anchor="start" '
                     f'class="tick">{_e(rubric)}</text>')
    for i, essay in enumerate(essays):
        y = top_pad + i * ch
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" class="tick">{_e(essay)}</text>')
        for j, rubric in enumerate(rubrics):
            xs = cells.get((essay, rubric))
            x0 = left + j * cw
            if not xs:
                parts.append(f'<rect x="{x0}" y="{y}" width="{cw - 2}" height="{ch - 2}" class="empty"/>')
                continue
            mean = sum(xs) / len(xs)
            fill, ink = _heat_colour(mean)
            parts.append(f'<rect x="{x0}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}">'
                         f'<title>{_e(essay)} · {_e(rubric)}: {fmt(mean, 2)} (n {len(xs)})</title></rect>')
            parts.append(f'<text x="{x0 + cw / 2 - 1}" y="{y + 14}" text-anchor="middle" '
                         f'style="fill:{ink}" class="tick">{fmt(mean, 1)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------------------ HTML page
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:70rem;
 padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
svg .bar{fill:#3b6ea8} svg .dot{fill:#c0392b} svg .ci{stroke:#c0392b;stroke-width:2}
svg .grid{stroke:#eee} svg .zero{stroke:#888} svg .empty{fill:#f2f2f2} svg text{font-size:11px;fill:#333}
svg .label{font-size:12px;font-weight:600}
article.essay{border:1px solid #ddd;border-radius:6px;padding:1rem 1.4rem;margin:1.2rem 0}
article.essay header{color:#555;font-size:.9rem;margin-bottom:.6rem}
article.essay h1{font-size:1.6rem} article.essay h2{font-size:1.3rem;border:0}
.score{font-weight:700;color:#c0392b}
"""


def _html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>")
        for v in row:
            cls = ' class="num"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            out.append(f"<td{cls}>{_e(v)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def report_html(data: ReportData, analysis: Analysis) -> str:
    """report.html: one self-contained page (inline CSS and SVG, no scripts, no external links)."""
    title = f"daydream report: cohort {data.cohort_id}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{len(data.rankings)} scored essays, {sum(r['score'] is not None for r in data.evaluations)} "
            f"scores from {len(data.evaluations)} evaluations.</p>",
            "<h2>Progress</h2>",
            _html_table(["stage", "planned", "completed", "failed", "pending", "calls", "tokens", "cost (USD)"],
                        [[p["stage"], p["planned"], p["completed"], p["failed"], p["pending"], p["calls"],
                          p["tokens"], _progress_cost(p)] for p in data.progress]),
            '<h2 id="distribution">Score distribution per rubric</h2><div class="charts">']
    by_rubric: dict[str, list[float]] = defaultdict(list)
    for r in data.evaluations:
        if r["score"] is not None:
            by_rubric[r["rubric"]].append(r["score"])
    body += [histogram_svg(rubric, by_rubric[rubric]) for rubric in sorted(by_rubric)]
    body.append('</div><h2 id="comparisons">Comparisons (A − B)</h2>')
    body.append(f"<p>{html.escape(METHOD)} {html.escape(_settings(data))}; the same numbers as "
                f"<code>daydream compare {html.escape(data.cohort_id)} --by FACTOR</code>.</p>")
    if not analysis.comparisons:
        body.append("<p>No factor has two or more levels with scores: nothing to compare.</p>")
    for found in analysis.comparisons:
        body.append(f"<h3>{html.escape(_comparison_title(found))}</h3>")
        body.append(forest_svg(found))
        body.append(_html_table(_comparison_header(found), _comparison_cells(found, 3)))
        body += [f"<p>Skipped {html.escape(line)}.</p>" for line in found.skipped]
        few = few_units_note(found.comparisons)
        if few:
            body.append(f"<p>Note: {html.escape(few.strip())}</p>")
        if found.scales:
            body.append(f"<p>Note: {html.escape(found.scales)}.</p>")
    body.append('<h2 id="template-model">Templates × models</h2>')
    tables = template_model_tables(analysis.template_model)
    body.append("<p>Mean score of each template and model, with its clustered 95% interval and the number "
                "of units.</p>" if tables else "<p>No scored essays yet.</p>")
    body += [_html_table(header, rows) for _stage, header, rows in tables]
    body.append('<h2 id="comparison">Means by factor</h2><div class="charts">')
    for key, name in FACTORS:
        rows = [s for s in analysis.summary if s["factor"] == key]
        if rows:
            body.append(comparison_svg(name, rows))
    body.append('</div><h2 id="heatmap">Essays × rubrics</h2>')
    body.append(heatmap_svg(data) if data.rankings else "<p>No scored essays yet.</p>")
    body.append('<h2 id="rankings">Rankings</h2>')
    body.append(_html_table(
        ["rank", "essay", "title", "mean", "n", "95% CI", "draft template", "draft model", "essay template",
         "essay model", "concepts"],
        [[r["rank"], r["essay_gen_id"], r["title"], r["mean"], r["n"],
          f"{fmt(r['stats'].ci_low, 2)} – {fmt(r['stats'].ci_high, 2)}", r["draft_template"], r["draft_model"],
          r["essay_template"], r["essay_model"], r["concepts"]] for r in data.rankings]))
    body.append('<h2 id="summary">Scores by factor</h2>')
    body.append("<p>Plain means of every score; the 95% interval resamples units (drafts), not single "
                "evaluations.</p>")
    body.append(_html_table(["factor", "level", "count", "units", "mean", "stdev", "95% CI low", "95% CI high",
                             "share ≥ 8"],
                            [[s["factor"], s["level"], s["count"], s["units"], s["mean"], s["stdev"], s["ci95_low"],
                              s["ci95_high"], s["share_ge_8"]] for s in analysis.summary]))
    body.append('<h2 id="judges">Judges</h2>')
    body.append(f"<p>{html.escape(ALPHA_EXPLAINED)}</p>")
    body.append(_html_table(["rubric", "evaluators", "essays", "alpha between judges (interval)", "alpha (ordinal)",
                             "alpha between replicates", "replicate spread", "parse failures", "parse-failure rate"],
                            [[r["rubric"], r["evaluators"], r["essays"],
                              _alpha_cell(r["alpha_interval"], r["alpha_note"]), r["alpha_ordinal"],
                              _alpha_cell(r["alpha_replicates"], r["alpha_replicates_note"]),
                              r["replicate_spread"], r["parse_failures"], r["parse_failure_rate"]]
                             for r in analysis.reliability]))
    judges = analysis.judges
    body.append("<h3>Evaluator offsets</h3><p>How much more generous each judge is than the judges' mean on "
                "the same essays and rubrics.</p>")
    body.append(_html_table(["evaluator", "cells", "units", "offset", "95% CI low", "95% CI high"],
                            [[o["evaluator"], o["cells"], o["units"], o["offset"], o["ci95_low"], o["ci95_high"]]
                             for o in judges.offsets])
                if judges.offsets else f"<p>Not computed: {html.escape(judges.offsets_note or '')}.</p>")
    body.append("<h3>Self-preference</h3><p>A judge's mean score on essays its own model wrote minus its mean "
                "on other models' essays; adjusted: the same taken relative to the other judges' scores of "
                "each essay.</p>")
    body.append(_html_table(["evaluator", "own", "other", "mean own", "mean other", "diff", "95% CI low",
                             "95% CI high", "adjusted", "adjusted CI low", "adjusted CI high"],
                            [[p[k] for k in SELF_PREFERENCE_COLUMNS] for p in judges.self_preference])
                if judges.self_preference
                else f"<p>Not computed: {html.escape(judges.self_preference_note or '')}.</p>")
    body.append(f'<h2 id="essays">Top {min(data.top, len(data.rankings))} essays</h2>')
    for r in data.rankings[:data.top]:
        essay = data.essays[r["essay_gen_id"]]
        scores = ", ".join(f"{html.escape(str(s['rubric']))}/{html.escape(str(s['evaluator']))}: "
                           f"{fmt(s['score'], 1) if s['score'] is not None else s['parse_status']}"
                           for s in _essay_scores(data, r["essay_gen_id"]))
        body.append(
            f'<article class="essay" id="{_e(r["essay_gen_id"])}"><header>#{r["rank"]} · '
            f'<span class="score">{fmt(r["mean"], 2)}</span> (n {r["n"]}) · <code>{_e(r["essay_gen_id"])}</code>'
            f' · {_e(r["concepts"])} · draft {_e(r["draft_template"] or "—")} ({_e(r["draft_model"] or "—")})'
            f' · essay {_e(r["essay_template"])} ({_e(r["essay_model"] or "—")})<br>{scores}</header>'
            f'{render_markdown(essay["text"])}</article>')
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


# ------------------------------------------------------------------------------------ publishing
def render_report(data: ReportData) -> dict[str, bytes]:
    """Every output file of the report, by relative path, as bytes."""
    analysis = analyse(data)
    pivot_header, pivot = pivot_rows(data)
    files = {
        "scores.csv": _dict_csv(data.evaluations, SCORE_COLUMNS),
        "pivot.csv": _csv(pivot_header, pivot),
        "rankings.csv": _dict_csv(_ranking_dicts(data), RANKING_COLUMNS),
        "summary.csv": _dict_csv(analysis.summary, ["factor", "level", "count", "units", "mean", "stdev",
                                                    "ci95_low", "ci95_high", "share_ge_8"]),
        "comparisons.csv": _dict_csv(analysis.comparison_rows, COMPARISON_COLUMNS),
        "template_model.csv": _dict_csv(analysis.template_model, ["stage", "template", "model", "count", "units",
                                                                  "mean", "ci95_low", "ci95_high"]),
        "reliability.csv": _dict_csv(analysis.reliability, RELIABILITY_COLUMNS),
        "judges.csv": _dict_csv(analysis.judges.offsets, OFFSET_COLUMNS),
        "self_preference.csv": _dict_csv(analysis.judges.self_preference, SELF_PREFERENCE_COLUMNS),
        "report.md": report_markdown(data, analysis).encode("utf-8"),
        "report.html": report_html(data, analysis).encode("utf-8"),
    }
    for r in data.rankings[:data.top]:
        files[f"results/{result_file_name(r['essay_gen_id'])}"] = result_markdown(data, r).encode("utf-8")
    return files


def default_out_dir(cohort_id: str) -> Path:
    """``reports/<cohort>``, the cohort id made a single safe folder name.

    Cohort ids come from spec file names and imports; one holding ``/`` or ``..`` must not place
    the report outside ``reports/``.
    """
    name = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in cohort_id)
    if not name.strip("."):
        name = "_" + name
    elif name.startswith("."):
        name = "_" + name[1:]
    return Path("reports") / name


def result_file_name(gen_id: str) -> str:
    """``<gen_id>.md``, with anything but letters, digits, ``-`` and ``_`` replaced (imported ids vary)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in gen_id) + ".md"


@dataclass(frozen=True)
class PublishedReport:
    """Where a report went, what it wrote (relative path → sha256) and the event that records it."""

    out_dir: Path
    files: dict[str, str]
    seq: int | None  # None: not recorded (the ledger is read-only)


def _stale_results(ledger: Ledger, target: Path, current: set[str]) -> list[Path]:
    """Essay files an earlier report wrote into ``target`` that this one does not.

    Without this, a report with a smaller --top (or after the ranking changed) would leave the old
    top essays in results/ next to the new ones. Only files a ``ReportPublished`` event records
    for this folder, still byte-identical to what it recorded, are removed: anything else in the
    folder, or an essay file edited since, is left alone.
    """
    where = str(target.resolve())
    recorded: dict[str, set[str]] = defaultdict(set)
    for event in ledger.events(type=REPORT_PUBLISHED):
        if event.payload.get("out_dir") == where:
            for name, digest in (event.payload.get("files") or {}).items():
                if name.startswith("results/") and name not in current:
                    recorded[name].add(digest)
    stale = []
    for name, digests in sorted(recorded.items()):
        path = target / name
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() in digests:
            stale.append(path)
    return stale


def publish_report(ledger: Ledger, cohort_id: str, out_dir: str | Path, top: int = 10, *,
                   seed: int = DEFAULT_SEED, resamples: int = DEFAULT_RESAMPLES) -> PublishedReport:
    """Write the cohort's report into ``out_dir`` and record one ``ReportPublished`` event.

    ``seed`` and ``resamples`` drive every bootstrap and permutation draw (as in ``daydream
    compare``), so the same ledger and options give byte-identical files. A ledger opened read-only
    gets the files all the same, unrecorded (``seq`` None).
    """
    if top < 0:
        raise UsageError(f"--top must be 0 or more, got {top}")
    if resamples < 1:
        raise UsageError(f"--resamples must be at least 1, got {resamples}")
    if seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {seed}")
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise UsageError(f"report folder {str(target)!r} is a file; give a folder with --out")
    data = collect_report(ledger, cohort_id, top, seed=seed, resamples=resamples)
    files = render_report(data)
    try:
        for name, content in files.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        for path in _stale_results(ledger, target, set(files)):
            path.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write the report into {str(target)!r}: {exc.strerror}") from None
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in sorted(files.items())}
    if ledger.readonly:
        return PublishedReport(target, hashes, None)
    [event] = ledger.append([ReportPublished(cohort_id=cohort_id, out_dir=str(target.resolve()), files=hashes).new()])
    return PublishedReport(target, hashes, event.seq)
