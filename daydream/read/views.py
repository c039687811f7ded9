"""The read side in Python: what each SQL view means, and the queries ``status`` and ``show`` run.

The views themselves are created by migration ``0003_views``; here they get a title, a description
and a sentence per column (used by Datasette metadata and checked against the real columns by the
tests). The query functions return plain dicts and lists so the CLI, the report and tests share them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from daydream.errors import NotFound
from daydream.ledger.backend import column_names
from daydream.ledger.store import Ledger


@dataclass(frozen=True)
class ViewDoc:
    """Title, description and per-column descriptions of one view (columns in view order)."""

    title: str
    description: str
    columns: dict[str, str]


_GEN = "Generation id (d_ draft, e_ essay, v_ evaluation)"
_COHORT = "Cohort id"
_STAGE = "Stage: draft, essay or evaluation"
_COST = "Money spent, USD (all calls and attempts)"
_SCALE = ("Scale the numbers are on: the rubric's (like 0-9), or 0-1 (score_norm) when the scores "
          "averaged come from rubrics of different scales")

VIEWS: dict[str, ViewDoc] = {
    "generations": ViewDoc(
        "Generations",
        "One row per generation, at its current attempt, with the prompt sent, the raw answer and "
        "the parsed text (read from the texts table by hash).",
        {
            "gen_id": _GEN, "stage": _STAGE,
            "status": "planned, running, completed or failed (current attempt)",
            "blocked": "1 when still planned because its parent (or the parent's parent) failed",
            "attempt": "Current attempt number (a forced retry starts a new one)",
            "template_id": "Template id in the catalog (the rubric for evaluations)",
            "template_hash": "sha256 of the template text used",
            "model_id": "Catalog model id (the evaluator for evaluations)",
            "resolved_model": "Model the provider says answered",
            "generator": "llm (a model call) or copy (text copied from the parent)",
            "parser": "Parser applied to the raw answer",
            "parent_gen_id": "Generation this one builds on (an essay's draft, an evaluation's essay)",
            "combo_id": "Concept combination it descends from",
            "replicate": "Replicate index (part of the gen_id)",
            "origin_cohort_id": "Cohort that first planned or imported it",
            "imported": "1 when imported from the previous pipeline",
            "score": "Evaluation score on its rubric's scale (evaluations only; see the scores view)",
            "prompt": "Prompt sent to the model (Markdown)",
            "response": "Raw answer of the model (Markdown)",
            "parsed": "Parsed output: the draft, the essay, or the score text (Markdown)",
            "prompt_tokens": "Prompt tokens over all calls",
            "completion_tokens": "Completion tokens over all calls",
            "cost_usd": _COST,
            "latency_s": "Latency of the last successful call, seconds",
            "calls": "LLM call tries made, all attempts",
            "failed_calls": "LLM call tries that failed, all attempts",
            "finish_reason": "Provider finish reason of the last answer",
            "error": "Why the current attempt failed (or the last call error)",
            "prompt_hash": "sha256 of the prompt (texts)",
            "raw_hash": "sha256 of the raw answer (texts)",
            "parsed_hash": "sha256 of the parsed output (texts)",
            "planned_seq": "seq of the event that planned or imported it",
            "updated_seq": "seq of the last event that changed it",
        }),
    "cohort_membership": ViewDoc(
        "Cohort membership",
        "Which generations each cohort uses: planned by it, or linked (reused from earlier work, "
        "paid for once).",
        {
            "cohort_id": _COHORT, "stage": _STAGE, "gen_id": _GEN,
            "status": "planned, running, completed or failed",
            "blocked": "1 when still planned because its parent (or the parent's parent) failed",
            "template_id": "Template id", "model_id": "Model id", "replicate": "Replicate index",
            "joined_as": "planned (this cohort planned it first) or linked (reused)",
            "seq": "seq of the event that added it to the cohort",
        }),
    "cohort_progress": ViewDoc(
        "Cohort progress",
        "Per cohort and stage: how many generations are planned, completed, failed and still "
        "pending (pending includes running and blocked ones), with calls, tokens and spend.",
        {
            "cohort_id": _COHORT, "stage": _STAGE,
            "planned": "Generations in the cohort at this stage",
            "completed": "Completed generations", "failed": "Failed generations (current attempt)",
            "running": "Generations with a call in flight",
            "pending": "Generations not yet completed or failed (includes running and blocked)",
            "blocked": "Pending generations whose parent (or the parent's parent) failed",
            "calls": "LLM call tries made", "tokens": "Prompt plus completion tokens",
            "cost_usd": _COST,
            "lost_calls": "Calls sent by a worker that stopped before recording the answer: outcome "
                          "unknown, maybe paid (not in calls)",
            "estimated_cost_usd": "Estimated cost of the lost calls, USD (an estimate; not in cost_usd)",
        }),
    "scores": ViewDoc(
        "Scores",
        "One row per evaluation: the essay it judged, the rubric, the evaluator model, the "
        "replicate and the score, or why there is none.",
        {
            "evaluation_gen_id": "Evaluation generation id",
            "essay_gen_id": "The essay evaluated", "rubric": "Evaluation template id",
            "evaluator": "Evaluator model id", "replicate": "Replicate index",
            "attempt": "Current attempt", "status": "planned, running, completed or failed",
            "score": "Score on the rubric's scale (scale_min–scale_max), NULL when not (yet) parsed",
            "parse_status": "parsed, parse_failed, failed, no_score or pending",
            "parse_error": "Why the parser found no score",
            "error": "Failure message of the current attempt",
            "imported": "1 when imported from the previous pipeline",
            "scale_min": "Lowest score of the rubric's scale the score is on (0 for 0-9)",
            "scale_max": "Highest score of that scale (9 for 0-9, 10 for 0-10)",
            "score_norm": "The score on 0-1: (score - scale_min) / (scale_max - scale_min), for "
                          "comparing rubrics with different scales",
        }),
    "essay_scores": ViewDoc(
        "Essay scores by rubric",
        "Per essay and rubric: the statistics of its scores over evaluators and replicates, on the "
        "rubric's scale (on score_norm, 0-1, should the rubric's scores carry different scales).",
        {
            "essay_gen_id": "Essay generation id", "rubric": "Evaluation template id",
            "n": "Scores counted", "evaluators": "Distinct evaluator models",
            "mean": "Mean score", "min": "Lowest score", "max": "Highest score",
            "stdev": "Sample standard deviation (NULL for a single score)",
            "scale": _SCALE,
        }),
    "essay_rankings": ViewDoc(
        "Essay rankings",
        "Per cohort: each scored essay with its lineage, the mean of all its scores in that "
        "cohort (every rubric, evaluator and replicate weighs the same) and its rank, 1 = best. "
        "A cohort whose rubrics use different scales is ranked on score_norm (each score's 0-1 "
        "position on its rubric's scale), as daydream compare compares it.",
        {
            "cohort_id": _COHORT, "essay_gen_id": "Essay generation id",
            "combo_id": "Concept combination", "draft_gen_id": "Draft the essay was written from",
            "draft_template": "Draft template id", "draft_model": "Model that wrote the draft",
            "essay_template": "Essay template id", "essay_model": "Model that wrote the essay",
            "mean": "Mean score over rubrics, evaluators and replicates (of score_norm when the scales mix)",
            "n": "Scores counted",
            "rank": "Rank within the cohort (ties share a rank)",
            "scale": _SCALE,
        }),
    "llm_calls": ViewDoc(
        "LLM calls",
        "Every request of every LLM call, read from the events: completed, failed, unknown (sent by "
        "a worker that stopped before recording the answer; its cost is estimated) or open (sent, "
        "not answered yet).",
        {
            "seq": "seq of the event",
            "stream": "Event stream, gen:<gen_id> (filtering on it or on gen_id is an index lookup)",
            "gen_id": _GEN, "stage": _STAGE, "attempt": "Generation attempt", "call": "Call number within the attempt",
            "try": "Try number of a failed call", "model_id": "Catalog model id",
            "provider": "Provider plugin", "resolved_model": "Model the provider says answered",
            "outcome": "completed, failed, unknown or open", "latency_s": "Seconds until the answer",
            "prompt_tokens": "Prompt tokens", "completion_tokens": "Completion tokens",
            "cost_usd": "Money spent on this call, USD", "finish_reason": "Provider finish reason",
            "error_class": "Error class of a failed try", "message": "Error message of a failed try",
            "recorded_at": "When the event was recorded (UTC)",
            "estimated_cost_usd": "Estimated cost of a call whose outcome is unknown, USD (not in cost_usd)",
        }),
    "spend": ViewDoc(
        "Spend",
        "Per cohort, stage and model: generations, calls, tokens and money. A generation reused by "
        "several cohorts appears in each (it was paid once).",
        {
            "cohort_id": _COHORT, "stage": _STAGE, "model_id": "Catalog model id",
            "generations": "Generations", "calls": "LLM call tries", "failed_calls": "Failed tries",
            "prompt_tokens": "Prompt tokens", "completion_tokens": "Completion tokens",
            "cost_usd": _COST,
            "lost_calls": "Calls sent by a worker that stopped before recording the answer: outcome "
                          "unknown, maybe paid (not in calls)",
            "estimated_cost_usd": "Estimated cost of the lost calls, USD (an estimate; not in cost_usd)",
        }),
    "failures": ViewDoc(
        "Failures",
        "Every generation whose current attempt failed: what it was, why it failed, and the "
        "event that recorded it. A retry (GenerationRetried) removes it from here.",
        {
            "gen_id": _GEN, "stage": _STAGE, "template_id": "Template id", "model_id": "Model id",
            "attempt": "Attempt that failed", "origin_cohort_id": "Cohort that planned it",
            "kind": "parse (the answer could not be parsed) or generation (anything else)",
            "reason": "Why it failed", "calls": "LLM call tries", "failed_calls": "Failed tries",
            "blocked_children": "Generations planned on top of it (they cannot run)",
            "failed_seq": "seq of the GenerationFailed or ParseFailed event",
            "response": "Raw answer that could not be used (Markdown)",
            "error_class": "Class of the failure (ServerError, ParseFailed, ValidationFailed …): the reason to group by",
        }),
    "evaluator_agreement": ViewDoc(
        "Evaluators by rubric",
        "Per rubric and evaluator model: how many evaluations, their mean and spread (on the rubric's "
        "scale; on score_norm should its scores carry different scales), and the parse-failure rate. "
        "Compare the rows of one rubric; daydream report adds Krippendorff's alpha.",
        {
            "rubric": "Evaluation template id", "evaluator": "Evaluator model id",
            "evaluations": "Evaluations planned", "scored": "Evaluations with a score",
            "essays": "Distinct essays evaluated", "mean": "Mean score",
            "stdev": "Sample standard deviation", "parse_failure_rate": "Share of evaluations whose answer did not parse",
            "scale": _SCALE,
        }),
    # Migration 0009: what daydream compare reads and pairs, so any of its numbers can be redone in SQL.
    "evaluation_design": ViewDoc(
        "Evaluation design",
        "Per cohort: every scored evaluation with the design of its whole lineage (combo, draft, "
        "essay and evaluation templates, models and replicates) and the independent unit it belongs to.",
        {
            "cohort_id": _COHORT, "evaluation_gen_id": "Evaluation generation id",
            "essay_gen_id": "The essay evaluated", "draft_gen_id": "The essay's draft (NULL without one)",
            "unit_gen_id": "Independent unit: the draft, or the essay when there is no draft",
            "combo": "Concept combination", "draft_template": "Draft template id",
            "draft_llm": "Model that wrote the draft", "draft_replicate": "Draft replicate index",
            "draft_copy": "1 when the draft was copied (no model)", "essay_template": "Essay template id",
            "essay_llm": "Model that wrote the essay (NULL for a copy)", "essay_replicate": "Essay replicate index",
            "essay_copy": "1 when the essay is a copy of its draft (no model)",
            "evaluation_template": "Rubric (evaluation template id)", "evaluation_llm": "Evaluator model id",
            "evaluation_replicate": "Evaluation replicate index",
            "score": "The score compared: as given, or score_norm (0-1) when the cohort's rubrics use different scales",
            "scale_min": "Lowest score of the rubric's scale", "scale_max": "Highest score of the rubric's scale",
        }),
    "comparisons": ViewDoc(
        "Comparisons: matched pairs",
        "The pairs behind daydream compare: for each factor, two scored evaluations of one cohort at "
        "levels a < b, equal on every other design axis (a copy's missing model matches any model). "
        "Filter on cohort_id, factor, a and b; n_pairs is COUNT(*), wins SUM(score_a > score_b), and "
        "diff the mean over units of AVG(diff) GROUP BY unit.",
        {
            "cohort_id": _COHORT, "factor": "The design axis compared", "a": "Level A (the smaller)",
            "b": "Level B", "unit": "Independent unit the pair is averaged into (the unit of A, '+', the unit of B)",
            "combo": "Concept combination", "draft_template": "Draft template (side A)",
            "draft_llm": "Draft model (side A)", "draft_replicate": "Draft replicate",
            "essay_template": "Essay template (side A)", "essay_llm": "Essay model (side A)",
            "essay_replicate": "Essay replicate", "evaluation_template": "Rubric (side A)",
            "evaluation_llm": "Evaluator (side A)", "evaluation_replicate": "Evaluation replicate",
            "evaluation_a": "Evaluation at level A", "evaluation_b": "Evaluation at level B",
            "score_a": "Score at A", "score_b": "Score at B", "diff": "score_a - score_b",
        }),
}


# The trigger-maintained tables behind cohort_progress, spend and essay_rankings, recomputed from
# gen_state and cohort_members (the same SQL as migration 0010 uses to fill them; conditions are
# counted with CASE, not summed as booleans, so that it runs on PostgreSQL too).
_UNPRICED_SQL = "(COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL)"
_NORM_SQL = ("CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 "
             "/ (g.scale_max - g.scale_min) END")
_SCALE_SQL = "COALESCE(g.scale_min || '-' || g.scale_max, '')"
_SCORED_SQL = ("g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL "
               "AND g.parent_gen_id IS NOT NULL")
_REFRESH = (
    "DELETE FROM cohort_totals",
    "DELETE FROM cohort_essay_scores",
    "DELETE FROM cohort_scales",
    f"""INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running,
           calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced)
       SELECT m.cohort_id, g.stage, COALESCE(g.model_id, ''), COUNT(*),
              SUM(CASE WHEN g.status = 'completed' THEN 1 ELSE 0 END),
              SUM(CASE WHEN g.status = 'failed' THEN 1 ELSE 0 END),
              SUM(CASE WHEN g.status = 'running' THEN 1 ELSE 0 END), SUM(COALESCE(g.calls, 0)),
              SUM(COALESCE(g.failed_calls, 0)), SUM(COALESCE(g.prompt_tokens, 0)),
              SUM(COALESCE(g.completion_tokens, 0)), SUM(COALESCE(g.cost_usd, 0)),
              SUM(CASE WHEN {_UNPRICED_SQL} THEN 1 ELSE 0 END)
       FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
       GROUP BY m.cohort_id, g.stage, COALESCE(g.model_id, '')""",
    # The essay's lineage is filled by the trigger that runs on each new row.
    f"""INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9)
       SELECT m.cohort_id, g.parent_gen_id, COUNT(*), SUM(g.score),
              SUM(COALESCE(CAST(ROUND(({_NORM_SQL}) * 1e9) AS INTEGER), 0))
       FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
       WHERE {_SCORED_SQL}
       GROUP BY m.cohort_id, g.parent_gen_id""",
    f"""INSERT INTO cohort_scales (cohort_id, scale, n)
       SELECT m.cohort_id, {_SCALE_SQL}, COUNT(*)
       FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
       WHERE {_SCORED_SQL}
       GROUP BY m.cohort_id, {_SCALE_SQL}""",
)


def refresh_read_projections(ledger: Ledger) -> None:
    """Recompute ``cohort_totals``, ``cohort_essay_scores`` and ``cohort_scales`` from gen_state and
    cohort_members.

    Triggers keep them current; this is for a projection rebuild that bypasses triggers (e.g. one
    that drops and recreates gen_state). Runs in one write transaction.
    """
    def work(cur: Any) -> None:
        for sql in _REFRESH:
            cur.execute(sql)

    ledger.backend.write(work)


def _dicts(ledger: Ledger, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    with ledger.backend.read() as conn:
        cursor = conn.execute(sql, params)
        names = column_names(cursor)
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def query(ledger: Ledger, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Run a read-only statement and return rows as dicts (column name → value)."""
    return _dicts(ledger, sql, params)


