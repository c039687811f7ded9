"""The cohort report: CSV tables, a Markdown summary, a self-contained HTML page, and one event.

``collect_report`` reads a cohort through the SQL views into plain Python data; ``render_report``
turns it into file contents (bytes, deterministic: no timestamps, sorted rows, fixed number
formats, so two runs give identical files); ``publish_report`` writes them and records one
``ReportPublished`` event with the sha256 of every file. The HTML page has no external resources:
its charts are inline SVG and its essays are Markdown rendered on the server.
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

from daydream import views
from daydream.errors import UsageError
from daydream.events import REPORT_PUBLISHED
from daydream.ledger import Ledger, NewEvent
from daydream.reliability import krippendorff_alpha, replicate_spread

HIGH_SCORE = 8.0  # "share ≥ 8" in summary.csv: the bar for an essay worth reading
FACTORS = (("draft_template", "Draft template"), ("draft_model", "Draft model"),
           ("essay_template", "Essay template"), ("essay_model", "Essay model"),
           ("rubric", "Rubric"), ("evaluator", "Evaluator"))
SCORE_COLUMNS = ["evaluation_gen_id", "essay_gen_id", "draft_gen_id", "combo_id", "concepts",
                 "draft_template", "draft_model", "essay_template", "essay_model", "rubric",
                 "evaluator", "replicate", "attempt", "status", "score", "parse_status", "parse_error"]
# Two-sided 95% critical values of Student's t for 1–30 degrees of freedom.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)


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


def t95(df: int) -> float:
    """Two-sided 95% critical value of Student's t: the table up to 30 degrees of freedom, then
    the Cornish–Fisher expansion around the normal quantile (within 0.001 of the exact value)."""
    if df <= 30:
        return _T95[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


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


def collect_report(ledger: Ledger, cohort_id: str, top: int = 10) -> ReportData:
    """Read the cohort's progress, evaluations (with lineage), rankings and top essays.

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
    data = ReportData(cohort_id, progress, evaluations, rankings, top=top)
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
    """summary.csv: score statistics by each factor (templates, models, rubric, evaluator)."""
    out = []
    scored = [r for r in data.evaluations if r["score"] is not None]
    for key, _label in FACTORS:
        groups: dict[str, list[float]] = defaultdict(list)
        for row in scored:
            groups[row[key] if row[key] is not None else "(none)"].append(row["score"])
        for level in sorted(groups):
            s = describe(groups[level])
            out.append({"factor": key, "level": level, "count": s.n, "mean": s.mean, "stdev": s.stdev,
                        "ci95_low": s.ci_low, "ci95_high": s.ci_high, "share_ge_8": s.share_high})
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
    """reliability.csv: per rubric, agreement between evaluator models and across replicates.

    Each essay is a unit; an evaluator's value for it is the mean of its replicate scores. The
    parse-failure rate is over evaluations that finished (completed or failed).
    """
    out = []
    for rubric in sorted({r["rubric"] for r in data.evaluations}, key=str):
        rows = [r for r in data.evaluations if r["rubric"] == rubric]
        reps: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in rows:
            if r["score"] is not None:
                reps[(r["essay_gen_id"], r["evaluator"])].append(r["score"])
        units: dict[str, list[float]] = defaultdict(list)
        for (essay, _evaluator), xs in sorted(reps.items()):
            units[essay].append(sum(xs) / len(xs))
        finished = [r for r in rows if r["status"] in ("completed", "failed")]
        parse_failures = sum(r["parse_status"] == "parse_failed" for r in rows)
        out.append({
            "rubric": rubric,
            "evaluators": len({r["evaluator"] for r in rows}),
            "essays": len(units),
            "essays_multi_rated": sum(len(v) >= 2 for v in units.values()),
            "alpha_ordinal": krippendorff_alpha(units.values(), "ordinal"),
            "alpha_interval": krippendorff_alpha(units.values(), "interval"),
            "replicate_spread": replicate_spread(reps.values()),
            "evaluations": len(rows),
            "scored": sum(r["score"] is not None for r in rows),
            "parse_failures": parse_failures,
            "parse_failure_rate": parse_failures / len(finished) if finished else None,
        })
    return out


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


