"""Read-side SQL views: generations, cohorts, scores, rankings, LLM calls, spend and failures.

Every view reads the projection tables of 0002 (``gen_state``, ``cohort_members``, ``combos``) or
the ``events`` log itself, so it is always in step with the ledger. Each view starts with a SQL
comment saying what one row is (SQLite keeps it in ``sqlite_master``); the column-level
descriptions live in ``daydream.views`` and are shown by Datasette.

Revision ID: 0003_views
Revises: 0002_projections
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003_views"
down_revision = "0002_projections"
branch_labels = None
depends_on = None

# A generation waits on its parent: it counts as blocked while its parent has failed.
BLOCKED = ("(g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS ("
           "SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND p.status = 'failed'))")

VIEWS: dict[str, str] = {
    "generations": f"""
-- One row per generation (current attempt), with its prompt, raw response and parsed text.
SELECT g.gen_id, g.stage, g.status, {BLOCKED} AS blocked, g.attempt,
       g.template_id, g.template_hash, g.model_id, g.resolved_model, g.generator, g.parser,
       g.parent_gen_id, g.combo_id, g.replicate, g.origin_cohort_id, g.imported, g.score,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.prompt_hash) AS prompt,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.parsed_hash) AS parsed,
       g.prompt_tokens, g.completion_tokens, g.cost_usd, g.latency_s, g.calls, g.failed_calls,
       g.finish_reason, g.error, g.prompt_hash, g.raw_hash, g.parsed_hash, g.planned_seq,
       g.updated_seq
FROM gen_state g""",
    "cohort_membership": f"""
-- One row per (cohort, generation): which generations a cohort uses, planned or linked (reused).
SELECT m.cohort_id, m.stage, m.gen_id, g.status, {BLOCKED} AS blocked, g.template_id, g.model_id,
       g.replicate, CASE WHEN g.origin_cohort_id = m.cohort_id THEN 'planned' ELSE 'linked' END
       AS joined_as, m.seq
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id""",
    "cohort_progress": f"""
-- One row per cohort and stage: how many generations are planned, done, failed, still pending.
SELECT m.cohort_id, m.stage, COUNT(*) AS planned,
       SUM(g.status = 'completed') AS completed, SUM(g.status = 'failed') AS failed,
       SUM(g.status = 'running') AS running, SUM(g.status IN ('planned', 'running')) AS pending,
       SUM({BLOCKED}) AS blocked, SUM(g.calls) AS calls,
       COALESCE(SUM(g.prompt_tokens), 0) + COALESCE(SUM(g.completion_tokens), 0) AS tokens,
       ROUND(COALESCE(SUM(g.cost_usd), 0), 6) AS cost_usd
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
GROUP BY m.cohort_id, m.stage""",
    "scores": """
-- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not).
SELECT v.gen_id AS evaluation_gen_id, v.parent_gen_id AS essay_gen_id, v.template_id AS rubric,
       v.model_id AS evaluator, v.replicate, v.attempt, v.status, v.score,
       CASE WHEN v.score IS NOT NULL THEN 'parsed'
            WHEN v.status = 'failed' AND v.error LIKE 'ParseFailed:%' THEN 'parse_failed'
            WHEN v.status = 'completed' THEN 'no_score'
            WHEN v.status = 'failed' THEN 'failed'
            ELSE 'pending' END AS parse_status,
       CASE WHEN v.error LIKE 'ParseFailed:%' THEN substr(v.error, 14) END AS parse_error,
       v.error, v.imported
FROM gen_state v
WHERE v.stage = 'evaluation'""",
    "essay_scores": """
-- One row per essay and rubric: statistics of its scores over evaluators and replicates.
SELECT v.parent_gen_id AS essay_gen_id, v.template_id AS rubric, COUNT(v.score) AS n,
       COUNT(DISTINCT v.model_id) AS evaluators,
       ROUND(AVG(v.score), 4) AS mean, MIN(v.score) AS min, MAX(v.score) AS max,
       CASE WHEN COUNT(v.score) > 1 THEN ROUND(sqrt(MAX(0.0,
            (SUM(v.score * v.score) - SUM(v.score) * SUM(v.score) / COUNT(v.score))
            / (COUNT(v.score) - 1))), 4) END AS stdev
FROM gen_state v
WHERE v.stage = 'evaluation' AND v.score IS NOT NULL
GROUP BY v.parent_gen_id, v.template_id""",
    "essay_rankings": """
-- One row per cohort and essay: the mean of all its scores in that cohort, and its rank (1 = best).
WITH per_essay AS (
    SELECT m.cohort_id, v.parent_gen_id AS essay_gen_id, COUNT(*) AS n,
           AVG(v.score) AS mean, COUNT(DISTINCT v.template_id) AS rubrics,
           COUNT(DISTINCT v.model_id) AS evaluators
    FROM cohort_members m JOIN gen_state v ON v.gen_id = m.gen_id
    WHERE m.stage = 'evaluation' AND v.score IS NOT NULL
    GROUP BY m.cohort_id, v.parent_gen_id
)
SELECT s.cohort_id, s.essay_gen_id, e.combo_id, d.gen_id AS draft_gen_id,
       d.template_id AS draft_template, d.model_id AS draft_model,
       e.template_id AS essay_template, e.model_id AS essay_model,
       ROUND(s.mean, 4) AS mean, s.n, s.rubrics, s.evaluators,
       RANK() OVER (PARTITION BY s.cohort_id ORDER BY ROUND(s.mean, 4) DESC) AS rank