def cohort_ids(ledger: Ledger) -> list[str]:
    """All cohorts that have members, sorted."""
    return [r["cohort_id"] for r in _dicts(ledger, "SELECT DISTINCT cohort_id FROM cohort_members m WHERE "
                                                  "m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans) "
                                                  "ORDER BY 1")]  # staged by an open plan: not yet (0013)


def cohort_status(ledger: Ledger, cohort_id: str | None = None) -> list[dict[str, Any]]:
    """``cohort_progress`` rows (one cohort, or all), stages in pipeline order, each with
    ``unpriced``: how many generations made calls whose cost was never recorded.

    Raises ``NotFound`` when ``cohort_id`` has no generations.
    """
    order = "CASE stage WHEN 'draft' THEN 0 WHEN 'essay' THEN 1 WHEN 'evaluation' THEN 2 ELSE 3 END"
    if cohort_id is None:
        found = _dicts(ledger, f"SELECT * FROM cohort_progress ORDER BY cohort_id, {order}, stage")
    else:
        found = _dicts(ledger, f"SELECT * FROM cohort_progress WHERE cohort_id = ? ORDER BY {order}, stage",
                       (cohort_id,))
        if not found:
            known = ", ".join(cohort_ids(ledger)) or "none"
            raise NotFound(f"cohort {cohort_id!r} has no generations in the ledger (cohorts: {known})")
    unpriced = unpriced_counts(ledger, cohort_id)
    for row in found:
        row["unpriced"] = unpriced.get((row["cohort_id"], row["stage"]), 0)
    return found