def report_markdown(data: ReportData, summary: list[dict[str, Any]], reliability: list[dict[str, Any]]) -> str:
    """report.md: progress, rankings, summaries, reliability and the top essays in full."""
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
    out += ["", "## Scores by factor", "",
            _md_table(["factor", "level", "count", "mean", "stdev", "95% CI", "share ≥ 8"],
                      [[s["factor"], s["level"], s["count"], s["mean"], s["stdev"],
                        f"{fmt(s['ci95_low'])} – {fmt(s['ci95_high'])}", s["share_ge_8"]] for s in summary]),
            "", "## Reliability", "",
            _md_table(["rubric", "evaluators", "essays", "alpha (ordinal)", "alpha (interval)",
                       "replicate spread", "parse-failure rate"],
                      [[r["rubric"], r["evaluators"], r["essays"], r["alpha_ordinal"], r["alpha_interval"],
                        r["replicate_spread"], r["parse_failure_rate"]] for r in reliability]),
            "", f"## Top {min(data.top, len(data.rankings))} essays", ""]
    for r in data.rankings[:data.top]:
        essay = data.essays[r["essay_gen_id"]]
        out += [f"### {r['rank']}. {essay['title']} — {fmt(r['mean'])}", "",
                f"`{r['essay_gen_id']}` · {r['concepts']} · draft {r['draft_template'] or '—'} "
                f"({r['draft_model'] or '—'}) · essay {r['essay_template']} ({r['essay_model'] or '—'})",
                "", demote_headings(essay["text"].rstrip(), 3), ""]
    return "\n".join(out).rstrip() + "\n"


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
svg .grid{stroke:#eee} svg .empty{fill:#f2f2f2} svg text{font-size:11px;fill:#333}
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


def report_html(data: ReportData, summary: list[dict[str, Any]], reliability: list[dict[str, Any]]) -> str:
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
    body.append('</div><h2 id="comparison">Templates and models compared</h2><div class="charts">')
    for key, label in FACTORS:
        rows = [s for s in summary if s["factor"] == key]
        if rows:
            body.append(comparison_svg(label, rows))
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
    body.append(_html_table(["factor", "level", "count", "mean", "stdev", "95% CI low", "95% CI high", "share ≥ 8"],
                            [[s["factor"], s["level"], s["count"], s["mean"], s["stdev"], s["ci95_low"],
                              s["ci95_high"], s["share_ge_8"]] for s in summary]))
    body.append('<h2 id="reliability">Reliability</h2>')
    body.append(_html_table(["rubric", "evaluators", "essays", "alpha (ordinal)", "alpha (interval)",
                             "replicate spread", "parse failures", "parse-failure rate"],
                            [[r["rubric"], r["evaluators"], r["essays"], r["alpha_ordinal"], r["alpha_interval"],
                              r["replicate_spread"], r["parse_failures"], r["parse_failure_rate"]]
                             for r in reliability]))
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
    summary = summary_rows(data)
    reliability = reliability_rows(data)
    pivot_header, pivot = pivot_rows(data)
    files = {
        "scores.csv": _dict_csv(data.evaluations, SCORE_COLUMNS),
        "pivot.csv": _csv(pivot_header, pivot),
        "rankings.csv": _dict_csv(_ranking_dicts(data), RANKING_COLUMNS),
        "summary.csv": _dict_csv(summary, ["factor", "level", "count", "mean", "stdev", "ci95_low",
                                           "ci95_high", "share_ge_8"]),
        "reliability.csv": _dict_csv(reliability, ["rubric", "evaluators", "essays", "essays_multi_rated",
                                                   "alpha_ordinal", "alpha_interval", "replicate_spread",
                                                   "evaluations", "scored", "parse_failures",
                                                   "parse_failure_rate"]),
        "report.md": report_markdown(data, summary, reliability).encode("utf-8"),
        "report.html": report_html(data, summary, reliability).encode("utf-8"),
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


def publish_report(ledger: Ledger, cohort_id: str, out_dir: str | Path, top: int = 10) -> PublishedReport:
    """Write the cohort's report into ``out_dir`` and record one ``ReportPublished`` event.

    A ledger opened read-only gets the files all the same, unrecorded (``seq`` None).
    """
    if top < 0:
        raise UsageError(f"--top must be 0 or more, got {top}")
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise UsageError(f"report folder {str(target)!r} is a file; give a folder with --out")
    data = collect_report(ledger, cohort_id, top)
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
    [event] = ledger.append([NewEvent(f"report:{cohort_id}", REPORT_PUBLISHED, {
        "cohort_id": cohort_id, "out_dir": str(target.resolve()), "files": hashes})])
    return PublishedReport(target, hashes, event.seq)