FROM per_essay s
JOIN gen_state e ON e.gen_id = s.essay_gen_id
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id""",
    "llm_calls": """
-- One row per LLM call try: its outcome (completed, failed, or open while no answer is recorded).
SELECT o.seq, json_extract(o.payload, '$.gen_id') AS gen_id, g.stage,
       json_extract(o.payload, '$.attempt') AS attempt, json_extract(o.payload, '$.call') AS call,
       json_extract(o.payload, '$.try') AS try,
       json_extract(o.payload, '$.model_id') AS model_id,
       json_extract(o.payload, '$.provider') AS provider,
       json_extract(o.payload, '$.resolved_model') AS resolved_model,
       CASE o.type WHEN 'LLMCallCompleted' THEN 'completed' ELSE 'failed' END AS outcome,
       json_extract(o.payload, '$.latency_s') AS latency_s,
       json_extract(o.payload, '$.prompt_tokens') AS prompt_tokens,
       json_extract(o.payload, '$.completion_tokens') AS completion_tokens,
       json_extract(o.payload, '$.cost_usd') AS cost_usd,
       json_extract(o.payload, '$.finish_reason') AS finish_reason,
       json_extract(o.payload, '$.error_class') AS error_class,
       json_extract(o.payload, '$.message') AS message,
       o.recorded_at
FROM events o LEFT JOIN gen_state g ON g.gen_id = json_extract(o.payload, '$.gen_id')
WHERE o.type IN ('LLMCallCompleted', 'LLMCallFailed')
UNION ALL
SELECT s.seq, json_extract(s.payload, '$.gen_id'), g.stage, json_extract(s.payload, '$.attempt'),
       json_extract(s.payload, '$.call'), NULL, json_extract(s.payload, '$.model_id'),
       json_extract(s.payload, '$.provider'), NULL, 'open', NULL, NULL, NULL, NULL, NULL, NULL,
       NULL, s.recorded_at
FROM events s LEFT JOIN gen_state g ON g.gen_id = json_extract(s.payload, '$.gen_id')
WHERE s.type = 'LLMCallStarted' AND NOT EXISTS (
    SELECT 1 FROM events o WHERE o.stream = s.stream AND o.version > s.version
      AND o.type IN ('LLMCallCompleted', 'LLMCallFailed')
      AND json_extract(o.payload, '$.attempt') = json_extract(s.payload, '$.attempt')
      AND json_extract(o.payload, '$.call') = json_extract(s.payload, '$.call'))""",
    "spend": """
-- One row per cohort, stage and model: calls, tokens and money (a reused generation counts in each).
SELECT m.cohort_id, m.stage, g.model_id, COUNT(*) AS generations, SUM(g.calls) AS calls,
       SUM(g.failed_calls) AS failed_calls, COALESCE(SUM(g.prompt_tokens), 0) AS prompt_tokens,
       COALESCE(SUM(g.completion_tokens), 0) AS completion_tokens,
       ROUND(COALESCE(SUM(g.cost_usd), 0), 6) AS cost_usd
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
GROUP BY m.cohort_id, m.stage, g.model_id""",
    "failures": """
-- One row per generation whose current attempt failed: what, why, and the event that says so.
SELECT g.gen_id, g.stage, g.template_id, g.model_id, g.attempt, g.origin_cohort_id,
       CASE WHEN g.error LIKE 'ParseFailed:%' THEN 'parse' ELSE 'generation' END AS kind,
       g.error AS reason, g.calls, g.failed_calls,
       (SELECT COUNT(*) FROM gen_state c WHERE c.parent_gen_id = g.gen_id) AS blocked_children,
       (SELECT MAX(f.seq) FROM events f WHERE f.stream = 'gen:' || g.gen_id
          AND f.type IN ('GenerationFailed', 'ParseFailed')) AS failed_seq,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response
FROM gen_state g
WHERE g.status = 'failed'""",
    "evaluator_agreement": """
-- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric).
SELECT v.template_id AS rubric, v.model_id AS evaluator, COUNT(*) AS evaluations,
       COUNT(v.score) AS scored, COUNT(DISTINCT v.parent_gen_id) AS essays,
       ROUND(AVG(v.score), 4) AS mean,
       CASE WHEN COUNT(v.score) > 1 THEN ROUND(sqrt(MAX(0.0,
            (SUM(v.score * v.score) - SUM(v.score) * SUM(v.score) / COUNT(v.score))
            / (COUNT(v.score) - 1))), 4) END AS stdev,
       ROUND(1.0 * SUM(v.status = 'failed' AND v.error LIKE 'ParseFailed:%') / COUNT(*), 4)
       AS parse_failure_rate
FROM gen_state v
WHERE v.stage = 'evaluation'
GROUP BY v.template_id, v.model_id""",
}

INDEXES = {
    # Rankings and essay_scores group evaluations by essay; scores look essays up by parent.
    "ix_gen_state_stage_parent_score": "gen_state (stage, parent_gen_id, template_id, score)",
    "ix_gen_state_status": "gen_state (status)",
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {columns}")
    for name, body in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {body.strip()}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