def unpriced_counts(ledger: Ledger, cohort_id: str | None = None) -> dict[tuple[str, str], int]:
    """(cohort, stage) → generations that made calls whose cost was never recorded.

    Imported generations often carry tokens but no price; cost sums treat them as 0, so every
    spend figure has to say how many generations it leaves out rather than look free. Since
    migration 0010 ``cohort_totals`` keeps the count (a few rows to sum); a ledger read before it
    (opened read-only) is counted from the generations.
    """
    params = (cohort_id,) if cohort_id else ()
    if "unpriced" in ledger.backend.columns("cohort_totals"):
        where = "WHERE cohort_id = ?" if cohort_id else ""
        return {(r["cohort_id"], r["stage"]): r["n"] for r in _dicts(ledger, f"""
            SELECT cohort_id, stage, SUM(unpriced) AS n FROM cohort_totals {where}
            GROUP BY cohort_id, stage HAVING SUM(unpriced) > 0""", params)}
    where = "WHERE g.calls > g.failed_calls AND g.cost_usd IS NULL" + (" AND m.cohort_id = ?" if cohort_id else "")
    # One cohort: walk its members. Every cohort: one pass over gen_state, then the member index for
    # the few unpriced ones (walking every membership instead took 250 ms at 1M events, this 45 ms).
    join = "cohort_members m JOIN gen_state g" if cohort_id else "gen_state g CROSS JOIN cohort_members m"
    return {(r["cohort_id"], r["stage"]): r["n"] for r in _dicts(ledger, f"""
        SELECT m.cohort_id, g.stage, COUNT(*) AS n FROM {join} ON g.gen_id = m.gen_id {where}
        GROUP BY m.cohort_id, g.stage""", params)}


