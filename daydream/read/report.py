"""The cohort report: CSV tables, a Markdown summary, a self-contained HTML page, and one event.

``collect_report`` reads a cohort -- its evaluations in one pass (``daydream.read.score_table``), its
progress, rankings and essay texts -- into ``ReportData``; ``render_report`` turns it into file
contents (deterministic: no timestamps, sorted rows, fixed number formats, a fixed bootstrap seed,
so two runs give identical files); ``publish_report`` writes them, the large tables a block at a
time, and records one ``ReportPublished`` event with the sha256 of every file. The HTML page has no
external resources: its charts are inline SVG and its essays are Markdown rendered on the server.

Every interval on a mean or a difference comes from ``daydream.read.compare`` (cluster bootstrap over
drafts, see its docstring), and the comparisons section is exactly what ``daydream compare`` prints
for each factor: the report calls the same function with the same seed.

Scales: when a cohort's rubrics use different scales, everything that pools rubrics (rankings,
means by factor, comparisons, judge offsets) is on ``score_norm``, each score's 0-1 position on its
rubric's scale, as ``daydream compare`` reads it, and the report says so; what belongs to one rubric
(its histogram, its column of the heat map and of pivot.csv, its agreement) stays on that rubric's
own scale. A cohort on one scale is shown on that scale.
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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from daydream.read import views
from daydream.read.compare import (AXIS, DEFAULT_RESAMPLES, DEFAULT_SEED, EXACT_SIGN_FLIP_UNITS, MEAN_KEY, ComparisonSet,
                              cluster_mean_intervals, compare, few_units_note, label, levels, mean_groups, means_from,
                              scale_note, t95)
from daydream.errors import UsageError
from daydream.ledger.events import REPORT_PUBLISHED, ReportPublished
from daydream.ledger.store import Ledger
from daydream.read.reliability import (ALPHA_EXPLAINED, Offset, offset_groups, offsets_from, rubric_agreement,
                                  self_preference)
from daydream.read.score_table import Column, Evaluations, ScoreTable, fetch_chunks, group_codes, read_evaluations

HIGH_SCORE = 8.0  # "share ≥ 8" in summary.csv: the bar for an essay worth reading, on the 0-9 scale ...
HIGH_SHARE = HIGH_SCORE / 9  # ... which is this far up any other scale
DEFAULT_SCALE = (0.0, 9.0)  # what a cohort with no scores yet is drawn on
RANKING_ROWS = 100  # essays listed in report.md and report.html (rankings.csv holds them all)
FACTORS = (("draft_template", "Draft template"), ("draft_model", "Draft model"),
           ("essay_template", "Essay template"), ("essay_model", "Essay model"),
           ("rubric", "Rubric"), ("evaluator", "Evaluator"))
# The same factors by their design-axis names (what daydream compare --by takes).
FACTOR_AXES = {"draft_template": "draft_template", "draft_model": "draft_llm",
               "essay_template": "essay_template", "essay_model": "essay_llm",
               "rubric": "evaluation_template", "evaluator": "evaluation_llm"}
SCORE_COLUMNS = ["evaluation_gen_id", "essay_gen_id", "draft_gen_id", "combo_id", "concepts",
                 "draft_template", "draft_model", "essay_template", "essay_model", "rubric",
                 "evaluator", "replicate", "attempt", "status", "score", "parse_status", "parse_error",
                 "scale_min", "scale_max", "score_norm"]


def _np() -> Any:
    import numpy

    return numpy


# ------------------------------------------------------------------------------------ statistics
@dataclass(frozen=True)
class Stats:
    """Count, mean, sample standard deviation, 95% confidence interval and share ≥ 8 of some scores."""

    n: int
    mean: float | None
    stdev: float | None
    ci_low: float | None
    ci_high: float | None
    share_high: float | None


NO_STATS = Stats(0, None, None, None, None, None)


def grouped_stats(group: Any, values: Any, high: Any, groups: int) -> list[Stats]:
    """``Stats`` of ``values`` per group id (``0 .. groups - 1``); ``high`` marks the scores at or
    above the bar of ``share_high``. The 95% interval is mean ± t · sd / √n (Student's t)."""
    np = _np()
    count = np.bincount(group, minlength=groups)
    safe = np.maximum(count, 1)
    mean = np.bincount(group, values, groups) / safe
    squares = np.bincount(group, (values - mean[group]) ** 2, groups)
    share = np.bincount(group, high.astype(float), groups) / safe
    out = []
    for g, n in enumerate(count.tolist()):
        if n == 0:
            out.append(NO_STATS)
        elif n == 1:
            out.append(Stats(1, float(mean[g]), None, None, None, float(share[g])))
        else:
            sd = math.sqrt(float(squares[g]) / (n - 1))
            half = t95(n - 1) * sd / math.sqrt(n)
            out.append(Stats(n, float(mean[g]), sd, float(mean[g]) - half, float(mean[g]) + half, float(share[g])))
    return out


def fmt(value: Any, digits: int = 4) -> str:
    """One spelling for every number in every output: fixed decimals, '' for missing."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}f}"
    return str(value)


def scale_label(scale: tuple[float, float]) -> str:
    return f"{scale[0]:g}–{scale[1]:g}"


# ------------------------------------------------------------------------------------ collecting
@dataclass
class ReportData:
    """Everything a report shows, read from the ledger.

    ``evaluation_table`` holds every evaluation of the cohort column by column (``scores`` the scored ones
    with their design, as ``daydream compare`` reads them; ``evaluations`` the same as rows, as
    scores.csv has them); ``rankings`` one dict per ranked essay, best first, with its ``stats``,
    ``title`` and ``concepts``; ``essays`` the full text of the ``top`` best.
    """

    cohort_id: str
    progress: list[dict[str, Any]]
    evaluation_table: Evaluations
    rankings: list[dict[str, Any]]
    essays: dict[str, dict[str, Any]] = field(default_factory=dict)
    top: int = 10
    scores: ScoreTable | None = None
    seed: int = DEFAULT_SEED
    resamples: int = DEFAULT_RESAMPLES
    concepts: dict[str, str] = field(default_factory=dict)  # combo id → its concepts' names

    def __post_init__(self) -> None:
        if self.scores is None:
            self.scores = self.evaluation_table.scores()

    @property
    def table(self) -> ScoreTable:
        assert self.scores is not None
        return self.scores

    @property
    def mixed(self) -> bool:
        """True when the rubrics' scales differ, so pooled numbers are on score_norm (0-1)."""
        return self.evaluation_table.mixed

    @cached_property
    def scale(self) -> tuple[float, float]:
        """The scale pooled numbers are on: 0-1 when scales mix, else the cohort's one scale."""
        if self.mixed:
            return (0.0, 1.0)
        found = self.evaluation_table.scale_pairs(self.evaluation_table.scored)
        return found[0] if found else DEFAULT_SCALE

    @cached_property
    def scale_text(self) -> str:
        """One sentence on the scale pooled numbers are on."""
        note = scale_note(self.table)
        if note:
            return f"Scores: {note}."
        return f"Scores are on the rubrics' scale, {scale_label(self.scale)}."

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        """Every evaluation as a dict of ``SCORE_COLUMNS`` (scores.csv's rows, values unformatted), in
        scores.csv's order. Made on each access: the report itself reads ``evaluation_table``."""
        return list(evaluation_rows(self))

    @cached_property
    def parse_status(self) -> tuple[Column, Column]:
        """Every evaluation's ``parse_status`` and ``parse_error`` (as the scores view has them)."""
        return _parse_status(self.evaluation_table)


def collect_report(ledger: Ledger, cohort_id: str, top: int = 10, *, seed: int = DEFAULT_SEED,
                   resamples: int = DEFAULT_RESAMPLES) -> ReportData:
    """Read the cohort's progress, evaluations (with lineage), rankings and the best essays' texts.

    Raises ``NotFound`` when the cohort has no generations.
    """
    progress = views.cohort_status(ledger, cohort_id)
    evaluations = read_evaluations(ledger, cohort_id)
    names = views.concept_names(ledger)
    concepts = {r["combo_id"]: " + ".join(names.get(c, c) for c in json.loads(r["concept_ids"] or "[]"))
                for r in views.query(ledger, "SELECT combo_id, concept_ids FROM combos")}
    rankings = _dicts(ledger, "SELECT * FROM essay_rankings WHERE cohort_id = ? ORDER BY rank, essay_gen_id",
                      (cohort_id,))
    # Each essay's statistics over its scores (on the scale the ranking uses).
    essay = evaluations.columns["essay_gen_id"]
    scored = evaluations.scored
    stats = grouped_stats(essay.codes[scored], evaluations.compared()[scored], _high(evaluations)[scored],
                          len(essay.values))
    stats_of = {v: stats[i] for i, v in enumerate(essay.values)}
    for row in rankings:
        row["stats"] = stats_of.get(row["essay_gen_id"], NO_STATS)
        row["concepts"] = concepts.get(row["combo_id"], "")
    data = ReportData(cohort_id, progress, evaluations, rankings, top=top, seed=seed, resamples=resamples,
                      concepts=concepts)
    # Titles of every ranked essay, full texts of the best: read a block at a time, so the essays of
    # a large cohort are never all in memory.
    best = {r["essay_gen_id"] for r in rankings[:top]}
    titles: dict[str, str] = {}
    for essay_id, text in _stream(ledger, """
            SELECT s.essay_gen_id, t.text FROM cohort_essay_scores s
            JOIN gen_state g ON g.gen_id = s.essay_gen_id
            LEFT JOIN texts t ON t.sha256 = COALESCE(g.parsed_hash, g.raw_hash)
            WHERE s.cohort_id = ? AND s.n > 0""", (cohort_id,)):
        titles[essay_id] = views.essay_title(text, essay_id)
        if essay_id in best:
            data.essays[essay_id] = {"text": text or "", "title": titles[essay_id]}
    for row in rankings:
        row["title"] = titles.get(row["essay_gen_id"], row["essay_gen_id"])
        if row["essay_gen_id"] in best and row["essay_gen_id"] not in data.essays:
            data.essays[row["essay_gen_id"]] = {"text": "", "title": row["title"]}
    return data


def _dicts(ledger: Ledger, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The rows of ``sql`` as dicts, read through the driver's own cursor (a ranking of 10,000 essays
    in half the time of SQLAlchemy's rows; plain sqlite3 since the runtime left SQLAlchemy)."""
    with ledger.backend.read() as conn:
        cursor = conn.cursor()
        try:
            rows = cursor.execute(sql, params).fetchall()
            names = [d[0] for d in cursor.description]
        finally:
            cursor.close()
    return [dict(zip(names, row)) for row in rows]


def _stream(ledger: Ledger, sql: str, params: tuple[Any, ...], size: int = 2000) -> Iterator[tuple[Any, ...]]:
    """The rows of ``sql``, fetched ``size`` at a time."""
    for chunk in fetch_chunks(ledger, sql, params, size):
        yield from chunk


def _high(ev: Evaluations) -> Any:
    """Which scores reach the ``share ≥ 8`` bar: 8 on 0-9, the same position on any other scale."""
    np = _np()
    with np.errstate(invalid="ignore"):
        position = np.where(np.isnan(ev.score_norm), (ev.score - DEFAULT_SCALE[0]) / 9, ev.score_norm)
        return position >= HIGH_SHARE - 1e-12


def _rubric_values(ev: Evaluations) -> Any:
    """Each score as it is shown for its rubric: on the rubric's own scale, unless that one rubric's
    scores carry different scales (then score_norm)."""
    np = _np()
    rubric = ev.columns["rubric"]
    mixed = np.zeros(len(rubric.values) + 1, dtype=bool)
    for code in np.unique(rubric.codes[ev.scored]).tolist():
        mixed[code] = len(ev.scale_pairs(ev.scored & (rubric.codes == code))) > 1
    return np.where(mixed[rubric.codes], ev.score_norm, ev.score) if len(ev) else ev.score


# ------------------------------------------------------------------------------------ tables
def summary_rows(data: ReportData, means: Sequence[Sequence[Any]] | None = None) -> list[dict[str, Any]]:
    """summary.csv: score statistics by each factor (templates, models, rubric, evaluator).

    ``mean`` is the plain mean of the level's scores; its 95% interval is the cluster bootstrap of
    ``daydream.read.compare.group_means`` (units: drafts), not a t-interval that would count every
    evaluation as independent. ``units`` is how many independent units the level's scores come from.
    ``share_ge_8`` is the share of scores at 8 or more on 0-9 (the same position on other scales).
    ``means`` are the factors' ``GroupMean`` lists when already computed (see ``analyse``).
    """
    np = _np()
    table = data.table
    ev = data.evaluation_table
    high = _high(ev)[np.flatnonzero(ev.scored & (ev.essay >= 0))]
    if means is None:
        means = _means(data, [[FACTOR_AXES[key]] for key, _ in FACTORS])
    out = []
    for (key, _label), found in zip(FACTORS, means):
        column = table.column(FACTOR_AXES[key])
        level_stats = grouped_stats(column.codes, table.score, high, len(column.values))
        stats_of = {v: level_stats[i] for i, v in enumerate(column.values)}
        for g in found:
            s = stats_of[g.key[0]]
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
    table = data.table
    for factor in REPORT_FACTORS:
        if len(levels(table, factor)) > 1:
            out.append(compare(table, factor, seed=data.seed, resamples=data.resamples, cohort_id=data.cohort_id))
    for stage in ("draft", "essay"):
        template, model = f"{stage}_template", f"{stage}_llm"
        if len(levels(table, template)) > 1 and len(levels(table, model)) > 1:
            found = compare(table, template, [model], seed=data.seed, resamples=data.resamples,
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


def template_model_rows(data: ReportData, means: Sequence[Sequence[Any]] | None = None) -> list[dict[str, Any]]:
    """template_model.csv: for the draft and the essay stage, the mean score of every template and
    model combination with its clustered 95% interval (``means``: the two stages' ``GroupMean``
    lists when already computed)."""
    rows = []
    table = data.table
    if means is None:
        means = _means(data, [[f"{stage}_template", f"{stage}_llm"] for stage in ("draft", "essay")])
    for stage, found in zip(("draft", "essay"), means):
        if not levels(table, f"{stage}_template"):
            continue
        for g in found:
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


def _essay_order(data: ReportData) -> list[str]:
    """Essays best first, then the unranked ones (scored nowhere yet) by id."""
    order = [r["essay_gen_id"] for r in data.rankings]
    essay = data.evaluation_table.columns["essay_gen_id"]
    seen = set(order)
    order += sorted(v for v in essay.present() if v is not None and v not in seen)
    return order


def pivot_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    """pivot.csv: one row per essay, a mean and n per rubric·evaluator pair (on the rubric's scale)."""
    np = _np()
    ev = data.evaluation_table
    essay, rubric, evaluator = ev.columns["essay_gen_id"], ev.columns["rubric"], ev.columns["evaluator"]
    pair, first = group_codes([rubric.codes, evaluator.codes])
    names = [(rubric.values[rubric.codes[i]], evaluator.values[evaluator.codes[i]]) for i in first.tolist()]
    shown = sorted(range(len(names)), key=lambda p: (str(names[p][0]), str(names[p][1])))
    header = ["essay_gen_id"]
    for p in shown:
        header += [f"{names[p][0]}·{names[p][1]} mean", f"{names[p][0]}·{names[p][1]} n"]
    values = _rubric_values(ev)
    width = max(1, len(names))
    cell = essay.codes.astype(np.int64) * width + pair
    scored = ev.scored
    size = len(essay.values) * width
    counts = np.bincount(cell[scored], minlength=size).reshape(-1, width) if size else np.zeros((0, width), int)
    sums = np.bincount(cell[scored], values[scored], size).reshape(-1, width) if size else np.zeros((0, width))
    code_of = {v: i for i, v in enumerate(essay.values)}
    rows = []
    for essay_id in _essay_order(data):
        e = code_of.get(essay_id)
        row: list[Any] = [essay_id]
        for p in shown:
            n = int(counts[e, p]) if e is not None else 0
            row += [float(sums[e, p]) / n if n else None, n]
        rows.append(row)
    return header, rows


def reliability_rows(data: ReportData) -> list[dict[str, Any]]:
    """reliability.csv: per rubric, agreement between judges and between replicates, or why not.

    Krippendorff's alpha between judges: each essay is a unit and a judge's value for it is the mean
    of its replicate scores. Between replicates: each (essay, judge) is a unit. ``alpha_note`` and
    ``alpha_replicates_note`` say why an alpha is missing. The parse-failure rate is over
    evaluations that finished (completed or failed). Scores are on the rubric's own scale.
    """
    np = _np()
    ev = data.evaluation_table
    rubric, evaluator = ev.columns["rubric"], ev.columns["evaluator"]
    status = ev.columns["status"].codes
    status_values = ev.columns["status"].values
    finished_codes = [i for i, v in enumerate(status_values) if v in ("completed", "failed")]
    finished = np.isin(status, finished_codes)
    parse_failed = data.parse_status[0].codes == 1
    out = []
    for code, name in sorted(((c, rubric.values[c]) for c in np.unique(rubric.codes).tolist()),
                             key=lambda x: str(x[1])):
        rows = rubric.codes == code
        agreement = rubric_agreement(data.table, name)
        done = int(np.count_nonzero(rows & finished))
        failures = int(np.count_nonzero(rows & parse_failed))
        out.append({
            "rubric": name,
            "evaluators": len(np.unique(evaluator.codes[rows])),
            "essays": agreement.essays,
            "essays_multi_rated": agreement.essays_multi_rated,
            "alpha_ordinal": agreement.alpha_ordinal,
            "alpha_interval": agreement.alpha_interval,
            "alpha_note": agreement.reason or "",
            "alpha_replicates": agreement.alpha_replicates,
            "alpha_replicates_note": agreement.replicates_reason or "",
            "replicate_spread": agreement.replicate_spread,
            "evaluations": int(np.count_nonzero(rows)),
            "scored": int(np.count_nonzero(rows & ev.scored)),
            "parse_failures": failures,
            "parse_failure_rate": failures / done if done else None,
        })
    return out


def _parse_status(ev: Evaluations) -> tuple[Column, Column]:
    """The scores view's ``parse_status`` and ``parse_error`` of every evaluation, as columns."""
    np = _np()
    status, error, flag = ev.columns["status"], ev.columns["error"], ev.columns["parse_failed"]
    # gen_state.parse_failed, as the scores view reads it; a parse failure's error is
    # 'ParseFailed: ' and the parser's reason.
    is_parse = np.array([v == 1 for v in flag.values] + [False])[flag.codes]
    parse = [isinstance(v, str) and v.startswith("ParseFailed: ") for v in error.values]
    failed = np.array([v == "failed" for v in status.values] + [False])[status.codes]
    completed = np.array([v == "completed" for v in status.values] + [False])[status.codes]
    kind = np.select([ev.scored, failed & is_parse, completed, failed], [0, 1, 2, 3], default=4).astype(np.int32)
    messages = [v[13:] if p else None for v, p in zip(error.values, parse)]
    return (Column(["parsed", "parse_failed", "no_score", "failed", "pending"], kind),
            Column(messages, error.codes))


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


def judge_rows(data: ReportData, offsets: tuple[list[Offset], str | None] | None = None) -> Judges:
    """judges.csv (per-evaluator offsets) and self_preference.csv, from ``daydream.read.reliability``
    (``offsets``: the offsets and their note when already computed, see ``analyse``)."""
    if offsets is None:
        groups, note = offset_groups(data.table)
        offsets = (offsets_from(groups, _intervals(data, [g for _, g in groups])), note)
    found, offsets_note = offsets
    prefs, prefs_note = self_preference(data.table, seed=data.seed, resamples=data.resamples)
    if not len(data.table):
        offsets_note = prefs_note = "no scores yet"
    return Judges(
        [{"evaluator": o.evaluator, "cells": o.cells, "units": o.units, "offset": o.offset,
          "ci95_low": o.ci_low, "ci95_high": o.ci_high} for o in found], offsets_note,
        [{"evaluator": p.evaluator, "n_own": p.n_own, "n_other": p.n_other, "mean_own": p.mean_own,
          "mean_other": p.mean_other, "diff": p.diff, "ci95_low": p.ci_low, "ci95_high": p.ci_high,
          "adjusted": p.adjusted, "adjusted_ci95_low": p.adjusted_ci_low,
          "adjusted_ci95_high": p.adjusted_ci_high} for p in prefs], prefs_note)


def _intervals(data: ReportData, groups: Sequence[Any]) -> list[tuple[float | None, float | None]]:
    return cluster_mean_intervals([g.cluster for g in groups], seed=data.seed, resamples=data.resamples,
                                  key=MEAN_KEY)


def _means(data: ReportData, groupings: Sequence[Sequence[str]]) -> list[list[Any]]:
    groups = mean_groups(data.table, groupings)
    return means_from(groups, _intervals(data, [g for mine in groups for g in mine]))


@dataclass(frozen=True)
class Histogram:
    """The scores of one rubric (on one scale), counted per point of that scale."""

    rubric: str
    scale: tuple[float, float]
    n: int
    bins: list[tuple[float, float, int]]  # (from, to, count): whole points, or equal ranges on long scales


MAX_BINS = 20


def histograms(data: ReportData) -> list[Histogram]:
    """One ``Histogram`` per rubric (and per scale, should one rubric's scores carry two), scores
    rounded to the nearest whole point and counted on the rubric's own scale."""
    np = _np()
    ev = data.evaluation_table
    rubric = ev.columns["rubric"]
    scored = np.flatnonzero(ev.scored)
    lo = np.where(np.isnan(ev.scale_min), DEFAULT_SCALE[0], ev.scale_min)[scored]
    hi = np.where(np.isnan(ev.scale_max), DEFAULT_SCALE[1], ev.scale_max)[scored]
    group, first = group_codes([rubric.codes[scored], np.unique(lo, return_inverse=True)[1],
                                np.unique(hi, return_inverse=True)[1]])
    out = []
    for g, row in enumerate(first.tolist()):
        name, low, high = rubric.values[rubric.codes[scored[row]]], float(lo[row]), float(hi[row])
        points = np.clip(np.floor(ev.score[scored][group == g] + 0.5), low, high)
        span = int(high - low)
        width = max(1, math.ceil((span + 1) / MAX_BINS))
        edges = [low + k * width for k in range(math.ceil((span + 1) / width))]
        counts = np.bincount(((points - low) // width).astype(np.int64), minlength=len(edges))
        bins = [(e, min(high, e + width - 1), int(c)) for e, c in zip(edges, counts.tolist())]
        out.append(Histogram(str(name), (low, high), int(len(points)), bins))
    out.sort(key=lambda h: (h.rubric, h.scale))
    return out


@dataclass(frozen=True)
class Analysis:
    """Every table the report derives from the scores, computed once for all output files."""

    summary: list[dict[str, Any]]
    comparisons: list[ComparisonSet]
    comparison_rows: list[dict[str, Any]]
    template_model: list[dict[str, Any]]
    reliability: list[dict[str, Any]]
    judges: Judges
    histograms: list[Histogram]


def analyse(data: ReportData) -> Analysis:
    """The ``Analysis`` of ``data``. Every clustered interval on a mean (by factor, template x model,
    judge offsets) is drawn in one batch: means over the same units share their resamples (see
    ``daydream.read.compare.cluster_mean_intervals``)."""
    sets = comparison_sets(data)
    groupings = [[FACTOR_AXES[key]] for key, _ in FACTORS]
    groupings += [[f"{stage}_template", f"{stage}_llm"] for stage in ("draft", "essay")]
    groups = mean_groups(data.table, groupings)
    judges, note = offset_groups(data.table)
    flat = [g for mine in groups for g in mine]
    intervals = _intervals(data, flat + [g for _, g in judges])
    means = means_from(groups, intervals[:len(flat)])
    offsets = offsets_from(judges, intervals[len(flat):])
    return Analysis(summary_rows(data, means[:len(FACTORS)]), sets, comparison_rows(sets),
                    template_model_rows(data, means[len(FACTORS):]), reliability_rows(data),
                    judge_rows(data, (offsets, note)), histograms(data))


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    text = str
    # Text is written as it is; every other value spelt by fmt (floats formatted here: most cells).
    writer.writerows([v if v.__class__ is text else (f"{v:.4f}" if v.__class__ is float and v == v else fmt(v))
                      for v in row] for row in rows)
    return buf.getvalue().encode("utf-8")


def _dict_csv(rows: list[dict[str, Any]], header: Sequence[str]) -> bytes:
    return _csv(header, ([r.get(k) for k in header] for r in rows))


def _sql_order(values: Sequence[Any]) -> Any:
    """The rank of each value in SQL's ascending order (NULL, then numbers, then text)."""
    np = _np()
    order = sorted(range(len(values)), key=lambda i: (
        values[i] is not None, isinstance(values[i], str), values[i] if values[i] is not None else 0))
    rank = np.empty(len(values) or 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def _csv_line(fields: Sequence[Any]) -> str:
    """``fields`` as csv.writer writes them (``fmt`` spellings, minimal quoting), without the newline."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([v if isinstance(v, str) else fmt(v) for v in fields])
    return buf.getvalue()


def _evaluation_order(data: ReportData) -> Any:
    """Row positions of the evaluations by essay, rubric, evaluator, replicate and evaluation id."""
    np = _np()
    ev = data.evaluation_table
    cols = ev.columns

    def rank(name: str) -> Any:
        return _sql_order(cols[name].values)[cols[name].codes]

    if not len(ev):
        return np.zeros(0, dtype=np.int64)
    return np.lexsort((np.arange(len(ev)), rank("replicate"), rank("evaluator"), rank("rubric"), rank("essay_gen_id")))


def evaluation_rows(data: ReportData) -> Iterator[dict[str, Any]]:
    """Each evaluation as a dict of ``SCORE_COLUMNS`` (what scores.csv writes, before formatting)."""
    ev = data.evaluation_table
    cols = ev.columns
    parse_status, parse_error = data.parse_status
    lineage = {name: ev.essay_column(column) for name, column in (
        ("draft_gen_id", "parent_gen_id"), ("combo_id", "combo_id"), ("draft_template", "draft_template"),
        ("draft_model", "draft_llm"), ("essay_template", "essay_template"), ("essay_model", "essay_llm"))}
    own = {"essay_gen_id": cols["essay_gen_id"], "rubric": cols["rubric"], "evaluator": cols["evaluator"],
           "replicate": cols["replicate"], "attempt": cols["attempt"], "status": cols["status"],
           "parse_status": parse_status, "parse_error": parse_error, "scale_min": cols["scale_min"],
           "scale_max": cols["scale_max"], **lineage}
    for i in _evaluation_order(data).tolist():
        row = {name: c.values[c.codes[i]] for name, c in own.items()}
        row["evaluation_gen_id"] = ev.ids[i]
        row["concepts"] = data.concepts.get(row["combo_id"], "") if row["combo_id"] else ""
        for name, numbers in (("score", ev.score), ("score_norm", ev.score_norm)):
            row[name] = None if math.isnan(numbers[i]) else float(numbers[i])
        yield {k: row[k] for k in SCORE_COLUMNS}


def scores_csv(data: ReportData, block: int = 5_000) -> Iterator[bytes]:
    """scores.csv, a block of rows at a time: every evaluation with its lineage, score and scale, by
    essay, rubric, evaluator, replicate and evaluation id.

    A line is three pieces, each written once by csv.writer and joined by commas (which is what
    csv.writer writes for the whole row): the evaluation id; the essay's fields (one piece per
    essay); the evaluation's own fields (one piece per distinct combination of them).
    """
    np = _np()
    ev = data.evaluation_table
    cols = ev.columns
    order = _evaluation_order(data)
    header = ",".join(SCORE_COLUMNS) + "\n"
    # The essay's fields, one piece per essay (the last one for an evaluation of an unknown essay).
    essay = cols["essay_gen_id"]
    lineage = [ev.essays[name] for name in ("parent_gen_id", "combo_id", "draft_template", "draft_llm",
                                            "essay_template", "essay_llm")]
    position = np.append(ev.essay_of_value, -1)
    pieces = []
    for code, value in enumerate(essay.values):
        at = int(position[code])
        found = [c.values[c.codes[at]] if at >= 0 else None for c in lineage]
        concepts = data.concepts.get(found[1], "") if found[1] else ""
        pieces.append(_csv_line([value, found[0], found[1], concepts, *found[2:]]))
    # The evaluation's own fields: one piece per distinct combination.
    parse_status, parse_error = data.parse_status
    own = [cols["rubric"], cols["evaluator"], cols["replicate"], cols["attempt"], cols["status"]]
    distinct_score, score_code = np.unique(ev.score, return_inverse=True)
    distinct_norm, norm_code = np.unique(ev.score_norm, return_inverse=True)
    keys = [c.codes for c in own] + [score_code.ravel(), parse_status.codes, parse_error.codes,
                                     cols["scale_min"].codes, cols["scale_max"].codes, norm_code.ravel()]
    combo, first = group_codes(keys)
    tails = []
    for row in first.tolist():
        values = [c.values[c.codes[row]] for c in own]
        values += [float(distinct_score[score_code.ravel()[row]]), parse_status.values[parse_status.codes[row]],
                   parse_error.values[parse_error.codes[row]], cols["scale_min"].values[cols["scale_min"].codes[row]],
                   cols["scale_max"].values[cols["scale_max"].codes[row]], float(distinct_norm[norm_code.ravel()[row]])]
        tails.append(_csv_line(values))
    # An id that needs quoting (none of daydream's own do) is written through csv.writer.
    quote = re.search(rb'[,"\r\n]', ev.ids.data.tobytes()) is not None
    yield header.encode("utf-8")
    for start in range(0, len(ev), block):
        rows = order[start:start + block]
        ids = ev.ids.pick(rows)
        if quote:
            ids = [_csv_line([i]) for i in ids]
        lines = [f"{i},{pieces[e]},{tails[t]}\n" for i, e, t in
                 zip(ids, essay.codes[rows].tolist(), combo[rows].tolist())]
        yield "".join(lines).encode("utf-8")


RANKING_COLUMNS = ["rank", "essay_gen_id", "title", "mean", "n", "stdev", "ci95_low", "ci95_high",
                   "combo_id", "concepts", "draft_gen_id", "draft_template", "draft_model",
                   "essay_template", "essay_model"]


def _ranking_rows(data: ReportData) -> Iterator[list[Any]]:
    """rankings.csv's rows (``RANKING_COLUMNS``), made as they are written."""
    for r in data.rankings:
        s: Stats = r["stats"]
        extra = {"stdev": s.stdev, "ci95_low": s.ci_low, "ci95_high": s.ci_high}
        yield [extra[k] if k in extra else r.get(k) for k in RANKING_COLUMNS]


def _essay_scores(data: ReportData, essay: str) -> list[dict[str, Any]]:
    """Every evaluation of one essay (scored or not), by rubric, evaluator, replicate and id."""
    np = _np()
    ev = data.evaluation_table
    cols = ev.columns
    code = [i for i, v in enumerate(cols["essay_gen_id"].values) if v == essay]
    rows = np.flatnonzero(np.isin(cols["essay_gen_id"].codes, code))
    parse_status, _ = data.parse_status
    out = []
    for i in rows.tolist():
        score = None if math.isnan(ev.score[i]) else float(ev.score[i])
        lo, hi = ev.scale_min[i], ev.scale_max[i]
        out.append({"evaluation_gen_id": ev.ids[i], "rubric": cols["rubric"].values[cols["rubric"].codes[i]],
                    "evaluator": cols["evaluator"].values[cols["evaluator"].codes[i]],
                    "replicate": cols["replicate"].values[cols["replicate"].codes[i]], "score": score,
                    "scale": None if math.isnan(lo) or math.isnan(hi) else (float(lo), float(hi)),
                    "parse_status": parse_status.values[parse_status.codes[i]]})

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((v is not None, isinstance(v, str), v if v is not None else 0)
                     for v in (r["rubric"], r["evaluator"], r["replicate"], r["evaluation_gen_id"]))

    return sorted(out, key=key)


def _score_text(data: ReportData, r: dict[str, Any], digits: int | None = None) -> str:
    """One evaluation's score as shown beside an essay: with its scale when the cohort mixes scales."""
    if r["score"] is None:
        return str(r["parse_status"])
    shown = fmt(r["score"], digits) if digits is not None else f"{r['score']:g}"
    return f"{shown} ({scale_label(r['scale'])})" if data.mixed and r["scale"] else shown


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


def result_markdown(data: ReportData, ranking: dict[str, Any]) -> str:
    """``results/<gen_id>.md``: scores and lineage up front, then the essay in full."""
    essay = data.essays[ranking["essay_gen_id"]]
    s: Stats = ranking["stats"]
    on = " (score_norm, 0–1)" if data.mixed else ""
    lines = [
        f"# {essay['title']}", "",
        f"- essay: `{ranking['essay_gen_id']}` (cohort `{data.cohort_id}`, rank {ranking['rank']} of "
        f"{len(data.rankings)})",
        f"- mean score{on}: {fmt(s.mean)} (n = {s.n}; 95% CI {fmt(s.ci_low)} – {fmt(s.ci_high)})",
        f"- concepts: {ranking['concepts'] or '—'} (`{ranking['combo_id']}`)",
        f"- draft: `{ranking['draft_gen_id'] or '—'}` — template {ranking['draft_template'] or '—'}, "
        f"model {ranking['draft_model'] or '—'}",
        f"- essay template {ranking['essay_template']}, model {ranking['essay_model'] or '—'}",
        "",
        _md_table(["rubric", "evaluator", "replicate", "score", "evaluation"],
                  [[r["rubric"], r["evaluator"], r["replicate"], _score_text(data, r, 4), r["evaluation_gen_id"]]
                   for r in _essay_scores(data, ranking["essay_gen_id"])]),
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


def partial_note(progress: Sequence[dict[str, Any]]) -> str | None:
    """What the top of a partly finished cohort's report says (None when every generation is done)."""
    total = sum(p["planned"] or 0 for p in progress)
    done = sum(p["completed"] or 0 for p in progress)
    failed = sum(p["failed"] or 0 for p in progress)
    if done == total:
        return None
    return (f"Partial report: {done:,} of {total:,} generations done ({total - done - failed:,} still to run, "
            f"{failed:,} failed); these numbers cover the finished part only.")


def _shown_rankings(data: ReportData) -> tuple[list[dict[str, Any]], str]:
    """The rankings the Markdown and HTML pages list, and a note when rankings.csv holds more."""
    shown = data.rankings[:RANKING_ROWS]
    more = len(data.rankings) - len(shown)
    return shown, (f"The best {len(shown):,} of {len(data.rankings):,} essays; rankings.csv lists them all."
                   if more > 0 else "")


SHARE_HEADER = "share ≥ 8"
SHARE_EXPLAINED = ("share ≥ 8: the share of scores at 8 or more on a 0–9 rubric (on another scale, as far up "
                   "that scale).")


def report_markdown(data: ReportData, analysis: Analysis) -> str:
    """report.md: progress, rankings, comparisons, means, judges and the top essays in full."""
    note = partial_note(data.progress)
    out = [f"# Report: cohort {data.cohort_id}", "", *([f"**{note}**", ""] if note else []), data.scale_text, "",
           "## Progress", "",
           _md_table(["stage", "planned", "completed", "failed", "pending", "calls", "tokens", "cost_usd"],
                     [[p["stage"], p["planned"], p["completed"], p["failed"], p["pending"], p["calls"],
                       p["tokens"], _progress_cost(p)] for p in data.progress]),
           "", "## Rankings", ""]
    shown, more = _shown_rankings(data)
    out.append(_md_table(["rank", "essay", "mean", "n", "95% CI", "draft template", "essay template",
                          "essay model", "concepts"],
                         [[r["rank"], r["essay_gen_id"], r["mean"], r["n"],
                           f"{fmt(r['stats'].ci_low)} – {fmt(r['stats'].ci_high)}", r["draft_template"],
                           r["essay_template"], r["essay_model"], r["concepts"]] for r in shown])
               if data.rankings else "No scored essays yet.")
    out += ["", more] if more else []
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
            "Plain means of every score; the 95% interval resamples units (drafts), not single evaluations. "
            + SHARE_EXPLAINED, "",
            _md_table(["factor", "level", "count", "units", "mean", "stdev", "95% CI", SHARE_HEADER],
                      [[s["factor"], s["level"], s["count"], s["units"], s["mean"], s["stdev"],
                        f"{fmt(s['ci95_low'])} – {fmt(s['ci95_high'])}", s["share_ge_8"]]
                       for s in analysis.summary]),
            "", "## Judges", "", ALPHA_EXPLAINED + " Each rubric's scores are read on its own scale.", "",
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


def _ticks(low: float, high: float, most: int = 10) -> list[float]:
    """Round tick values from ``low`` to ``high``, at most ``most`` + 1 of them."""
    span = high - low
    step = next((s for s in (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)
                 if span / s <= most), span or 1.0)
    start = math.ceil(low / step - 1e-9)
    return [round(k * step, 10) for k in range(start, math.floor(high / step + 1e-9) + 1)]


def histogram_svg(hist: Histogram) -> str:
    """Score distribution of one rubric on its own scale: counts of scores rounded to whole points
    (equal ranges of points on scales longer than ``MAX_BINS``)."""
    counts = [c for _, _, c in hist.bins]
    top = max(counts, default=0) or 1
    h, pad = 150, 24
    bar = max(8, min(24, round(250 / max(1, len(counts)))))
    w = max(300, 2 * pad + len(counts) * (bar + 2))
    title = f"{hist.rubric} ({scale_label(hist.scale)})"
    parts = [f'<svg class="chart histogram" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>Score distribution: {_e(title)}</title>',
             f'<text x="4" y="14" class="label">{_e(title)} (n = {hist.n})</text>']
    for i, (low, high, c) in enumerate(hist.bins):
        name = f"{low:g}" if low == high else f"{low:g}–{high:g}"
        bh = (h - 2 * pad - 8) * c / top
        x = pad + i * (bar + 2)
        y = h - pad - bh
        parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{bh:.1f}" class="bar">'
                     f'<title>score {_e(name)}: {c}</title></rect>')
        parts.append(f'<text x="{x + bar / 2}" y="{h - pad + 14}" text-anchor="middle" class="tick">{_e(f"{low:g}")}'
                     '</text>')
        if c:
            parts.append(f'<text x="{x + bar / 2}" y="{y - 3:.1f}" text-anchor="middle" class="tick">{c}</text>')
    parts.append("</svg>")
    return "".join(parts)


def comparison_svg(label: str, rows: list[dict[str, Any]], scale: tuple[float, float] = DEFAULT_SCALE) -> str:
    """Means with 95% confidence intervals for each level of one factor, on the axis of ``scale``."""
    # The left margin fits the longest level name (~6.2 px a character): cut names can collide.
    longest = max((len(str(r["level"])) for r in rows), default=0)
    left, right, row_h, top_pad = max(170, 16 + round(longest * 6.2)), 20, 22, 30
    w = left + 450
    h = top_pad + row_h * len(rows) + 26
    low, high = scale
    per = (w - left - right) / ((high - low) or 1.0)

    def x(v: float) -> float:
        return left + (max(low, min(high, v)) - low) * per

    parts = [f'<svg class="chart comparison" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{_e(label)}: mean score with 95% CI</title>',
             f'<text x="4" y="16" class="label">{_e(label)}: mean score, 95% confidence interval</text>']
    for t in _ticks(low, high):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top_pad - 6}" x2="{x(t):.1f}" y2="{h - 22}" class="grid"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{h - 8}" text-anchor="middle" class="tick">{t:g}</text>')
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
    reach = max(abs(v) for v in values) or 1.0
    step = _ticks(0.0, reach, 4)[1] if len(_ticks(0.0, reach, 4)) > 1 else reach
    span = math.ceil(reach / step - 1e-9) * step  # a grid of round steps keeps the ticks readable
    scale = (w - left - right) / (2 * span)

    def x(v: float) -> float:
        return left + (v + span) * scale

    title = _comparison_title(found)
    parts = [f'<svg class="chart forest" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}: difference A − B with 95% CI</title>',
             f'<text x="4" y="16" class="label">{_e(title)}: A − B, 95% CI</text>']
    for t in _ticks(-span, span, 8):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top_pad - 6}" x2="{x(t):.1f}" y2="{h - 22}" '
                     f'class="{"zero" if abs(t) < 1e-9 else "grid"}"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{h - 8}" text-anchor="middle" class="tick">{t:g}</text>')
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


def _heat_colour(position: float) -> tuple[str, str]:
    """Fill and text colour of a cell ``position`` of the way up its scale (0 light, 1 dark)."""
    t = max(0.0, min(1.0, position))
    lo, hi = (247, 251, 255), (8, 48, 107)
    rgb = tuple(round(a + (b - a) * t) for a, b in zip(lo, hi))
    return "#%02x%02x%02x" % rgb, ("#ffffff" if t > 0.55 else "#111111")


@dataclass(frozen=True)
class HeatCell:
    """One essay's mean on one rubric (on the rubric's scale), how many scores, and the scale."""

    mean: float
    n: int
    scale: tuple[float, float]


def heat_cells(data: ReportData, essays: Sequence[str]) -> tuple[list[str], dict[tuple[str, str], HeatCell]]:
    """The rubrics (sorted) and the mean of each (essay, rubric) among ``essays``."""
    np = _np()
    ev = data.evaluation_table
    essay, rubric = ev.columns["essay_gen_id"], ev.columns["rubric"]
    rubrics = sorted((v for v in rubric.present()), key=str)
    wanted = [i for i, v in enumerate(essay.values) if v in set(essays)]
    rows = np.flatnonzero(np.isin(essay.codes, wanted) & ev.scored)
    values = _rubric_values(ev)
    cells: dict[tuple[str, str], list[float]] = {}
    scales: dict[tuple[str, str], set[tuple[float, float]]] = {}
    for i in rows.tolist():
        key = (essay.values[essay.codes[i]], rubric.values[rubric.codes[i]])
        cells.setdefault(key, []).append(float(values[i]))
        scales.setdefault(key, set()).add((float(ev.scale_min[i]), float(ev.scale_max[i])))
    out = {}
    for key, xs in cells.items():
        found = scales[key]
        scale = next(iter(found)) if len(found) == 1 and not math.isnan(next(iter(found))[0]) else (0.0, 1.0)
        out[key] = HeatCell(sum(xs) / len(xs), len(xs), scale)
    return rubrics, out


def heatmap_svg(rubrics: Sequence[str], essays: Sequence[str], cells: dict[tuple[str, str], HeatCell],
                ranked: int | None = None) -> str:
    """Essay × rubric mean scores (best essays first), each cell coloured by how far up its rubric's
    scale its mean lies (light at the bottom, dark at the top); ``ranked`` essays in all."""
    # Column labels are the full rubric ids, slanted: rubrics often share long prefixes, so a cut
    # label can make two columns read the same. Room for them: ~6 px per character at 40 degrees.
    longest = max((len(str(r)) for r in rubrics), default=0)
    left, cw, ch = 150, 70, 20
    top_pad = max(60, 34 + round(longest * 6.2 * 0.643))
    w = left + cw * max(1, len(rubrics)) + max(10, round(longest * 6.2 * 0.766) - cw // 2)
    h = top_pad + ch * max(1, len(essays)) + 10
    caption = "Essay × rubric mean score"
    ranked = len(essays) if ranked is None else ranked
    if ranked > len(essays):
        caption += f" (best {len(essays)} of {ranked} essays)"
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
            cell = cells.get((essay, rubric))
            x0 = left + j * cw
            if cell is None:
                parts.append(f'<rect x="{x0}" y="{y}" width="{cw - 2}" height="{ch - 2}" class="empty"/>')
                continue
            low, high = cell.scale
            fill, ink = _heat_colour((cell.mean - low) / ((high - low) or 1.0))
            parts.append(f'<rect x="{x0}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}">'
                         f'<title>{_e(essay)} · {_e(rubric)}: {fmt(cell.mean, 2)} on {scale_label(cell.scale)} '
                         f'(n {cell.n})</title></rect>')
            parts.append(f'<text x="{x0 + cw / 2 - 1}" y="{y + 14}" text-anchor="middle" '
                         f'style="fill:{ink}" class="tick">{fmt(cell.mean, 1)}</text>')
    parts.append("</svg>")
    return "".join(parts)


HEATMAP_ESSAYS = 40


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
    n_scores = int(data.evaluation_table.scored.sum())
    note = partial_note(data.progress)
    body = [f"<h1>{html.escape(title)}</h1>",
            *([f'<p class="partial"><strong>{html.escape(note)}</strong></p>'] if note else []),
            f"<p>{len(data.rankings)} scored essays, {n_scores} scores from {len(data.evaluation_table)} evaluations. "
            f"{html.escape(data.scale_text)}</p>",
            "<h2>Progress</h2>",
            _html_table(["stage", "planned", "completed", "failed", "pending", "calls", "tokens", "cost (USD)"],
                        [[p["stage"], p["planned"], p["completed"], p["failed"], p["pending"], p["calls"],
                          p["tokens"], _progress_cost(p)] for p in data.progress]),
            '<h2 id="distribution">Score distribution per rubric</h2>'
            "<p>Each rubric on its own scale.</p><div class=\"charts\">"]
    body += [histogram_svg(h) for h in analysis.histograms]
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
            body.append(comparison_svg(name, rows, data.scale))
    body.append('</div><h2 id="heatmap">Essays × rubrics</h2>')
    if data.rankings:
        essays = [r["essay_gen_id"] for r in data.rankings[:HEATMAP_ESSAYS]]
        rubrics, cells = heat_cells(data, essays)
        body.append("<p>Each rubric's column on its own scale, coloured from its lowest score (light) to its "
                    "highest (dark).</p>")
        body.append(heatmap_svg(rubrics, essays, cells, len(data.rankings)))
    else:
        body.append("<p>No scored essays yet.</p>")
    body.append('<h2 id="rankings">Rankings</h2>')
    shown, more = _shown_rankings(data)
    body.append(_html_table(
        ["rank", "essay", "title", "mean", "n", "95% CI", "draft template", "draft model", "essay template",
         "essay model", "concepts"],
        [[r["rank"], r["essay_gen_id"], r["title"], r["mean"], r["n"],
          f"{fmt(r['stats'].ci_low, 2)} – {fmt(r['stats'].ci_high, 2)}", r["draft_template"], r["draft_model"],
          r["essay_template"], r["essay_model"], r["concepts"]] for r in shown]))
    if more:
        body.append(f"<p>{html.escape(more)}</p>")
    body.append('<h2 id="summary">Scores by factor</h2>')
    body.append("<p>Plain means of every score; the 95% interval resamples units (drafts), not single "
                f"evaluations. {html.escape(SHARE_EXPLAINED)}</p>")
    body.append(_html_table(["factor", "level", "count", "units", "mean", "stdev", "95% CI low", "95% CI high",
                             SHARE_HEADER],
                            [[s["factor"], s["level"], s["count"], s["units"], s["mean"], s["stdev"], s["ci95_low"],
                              s["ci95_high"], s["share_ge_8"]] for s in analysis.summary]))
    body.append('<h2 id="judges">Judges</h2>')
    body.append(f"<p>{html.escape(ALPHA_EXPLAINED)} Each rubric's scores are read on its own scale.</p>")
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
                           f"{html.escape(_score_text(data, s, 1))}"
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
def render_report(data: ReportData) -> dict[str, bytes | Iterable[bytes]]:
    """Every output file of the report, by relative path: bytes, or (scores.csv) an iterable of
    blocks of bytes, written as they come."""
    analysis = analyse(data)
    pivot_header, pivot = pivot_rows(data)
    files: dict[str, bytes | Iterable[bytes]] = {
        "scores.csv": scores_csv(data),
        "pivot.csv": _csv(pivot_header, pivot),
        "rankings.csv": _csv(RANKING_COLUMNS, _ranking_rows(data)),
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
    hashes: dict[str, str] = {}
    try:
        for name, content in files.items():
            path = target / name
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with path.open("wb") as out:
                for block in ([content] if isinstance(content, bytes) else content):
                    digest.update(block)
                    out.write(block)
            hashes[name] = digest.hexdigest()
        for path in _stale_results(ledger, target, set(files)):
            path.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write the report into {str(target)!r}: {exc.strerror}") from None
    hashes = dict(sorted(hashes.items()))
    if ledger.readonly:
        return PublishedReport(target, hashes, None)
    [event] = ledger.append([ReportPublished(cohort_id=cohort_id, out_dir=str(target.resolve()), files=hashes).new()])
    return PublishedReport(target, hashes, event.seq)