def latest_catalog(ledger: Ledger) -> dict[str, Any]:
    """Payload of the newest ``CatalogImported`` event ({} when there is none)."""
    found = _dicts(ledger, "SELECT payload FROM events WHERE type = 'CatalogImported' ORDER BY seq DESC LIMIT 1")
    return json.loads(found[0]["payload"]) if found else {}


def concept_names(ledger: Ledger) -> dict[str, str]:
    """Concept id → display name, from the latest catalog."""
    return {c["id"]: c.get("name") or c["id"] for c in latest_catalog(ledger).get("concepts", [])}


def combo(ledger: Ledger, combo_id: str | None) -> dict[str, Any] | None:
    """A combination with its concepts' names, or None."""
    if not combo_id:
        return None
    found = _dicts(ledger, "SELECT combo_id, concept_ids, level, k FROM combos WHERE combo_id = ?", (combo_id,))
    if not found:
        return {"combo_id": combo_id, "concepts": [], "level": None, "k": None}
    row = found[0]
    names = concept_names(ledger)
    ids = json.loads(row["concept_ids"] or "[]")
    return {"combo_id": combo_id, "level": row["level"], "k": row["k"],
            "concepts": [{"id": c, "name": names.get(c, c)} for c in ids]}


def generation(ledger: Ledger, gen_id: str) -> dict[str, Any]:
    """The ``generations`` row of ``gen_id``; raises ``NotFound`` naming the id."""
    found = _dicts(ledger, "SELECT * FROM generations WHERE gen_id = ?", (gen_id,))
    if not found:
        raise NotFound(f"generation {gen_id!r} is not in the ledger (see 'daydream events --type GenerationPlanned')")
    return found[0]


def lineage(ledger: Ledger, gen_id: str) -> dict[str, Any]:
    """Everything behind one generation: combo and concepts, ancestors, itself, children, events.

    ``ancestors`` runs from the oldest (the draft) to the direct parent; ``children`` are the
    generations built on it (an essay's evaluations, with their scores).
    """
    from daydream.ledger.events import gen_stream  # the event classes load only when needed (start-up)

    target = generation(ledger, gen_id)
    ancestors: list[dict[str, Any]] = []
    parent = target["parent_gen_id"]
    seen = {gen_id}
    while parent and parent not in seen:
        seen.add(parent)
        found = _dicts(ledger, "SELECT * FROM generations WHERE gen_id = ?", (parent,))
        if not found:
            break
        ancestors.insert(0, found[0])
        parent = found[0]["parent_gen_id"]
    root = ancestors[0] if ancestors else target
    children = _dicts(ledger, "SELECT * FROM generations WHERE parent_gen_id = ? ORDER BY stage, template_id, "
                              "model_id, replicate, gen_id", (gen_id,))
    events = _dicts(ledger, "SELECT seq, type, version, recorded_at, payload FROM events WHERE stream = ? "
                            "ORDER BY version", (gen_stream(gen_id),))
    for e in events:
        e["payload"] = json.loads(e["payload"])
    cohorts = [r["cohort_id"] for r in _dicts(
        ledger, "SELECT cohort_id FROM cohort_members WHERE gen_id = ? ORDER BY cohort_id", (gen_id,))]
    return {"generation": target, "combo": combo(ledger, root["combo_id"] or target["combo_id"]),
            "ancestors": ancestors, "children": children, "events": events, "cohorts": cohorts}


def essay_title(text: str | None, fallback: str = "") -> str:
    """The essay's title: its first Markdown heading, else its first non-empty line (shortened)."""
    if not text:
        return fallback
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if line.startswith("#"):
            return line.lstrip("#").strip() or fallback
    first = lines[0] if lines else fallback
    return first if len(first) <= 80 else first[:77].rstrip() + "…"
