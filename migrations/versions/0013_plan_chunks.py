"""Plans in several transactions, invisible until complete: open plans and the rows they stage.

A plan too big for one write transaction (issue 15: a million generations held the write lock for
two minutes, longer than other writers wait) is appended in transactions of a few seconds each,
between a ``PlanStarted`` and the ``CohortPlanned`` that completes it, both carrying its
``plan_id``; so do its ``GenerationPlanned`` and ``GenerationLinked`` events, whose rows are
*staged* while the plan is open:

- ``gen_state.plan_id``, ``cohort_members.plan_id`` (new, NULL for every existing row): the plan
  that staged the row. A row is visible when its plan_id is NULL or not in ``open_plans``.
- ``open_plans`` (plan_id, cohort_id): the plans started and not completed (a plan that died
  stays there, its rows invisible for good unless a later plan links them). ``plan_totals``: the
  new generations an open plan staged, counted per cohort, stage and model as they come.
  ``plan_links``: the generations an open plan links. Both are emptied when it completes.
- The counter triggers behind ``cohort_progress``, ``spend`` and ``essay_rankings``
  (``read_gen_*``, ``read_member_*``: 0003 and 0010) skip staged memberships; otherwise the same text.
- Projections (``daydream/ledger/projections.py``, frozen below): ``PlanStarted`` (now projected)
  opens the plan; ``GenerationPlanned`` and ``GenerationLinked`` stage their rows and count them;
  ``CohortPlanned`` (now projected) with a plan id completes it in a few set-based statements
  whose cost does not grow with the plan's new generations: their counts are added from
  ``plan_totals``, its links' from the rows they name, and the plan leaves ``open_plans``, which
  makes every row it staged visible at once (no row is rewritten). A generation an open plan
  staged becomes visible on its own when another plan links it.
- Views that read gen_state or cohort_members rows directly filter staged rows out:
  ``generations``, ``cohort_membership``, ``scores``, ``evaluator_agreement``,
  ``evaluation_design`` (otherwise their 0011 text). The runner's pending queries filter them
  too (daydream/run/pending.py).

PostgreSQL: the same, from the frozen script beside this file (0013_postgresql.sql): columns,
tables and indexes, the counter functions and the projection function (``daydream_project``)
replaced, ``PlanStarted`` and ``CohortPlanned`` projected, the five views replaced (same columns).

Revision ID: 0013_plan_chunks
Revises: 0012_guarded_append
Create Date: 2026-12-03
"""

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0013_plan_chunks"
down_revision = "0012_guarded_append"
branch_labels = None
depends_on = None

# ------------------------------------------------------------------------------------------------
# Frozen copy of daydream.ledger.projections (PROJECTED_TYPES and trigger_sql() of each type) as of
# this revision. Do not edit: a change to the projections is a new revision with a new copy
# (daydream.ledger.projections.frozen_copy() prints it).
PROJECTED_TYPES = (
    "GenerationPlanned",
    "GenerationLinked",
    "GenerationImported",
    "PromptRendered",
    "LLMCallStarted",
    "LLMCallCompleted",
    "LLMCallFailed",
    "ClaimReleased",
    "ResponseParsed",
    "ScoreRecorded",
    "ParseFailed",
    "GenerationFailed",
    "GenerationRetried",
    "PlanStarted",
    "CohortPlanned",
    "ComboDefined",
)
PROJECTION_TRIGGERS = {
    "GenerationPlanned": """CREATE TRIGGER project_GenerationPlanned INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationPlanned'
BEGIN
-- A new generation: its row in gen_state (attempt 1, planned, no calls yet), and its membership of the
-- cohort that planned it. A generation already there stays as it is.
INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
    generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
    calls, failed_calls, updated_seq, plan_id)
SELECT json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), json_extract(NEW.payload, '$.parent_gen_id'), json_extract(NEW.payload, '$.combo_id'), json_extract(NEW.payload, '$.template_id'),
    json_extract(NEW.payload, '$.template_hash'), json_extract(NEW.payload, '$.generator'), json_extract(NEW.payload, '$.parser'), json_extract(NEW.payload, '$.model_id'), json_extract(NEW.payload, '$.replicate'),
    json_extract(NEW.payload, '$.cohort_id'), NEW.seq, 0, 1, 'planned', 0, 0, NEW.seq, json_extract(NEW.payload, '$.plan_id')
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO cohort_members (cohort_id, gen_id, stage, seq, plan_id)
SELECT json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), NEW.seq, json_extract(NEW.payload, '$.plan_id')
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT (cohort_id, gen_id) DO UPDATE SET plan_id = excluded.plan_id, seq = excluded.seq
WHERE excluded.plan_id IS NOT NULL AND cohort_members.plan_id IN (SELECT plan_id FROM open_plans);
INSERT INTO plan_totals (plan_id, cohort_id, stage, model_key, generations)
SELECT json_extract(NEW.payload, '$.plan_id'), json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.stage'), COALESCE(json_extract(NEW.payload, '$.model_id'), ''), 1
WHERE json_extract(NEW.payload, '$.plan_id') IN (SELECT plan_id FROM open_plans) AND EXISTS (SELECT 1 FROM gen_state WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND plan_id = json_extract(NEW.payload, '$.plan_id'))
ON CONFLICT (plan_id, cohort_id, stage, model_key) DO UPDATE SET generations = plan_totals.generations + 1;
END""",
    "GenerationLinked": """CREATE TRIGGER project_GenerationLinked INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationLinked'
BEGIN
-- An existing generation joins another cohort (reused work): a membership. Linked outside an open
-- plan, a generation an open plan staged becomes visible.
UPDATE gen_state SET plan_id = NULL
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND plan_id IN (SELECT plan_id FROM open_plans)
    AND (json_extract(NEW.payload, '$.plan_id') IS NULL OR json_extract(NEW.payload, '$.plan_id') NOT IN (SELECT plan_id FROM open_plans));
INSERT INTO cohort_members (cohort_id, gen_id, stage, seq, plan_id)
SELECT json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), NEW.seq, json_extract(NEW.payload, '$.plan_id')
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT (cohort_id, gen_id) DO UPDATE SET plan_id = excluded.plan_id, seq = excluded.seq
WHERE excluded.plan_id IS NOT NULL AND cohort_members.plan_id IN (SELECT plan_id FROM open_plans);
INSERT INTO plan_links (plan_id, cohort_id, gen_id)
SELECT json_extract(NEW.payload, '$.plan_id'), json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.gen_id')
WHERE json_extract(NEW.payload, '$.plan_id') IN (SELECT plan_id FROM open_plans) AND json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT DO NOTHING;
END""",
    "GenerationImported": """CREATE TRIGGER project_GenerationImported INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationImported'
BEGIN
-- A generation brought in from the previous pipeline, with its results: its row as imported (completed
-- or failed), its score's scale, its membership when it came with a cohort. A second import that
-- completes one imported as failed fills in its results.
INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
    generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
    prompt_hash, raw_hash, parsed_hash, score, scale_min, scale_max, finish_reason, prompt_tokens,
    completion_tokens, cost_usd, latency_s, calls, failed_calls, error, updated_seq)
SELECT json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), json_extract(NEW.payload, '$.parent_gen_id'), json_extract(NEW.payload, '$.combo_id'), json_extract(NEW.payload, '$.template_id'),
    json_extract(NEW.payload, '$.template_hash'), json_extract(NEW.payload, '$.generator'), json_extract(NEW.payload, '$.parser'), json_extract(NEW.payload, '$.model_id'), json_extract(NEW.payload, '$.replicate'),
    json_extract(NEW.payload, '$.cohort_id'), NEW.seq, 1, 1, json_extract(NEW.payload, '$.status'), json_extract(NEW.payload, '$.prompt_hash'), json_extract(NEW.payload, '$.raw_hash'),
    json_extract(NEW.payload, '$.parsed_hash'), json_extract(NEW.payload, '$.score'),
    CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[0]'), 0) END,
    CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[1]'), 9) END,
    json_extract(NEW.payload, '$.finish_reason'), json_extract(NEW.payload, '$.prompt_tokens'), json_extract(NEW.payload, '$.completion_tokens'), json_extract(NEW.payload, '$.cost_usd'),
    json_extract(NEW.payload, '$.latency_s'), CASE WHEN json_extract(NEW.payload, '$.raw_hash') IS NULL THEN 0 ELSE 1 END, 0, json_extract(NEW.payload, '$.error'), NEW.seq
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)
SELECT json_extract(NEW.payload, '$.cohort_id'), json_extract(NEW.payload, '$.gen_id'), json_extract(NEW.payload, '$.stage'), NEW.seq
WHERE json_extract(NEW.payload, '$.stage') IS NOT NULL AND json_extract(NEW.payload, '$.cohort_id') IS NOT NULL
ON CONFLICT DO NOTHING;
UPDATE gen_state SET status = 'completed', prompt_hash = json_extract(NEW.payload, '$.prompt_hash'),
    raw_hash = json_extract(NEW.payload, '$.raw_hash'), parsed_hash = json_extract(NEW.payload, '$.parsed_hash'), score = json_extract(NEW.payload, '$.score'),
    scale_min = CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[0]'), 0) END,
    scale_max = CASE WHEN json_extract(NEW.payload, '$.score') IS NOT NULL THEN COALESCE(json_extract(NEW.payload, '$.scale[1]'), 9) END,
    finish_reason = json_extract(NEW.payload, '$.finish_reason'), prompt_tokens = json_extract(NEW.payload, '$.prompt_tokens'),
    completion_tokens = json_extract(NEW.payload, '$.completion_tokens'), cost_usd = json_extract(NEW.payload, '$.cost_usd'),
    latency_s = json_extract(NEW.payload, '$.latency_s'), parser = COALESCE(json_extract(NEW.payload, '$.parser'), parser),
    calls = CASE WHEN json_extract(NEW.payload, '$.raw_hash') IS NULL THEN 0 ELSE 1 END, error = NULL, parse_failed = 0,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND imported = 1 AND status = 'failed' AND planned_seq < NEW.seq
    AND json_extract(NEW.payload, '$.status') = 'completed';
END""",
    "PromptRendered": """CREATE TRIGGER project_PromptRendered INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'PromptRendered'
BEGIN
-- The prompt of the current attempt, and the template version that rendered it.
UPDATE gen_state SET prompt_hash = json_extract(NEW.payload, '$.prompt_hash'),
    template_hash = COALESCE(json_extract(NEW.payload, '$.template_hash'), template_hash), updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "LLMCallStarted": """CREATE TRIGGER project_LLMCallStarted INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'LLMCallStarted'
BEGIN
-- A worker claimed the call: the generation is running, under that worker's lease.
UPDATE gen_state SET status = 'running', lease_until = json_extract(NEW.payload, '$.lease_until'),
    worker = json_extract(NEW.payload, '$.worker'), updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "LLMCallCompleted": """CREATE TRIGGER project_LLMCallCompleted INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'LLMCallCompleted'
BEGIN
-- An answer: its text, and the call's tokens, cost and latency added to the generation's (it stays
-- running until the answer is parsed).
UPDATE gen_state SET raw_hash = json_extract(NEW.payload, '$.text_hash'), finish_reason = json_extract(NEW.payload, '$.finish_reason'),
    prompt_tokens = COALESCE(prompt_tokens, 0) + COALESCE(json_extract(NEW.payload, '$.prompt_tokens'), 0),
    completion_tokens = COALESCE(completion_tokens, 0) + COALESCE(json_extract(NEW.payload, '$.completion_tokens'), 0),
    cost_usd = CASE WHEN json_extract(NEW.payload, '$.cost_usd') IS NULL THEN cost_usd
                    ELSE COALESCE(cost_usd, 0) + json_extract(NEW.payload, '$.cost_usd') END,
    latency_s = json_extract(NEW.payload, '$.latency_s'), resolved_model = json_extract(NEW.payload, '$.resolved_model'), calls = calls + 1,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND NOT (json_extract(NEW.payload, '$.superseded') IS 1);
END""",
    "LLMCallFailed": """CREATE TRIGGER project_LLMCallFailed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'LLMCallFailed'
BEGIN
-- A failed try: counted, and its error kept. When the claim is given up with it (released: the model
-- was stopped) the generation is pending again.
UPDATE gen_state SET failed_calls = failed_calls + 1, calls = calls + 1,
    error = json_extract(NEW.payload, '$.error_class') || ': ' || json_extract(NEW.payload, '$.message'), parse_failed = 0,
    status = CASE WHEN (json_extract(NEW.payload, '$.released') IS 1) THEN 'planned' ELSE status END,
    lease_until = CASE WHEN (json_extract(NEW.payload, '$.released') IS 1) THEN NULL ELSE lease_until END,
    worker = CASE WHEN (json_extract(NEW.payload, '$.released') IS 1) THEN NULL ELSE worker END,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND NOT (json_extract(NEW.payload, '$.superseded') IS 1);
END""",
    "ClaimReleased": """CREATE TRIGGER project_ClaimReleased INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ClaimReleased'
BEGIN
-- A claim given back (stopped, interrupted, out of budget): the running generation is pending again.
UPDATE gen_state SET status = 'planned', lease_until = NULL, worker = NULL,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND status = 'running';
END""",
    "ResponseParsed": """CREATE TRIGGER project_ResponseParsed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ResponseParsed'
BEGIN
-- The answer parsed: the generation is completed, with its parsed text. A re-parse (daydream reparse)
-- also records the template and parser it used.
UPDATE gen_state SET parsed_hash = json_extract(NEW.payload, '$.parsed_hash'), status = 'completed', error = NULL,
    parse_failed = 0, lease_until = NULL, updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
UPDATE gen_state SET template_hash = COALESCE(json_extract(NEW.payload, '$.template_hash'), template_hash),
    parser = COALESCE(json_extract(NEW.payload, '$.parser'), parser)
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND (json_extract(NEW.payload, '$.reparsed') IS 1);
END""",
    "ScoreRecorded": """CREATE TRIGGER project_ScoreRecorded INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ScoreRecorded'
BEGIN
-- An evaluation's score, with the scale it was read on.
UPDATE gen_state SET score = json_extract(NEW.payload, '$.score'), scale_min = COALESCE(json_extract(NEW.payload, '$.scale[0]'), 0), scale_max = COALESCE(json_extract(NEW.payload, '$.scale[1]'), 9),
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "ParseFailed": """CREATE TRIGGER project_ParseFailed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ParseFailed'
BEGIN
-- The answer did not parse: the attempt failed, parse_failed says why (error keeps 'ParseFailed: ' and
-- the parser's reason), and no older score stays. A re-parse also records the template and parser it
-- used.
UPDATE gen_state SET status = 'failed', error = 'ParseFailed: ' || json_extract(NEW.payload, '$.reason'),
    parse_failed = 1, score = NULL, scale_min = NULL, scale_max = NULL, lease_until = NULL,
    updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
UPDATE gen_state SET template_hash = COALESCE(json_extract(NEW.payload, '$.template_hash'), template_hash),
    parser = COALESCE(json_extract(NEW.payload, '$.parser'), parser)
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt') AND (json_extract(NEW.payload, '$.reparsed') IS 1);
END""",
    "GenerationFailed": """CREATE TRIGGER project_GenerationFailed INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationFailed'
BEGIN
-- The attempt failed for another reason than parsing (the stage refused the answer, the calls gave up
-- …): its reason, the answer if there was one, no score.
UPDATE gen_state SET status = 'failed', error = json_extract(NEW.payload, '$.reason'), parse_failed = 0,
    raw_hash = COALESCE(json_extract(NEW.payload, '$.raw_hash'), raw_hash), score = NULL, scale_min = NULL, scale_max = NULL,
    lease_until = NULL, updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id') AND attempt = json_extract(NEW.payload, '$.attempt');
END""",
    "GenerationRetried": """CREATE TRIGGER project_GenerationRetried INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'GenerationRetried'
BEGIN
-- A forced new attempt: the generation is planned again with nothing of the old attempt's results (its
-- calls, tokens and cost stay counted).
UPDATE gen_state SET attempt = json_extract(NEW.payload, '$.attempt'), status = 'planned', prompt_hash = NULL,
    raw_hash = NULL, parsed_hash = NULL, score = NULL, scale_min = NULL, scale_max = NULL,
    finish_reason = NULL, error = NULL, parse_failed = 0, lease_until = NULL, worker = NULL,
    latency_s = NULL, updated_seq = NEW.seq
WHERE gen_id = json_extract(NEW.payload, '$.gen_id');
END""",
    "PlanStarted": """CREATE TRIGGER project_PlanStarted INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'PlanStarted'
BEGIN
-- A plan appended in several transactions is open: what it stages stays invisible.
INSERT INTO open_plans (plan_id, cohort_id)
SELECT json_extract(NEW.payload, '$.plan_id'), json_extract(NEW.payload, '$.cohort_id')
WHERE json_extract(NEW.payload, '$.plan_id') IS NOT NULL
ON CONFLICT DO NOTHING;
END""",
    "CohortPlanned": """CREATE TRIGGER project_CohortPlanned INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'CohortPlanned'
BEGIN
-- A plan appended in several transactions is complete (its plan_id): its new generations and its links
-- count in the cohort's totals, scores and scales, and everything it staged is visible, all at once. A
-- plan appended in one transaction has no plan_id and changes nothing here.
INSERT INTO cohort_totals (cohort_id, stage, model_key, generations)
SELECT cohort_id, stage, model_key, generations FROM plan_totals WHERE plan_id = json_extract(NEW.payload, '$.plan_id') AND json_extract(NEW.payload, '$.plan_id') IN (SELECT plan_id FROM open_plans)
ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations;
INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running,
    calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced)
SELECT l.cohort_id, g.stage, COALESCE(g.model_id, ''), COUNT(*), SUM((g.status = 'completed')),
    SUM((g.status = 'failed')), SUM((g.status = 'running')), SUM(COALESCE(g.calls, 0)),
    SUM(COALESCE(g.failed_calls, 0)), SUM(COALESCE(g.prompt_tokens, 0)), SUM(COALESCE(g.completion_tokens, 0)),
    SUM(COALESCE(g.cost_usd, 0)),
    SUM((COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL))
FROM plan_links l JOIN gen_state g ON g.gen_id = l.gen_id
WHERE l.plan_id = json_extract(NEW.payload, '$.plan_id') AND json_extract(NEW.payload, '$.plan_id') IN (SELECT plan_id FROM open_plans)
GROUP BY l.cohort_id, g.stage, COALESCE(g.model_id, '')
ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations,
    completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed,
    running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls,
    failed_calls = cohort_totals.failed_calls + excluded.failed_calls,
    prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens,
    cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9)
SELECT l.cohort_id, g.parent_gen_id, COUNT(*), SUM(g.score),
    SUM(COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0
        / (g.scale_max - g.scale_min) END) * 1e9) AS INTEGER), 0))
FROM plan_links l JOIN gen_state g ON g.gen_id = l.gen_id
WHERE l.plan_id = json_extract(NEW.payload, '$.plan_id') AND json_extract(NEW.payload, '$.plan_id') IN (SELECT plan_id FROM open_plans) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL
GROUP BY l.cohort_id, g.parent_gen_id
ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n,
    total = cohort_essay_scores.total + excluded.total,
    total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
INSERT INTO cohort_scales (cohort_id, scale, n)
SELECT l.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), COUNT(*)
FROM plan_links l JOIN gen_state g ON g.gen_id = l.gen_id
WHERE l.plan_id = json_extract(NEW.payload, '$.plan_id') AND json_extract(NEW.payload, '$.plan_id') IN (SELECT plan_id FROM open_plans) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL
GROUP BY l.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, '')
ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
UPDATE gen_state SET plan_id = NULL
WHERE gen_id IN (SELECT gen_id FROM plan_links WHERE plan_id = json_extract(NEW.payload, '$.plan_id')) AND json_extract(NEW.payload, '$.plan_id') IN (SELECT plan_id FROM open_plans)
    AND plan_id IN (SELECT plan_id FROM open_plans WHERE plan_id != json_extract(NEW.payload, '$.plan_id'));
DELETE FROM plan_totals WHERE plan_id = json_extract(NEW.payload, '$.plan_id');
DELETE FROM plan_links WHERE plan_id = json_extract(NEW.payload, '$.plan_id');
DELETE FROM open_plans WHERE plan_id = json_extract(NEW.payload, '$.plan_id');
END""",
    "ComboDefined": """CREATE TRIGGER project_ComboDefined INSTEAD OF INSERT ON projection_feed WHEN NEW.type = 'ComboDefined'
BEGIN
-- A concept combination: its row in combos.
INSERT INTO combos (combo_id, concept_ids, level, k, seq)
SELECT json_extract(NEW.payload, '$.combo_id'), json_extract(NEW.payload, '$.concept_ids'), json_extract(NEW.payload, '$.level'), json_extract(NEW.payload, '$.k'), NEW.seq
WHERE json_extract(NEW.payload, '$.concept_ids') IS NOT NULL
ON CONFLICT DO NOTHING;
END""",
}

# The projection triggers this revision replaces or adds (the others are 0011's, unchanged).
CHANGED_TYPES = ("GenerationPlanned", "GenerationLinked", "PlanStarted", "CohortPlanned")
NEW_TABLES = ("open_plans", "plan_totals", "plan_links")

# ------------------------------------------------------------------------------------------------
# The counter triggers and views as this revision makes them (generated once from 0011's text by
# adding the visibility conditions; frozen), then as they were before it (for the downgrade).
COUNTER_TRIGGERS = {
    "read_gen_inserted": """CREATE TRIGGER read_gen_inserted AFTER INSERT ON gen_state BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed'), 1 * (NEW.status = 'failed'), 1 * (NEW.status = 'running'), 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_gen_inserted_scored": """CREATE TRIGGER read_gen_inserted_scored AFTER INSERT ON gen_state WHEN NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL BEGIN INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_gen_deleted": """CREATE TRIGGER read_gen_deleted AFTER DELETE ON gen_state BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed'), -1 * (OLD.status = 'failed'), -1 * (OLD.status = 'running'), -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced;INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_gen_totals_changed": """CREATE TRIGGER read_gen_totals_changed AFTER UPDATE OF status, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd ON gen_state WHEN (OLD.status IS NOT NEW.status OR OLD.calls IS NOT NEW.calls OR OLD.failed_calls IS NOT NEW.failed_calls OR OLD.prompt_tokens IS NOT NEW.prompt_tokens OR OLD.completion_tokens IS NOT NEW.completion_tokens OR OLD.cost_usd IS NOT NEW.cost_usd) AND OLD.model_id IS NEW.model_id AND OLD.stage IS NEW.stage BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 0, (NEW.status = 'completed') - (OLD.status = 'completed'), (NEW.status = 'failed') - (OLD.status = 'failed'), (NEW.status = 'running') - (OLD.status = 'running'), COALESCE(NEW.calls, 0) - COALESCE(OLD.calls, 0), COALESCE(NEW.failed_calls, 0) - COALESCE(OLD.failed_calls, 0), COALESCE(NEW.prompt_tokens, 0) - COALESCE(OLD.prompt_tokens, 0), COALESCE(NEW.completion_tokens, 0) - COALESCE(OLD.completion_tokens, 0), COALESCE(NEW.cost_usd, 0) - COALESCE(OLD.cost_usd, 0), (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL) - (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_gen_key_changed": """CREATE TRIGGER read_gen_key_changed AFTER UPDATE OF model_id, stage ON gen_state WHEN NOT (OLD.model_id IS NEW.model_id AND OLD.stage IS NEW.stage) BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed'), -1 * (OLD.status = 'failed'), -1 * (OLD.status = 'running'), -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced;INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed'), 1 * (NEW.status = 'failed'), 1 * (NEW.status = 'running'), 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_gen_score_changed": """CREATE TRIGGER read_gen_score_changed AFTER UPDATE OF score, parent_gen_id, stage, scale_min, scale_max ON gen_state WHEN (OLD.score IS NOT NEW.score OR OLD.parent_gen_id IS NOT NEW.parent_gen_id OR OLD.stage IS NOT NEW.stage OR OLD.scale_min IS NOT NEW.scale_min OR OLD.scale_max IS NOT NEW.scale_max) AND (OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL OR NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL) BEGIN INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n;INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_member_inserted": """CREATE TRIGGER read_member_inserted AFTER INSERT ON cohort_members BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT NEW.cohort_id, g.stage, COALESCE(g.model_id, ''), 1, 1 * (g.status = 'completed'), 1 * (g.status = 'failed'), 1 * (g.status = 'running'), 1 * COALESCE(g.calls, 0), 1 * COALESCE(g.failed_calls, 0), 1 * COALESCE(g.prompt_tokens, 0), 1 * COALESCE(g.completion_tokens, 0), 1 * COALESCE(g.cost_usd, 0), 1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL) FROM gen_state g WHERE g.gen_id = NEW.gen_id AND (NEW.plan_id IS NULL OR NEW.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_member_inserted_evaluation": """CREATE TRIGGER read_member_inserted_evaluation AFTER INSERT ON cohort_members WHEN NEW.stage = 'evaluation' BEGIN INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT NEW.cohort_id, g.parent_gen_id, 1, 1 * g.score, 1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS INTEGER), 0) FROM gen_state g WHERE g.gen_id = NEW.gen_id AND (NEW.plan_id IS NULL OR NEW.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT NEW.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), 1 FROM gen_state g WHERE g.gen_id = NEW.gen_id AND (NEW.plan_id IS NULL OR NEW.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_member_deleted": """CREATE TRIGGER read_member_deleted AFTER DELETE ON cohort_members BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT OLD.cohort_id, g.stage, COALESCE(g.model_id, ''), -1, -1 * (g.status = 'completed'), -1 * (g.status = 'failed'), -1 * (g.status = 'running'), -1 * COALESCE(g.calls, 0), -1 * COALESCE(g.failed_calls, 0), -1 * COALESCE(g.prompt_tokens, 0), -1 * COALESCE(g.completion_tokens, 0), -1 * COALESCE(g.cost_usd, 0), -1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL) FROM gen_state g WHERE g.gen_id = OLD.gen_id AND (OLD.plan_id IS NULL OR OLD.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced;INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT OLD.cohort_id, g.parent_gen_id, -1, -1 * g.score, -1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS INTEGER), 0) FROM gen_state g WHERE g.gen_id = OLD.gen_id AND (OLD.plan_id IS NULL OR OLD.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT OLD.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), -1 FROM gen_state g WHERE g.gen_id = OLD.gen_id AND (OLD.plan_id IS NULL OR OLD.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
}
VIEWS = {
    "generations": """-- One row per generation (current attempt), with its prompt, raw response and parsed text.
SELECT g.gen_id, g.stage, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed'))))) AS blocked, g.attempt,
       g.template_id, g.template_hash, g.model_id, g.resolved_model, g.generator, g.parser,
       g.parent_gen_id, g.combo_id, g.replicate, g.origin_cohort_id, g.imported, g.score,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.prompt_hash) AS prompt,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.parsed_hash) AS parsed,
       g.prompt_tokens, g.completion_tokens, g.cost_usd, g.latency_s, g.calls, g.failed_calls,
       g.finish_reason, g.error, g.prompt_hash, g.raw_hash, g.parsed_hash, g.planned_seq,
       g.updated_seq
FROM gen_state g
WHERE (g.plan_id IS NULL OR g.plan_id NOT IN (SELECT plan_id FROM open_plans))""",
    "cohort_membership": """-- One row per (cohort, generation): which generations a cohort uses, planned or linked (reused).
SELECT m.cohort_id, m.stage, m.gen_id, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed'))))) AS blocked, g.template_id, g.model_id,
       g.replicate, CASE WHEN g.origin_cohort_id = m.cohort_id THEN 'planned' ELSE 'linked' END
       AS joined_as, m.seq
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
WHERE (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans))""",
    "scores": """-- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not), with the score's scale and the score on 0-1.
SELECT v.gen_id AS evaluation_gen_id, v.parent_gen_id AS essay_gen_id, v.template_id AS rubric,
       v.model_id AS evaluator, v.replicate, v.attempt, v.status, v.score,
       CASE WHEN v.score IS NOT NULL THEN 'parsed'
            WHEN v.status = 'failed' AND v.parse_failed = 1 THEN 'parse_failed'
            WHEN v.status = 'completed' THEN 'no_score'
            WHEN v.status = 'failed' THEN 'failed'
            ELSE 'pending' END AS parse_status,
       -- a parse failure's error is 'ParseFailed: ' and the parser's reason: the reason alone
       CASE WHEN v.parse_failed = 1 THEN substr(v.error, 14) END AS parse_error,
       v.error, v.imported, v.scale_min, v.scale_max,
       CASE WHEN v.score IS NOT NULL AND v.scale_max > v.scale_min
            THEN (v.score - v.scale_min) * 1.0 / (v.scale_max - v.scale_min) END AS score_norm
FROM gen_state v
WHERE v.stage = 'evaluation' AND (v.plan_id IS NULL OR v.plan_id NOT IN (SELECT plan_id FROM open_plans))""",
    "evaluator_agreement": """-- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric), on the rubric's scale (score_norm if its scores mix scales).
SELECT rubric, evaluator, evaluations, scored, essays,
       CASE WHEN mixed THEN ROUND(s1n / scored, 6) ELSE ROUND(s1 / scored, 4) END AS mean,
       CASE WHEN scored > 1 AND mixed THEN ROUND(sqrt(MAX(0.0, (s2n - s1n * s1n / scored) / (scored - 1))), 6)
            WHEN scored > 1 THEN ROUND(sqrt(MAX(0.0, (s2 - s1 * s1 / scored) / (scored - 1))), 4) END AS stdev,
       parse_failure_rate,
       CASE WHEN mixed THEN '0-1 (score_norm)' ELSE low END AS scale
FROM (SELECT v.template_id AS rubric, v.model_id AS evaluator, COUNT(*) AS evaluations,
             COUNT(v.score) AS scored, COUNT(DISTINCT v.parent_gen_id) AS essays, SUM(v.score) AS s1,
             SUM(v.score * v.score) AS s2, SUM(v.norm) AS s1n, SUM(v.norm * v.norm) AS s2n,
             MIN(v.scale_min) || '-' || MIN(v.scale_max) AS low, (MIN(v.scale_min) != MAX(v.scale_min) OR MIN(v.scale_max) != MAX(v.scale_max)) AS mixed,
             ROUND(1.0 * SUM(v.status = 'failed' AND v.parse_failed = 1) / COUNT(*), 4)
             AS parse_failure_rate
      FROM (SELECT template_id, model_id, parent_gen_id, score, status, parse_failed, CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END AS norm,
                   CASE WHEN g.score IS NOT NULL THEN scale_min END AS scale_min,
                   CASE WHEN g.score IS NOT NULL THEN scale_max END AS scale_max
            FROM gen_state g WHERE g.stage = 'evaluation' AND (g.plan_id IS NULL OR g.plan_id NOT IN (SELECT plan_id FROM open_plans))) v
      GROUP BY v.template_id, v.model_id)""",
    "evaluation_design": """-- One row per cohort and scored evaluation: its score and the design of its whole lineage.
SELECT m.cohort_id, s.evaluation_gen_id, s.essay_gen_id, d.gen_id AS draft_gen_id,
       COALESCE(d.gen_id, s.essay_gen_id) AS unit_gen_id,
       COALESCE(e.combo_id, d.combo_id) AS combo,
       d.template_id AS draft_template, d.model_id AS draft_llm, d.replicate AS draft_replicate,
       COALESCE(d.generator = 'copy', 0) AS draft_copy,
       e.template_id AS essay_template, e.model_id AS essay_llm, e.replicate AS essay_replicate,
       COALESCE(e.generator = 'copy', 0) AS essay_copy,
       s.rubric AS evaluation_template, s.evaluator AS evaluation_llm,
       s.replicate AS evaluation_replicate,
       CASE WHEN k.scales > 1 THEN s.score_norm ELSE s.score END AS score,
       s.scale_min, s.scale_max
FROM cohort_members m
JOIN scores s ON s.evaluation_gen_id = m.gen_id
JOIN gen_state e ON e.gen_id = s.essay_gen_id
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id AND d.stage != 'essay'
-- A cohort whose rubrics use different scales is compared on score_norm (0-1), as daydream compare does.
JOIN (SELECT m2.cohort_id, COUNT(DISTINCT s2.scale_min || '-' || s2.scale_max) AS scales
      FROM cohort_members m2 JOIN scores s2 ON s2.evaluation_gen_id = m2.gen_id
      WHERE m2.stage = 'evaluation' AND (m2.plan_id IS NULL OR m2.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND s2.score IS NOT NULL GROUP BY m2.cohort_id) k
  ON k.cohort_id = m.cohort_id
WHERE m.stage = 'evaluation' AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND s.score IS NOT NULL""",
}
PREVIOUS_COUNTER_TRIGGERS = {
    "read_gen_inserted": """CREATE TRIGGER read_gen_inserted AFTER INSERT ON gen_state BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed'), 1 * (NEW.status = 'failed'), 1 * (NEW.status = 'running'), 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_gen_inserted_scored": """CREATE TRIGGER read_gen_inserted_scored AFTER INSERT ON gen_state WHEN NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL BEGIN INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_gen_deleted": """CREATE TRIGGER read_gen_deleted AFTER DELETE ON gen_state BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed'), -1 * (OLD.status = 'failed'), -1 * (OLD.status = 'running'), -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = OLD.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced;INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_gen_totals_changed": """CREATE TRIGGER read_gen_totals_changed AFTER UPDATE OF status, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd ON gen_state WHEN (OLD.status IS NOT NEW.status OR OLD.calls IS NOT NEW.calls OR OLD.failed_calls IS NOT NEW.failed_calls OR OLD.prompt_tokens IS NOT NEW.prompt_tokens OR OLD.completion_tokens IS NOT NEW.completion_tokens OR OLD.cost_usd IS NOT NEW.cost_usd) AND OLD.model_id IS NEW.model_id AND OLD.stage IS NEW.stage BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 0, (NEW.status = 'completed') - (OLD.status = 'completed'), (NEW.status = 'failed') - (OLD.status = 'failed'), (NEW.status = 'running') - (OLD.status = 'running'), COALESCE(NEW.calls, 0) - COALESCE(OLD.calls, 0), COALESCE(NEW.failed_calls, 0) - COALESCE(OLD.failed_calls, 0), COALESCE(NEW.prompt_tokens, 0) - COALESCE(OLD.prompt_tokens, 0), COALESCE(NEW.completion_tokens, 0) - COALESCE(OLD.completion_tokens, 0), COALESCE(NEW.cost_usd, 0) - COALESCE(OLD.cost_usd, 0), (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL) - (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_gen_key_changed": """CREATE TRIGGER read_gen_key_changed AFTER UPDATE OF model_id, stage ON gen_state WHEN NOT (OLD.model_id IS NEW.model_id AND OLD.stage IS NEW.stage) BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed'), -1 * (OLD.status = 'failed'), -1 * (OLD.status = 'running'), -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = OLD.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced;INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed'), 1 * (NEW.status = 'failed'), 1 * (NEW.status = 'running'), 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL) FROM cohort_members m WHERE m.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_gen_score_changed": """CREATE TRIGGER read_gen_score_changed AFTER UPDATE OF score, parent_gen_id, stage, scale_min, scale_max ON gen_state WHEN (OLD.score IS NOT NEW.score OR OLD.parent_gen_id IS NOT NEW.parent_gen_id OR OLD.stage IS NOT NEW.stage OR OLD.scale_min IS NOT NEW.scale_min OR OLD.scale_max IS NOT NEW.scale_max) AND (OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL OR NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL) BEGIN INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n;INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS INTEGER), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_member_inserted": """CREATE TRIGGER read_member_inserted AFTER INSERT ON cohort_members BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT NEW.cohort_id, g.stage, COALESCE(g.model_id, ''), 1, 1 * (g.status = 'completed'), 1 * (g.status = 'failed'), 1 * (g.status = 'running'), 1 * COALESCE(g.calls, 0), 1 * COALESCE(g.failed_calls, 0), 1 * COALESCE(g.prompt_tokens, 0), 1 * COALESCE(g.completion_tokens, 0), 1 * COALESCE(g.cost_usd, 0), 1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL) FROM gen_state g WHERE g.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced; END""",
    "read_member_inserted_evaluation": """CREATE TRIGGER read_member_inserted_evaluation AFTER INSERT ON cohort_members WHEN NEW.stage = 'evaluation' BEGIN INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT NEW.cohort_id, g.parent_gen_id, 1, 1 * g.score, 1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS INTEGER), 0) FROM gen_state g WHERE g.gen_id = NEW.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT NEW.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), 1 FROM gen_state g WHERE g.gen_id = NEW.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
    "read_member_deleted": """CREATE TRIGGER read_member_deleted AFTER DELETE ON cohort_members BEGIN INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT OLD.cohort_id, g.stage, COALESCE(g.model_id, ''), -1, -1 * (g.status = 'completed'), -1 * (g.status = 'failed'), -1 * (g.status = 'running'), -1 * COALESCE(g.calls, 0), -1 * COALESCE(g.failed_calls, 0), -1 * COALESCE(g.prompt_tokens, 0), -1 * COALESCE(g.completion_tokens, 0), -1 * COALESCE(g.cost_usd, 0), -1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL) FROM gen_state g WHERE g.gen_id = OLD.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = generations + excluded.generations, completed = completed + excluded.completed, failed = failed + excluded.failed, running = running + excluded.running, calls = calls + excluded.calls, failed_calls = failed_calls + excluded.failed_calls, prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens, cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced;INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT OLD.cohort_id, g.parent_gen_id, -1, -1 * g.score, -1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS INTEGER), 0) FROM gen_state g WHERE g.gen_id = OLD.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = n + excluded.n, total = total + excluded.total, total_norm_e9 = total_norm_e9 + excluded.total_norm_e9;INSERT INTO cohort_scales (cohort_id, scale, n) SELECT OLD.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), -1 FROM gen_state g WHERE g.gen_id = OLD.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = n + excluded.n; END""",
}
PREVIOUS_VIEWS = {
    "generations": """-- One row per generation (current attempt), with its prompt, raw response and parsed text.
SELECT g.gen_id, g.stage, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed'))))) AS blocked, g.attempt,
       g.template_id, g.template_hash, g.model_id, g.resolved_model, g.generator, g.parser,
       g.parent_gen_id, g.combo_id, g.replicate, g.origin_cohort_id, g.imported, g.score,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.prompt_hash) AS prompt,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.parsed_hash) AS parsed,
       g.prompt_tokens, g.completion_tokens, g.cost_usd, g.latency_s, g.calls, g.failed_calls,
       g.finish_reason, g.error, g.prompt_hash, g.raw_hash, g.parsed_hash, g.planned_seq,
       g.updated_seq
FROM gen_state g""",
    "cohort_membership": """-- One row per (cohort, generation): which generations a cohort uses, planned or linked (reused).
SELECT m.cohort_id, m.stage, m.gen_id, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed'))))) AS blocked, g.template_id, g.model_id,
       g.replicate, CASE WHEN g.origin_cohort_id = m.cohort_id THEN 'planned' ELSE 'linked' END
       AS joined_as, m.seq
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id""",
    "scores": """-- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not), with the score's scale and the score on 0-1.
SELECT v.gen_id AS evaluation_gen_id, v.parent_gen_id AS essay_gen_id, v.template_id AS rubric,
       v.model_id AS evaluator, v.replicate, v.attempt, v.status, v.score,
       CASE WHEN v.score IS NOT NULL THEN 'parsed'
            WHEN v.status = 'failed' AND v.parse_failed = 1 THEN 'parse_failed'
            WHEN v.status = 'completed' THEN 'no_score'
            WHEN v.status = 'failed' THEN 'failed'
            ELSE 'pending' END AS parse_status,
       -- a parse failure's error is 'ParseFailed: ' and the parser's reason: the reason alone
       CASE WHEN v.parse_failed = 1 THEN substr(v.error, 14) END AS parse_error,
       v.error, v.imported, v.scale_min, v.scale_max,
       CASE WHEN v.score IS NOT NULL AND v.scale_max > v.scale_min
            THEN (v.score - v.scale_min) * 1.0 / (v.scale_max - v.scale_min) END AS score_norm
FROM gen_state v
WHERE v.stage = 'evaluation'""",
    "evaluator_agreement": """-- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric), on the rubric's scale (score_norm if its scores mix scales).
SELECT rubric, evaluator, evaluations, scored, essays,
       CASE WHEN mixed THEN ROUND(s1n / scored, 6) ELSE ROUND(s1 / scored, 4) END AS mean,
       CASE WHEN scored > 1 AND mixed THEN ROUND(sqrt(MAX(0.0, (s2n - s1n * s1n / scored) / (scored - 1))), 6)
            WHEN scored > 1 THEN ROUND(sqrt(MAX(0.0, (s2 - s1 * s1 / scored) / (scored - 1))), 4) END AS stdev,
       parse_failure_rate,
       CASE WHEN mixed THEN '0-1 (score_norm)' ELSE low END AS scale
FROM (SELECT v.template_id AS rubric, v.model_id AS evaluator, COUNT(*) AS evaluations,
             COUNT(v.score) AS scored, COUNT(DISTINCT v.parent_gen_id) AS essays, SUM(v.score) AS s1,
             SUM(v.score * v.score) AS s2, SUM(v.norm) AS s1n, SUM(v.norm * v.norm) AS s2n,
             MIN(v.scale_min) || '-' || MIN(v.scale_max) AS low, (MIN(v.scale_min) != MAX(v.scale_min) OR MIN(v.scale_max) != MAX(v.scale_max)) AS mixed,
             ROUND(1.0 * SUM(v.status = 'failed' AND v.parse_failed = 1) / COUNT(*), 4)
             AS parse_failure_rate
      FROM (SELECT template_id, model_id, parent_gen_id, score, status, parse_failed, CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END AS norm,
                   CASE WHEN g.score IS NOT NULL THEN scale_min END AS scale_min,
                   CASE WHEN g.score IS NOT NULL THEN scale_max END AS scale_max
            FROM gen_state g WHERE g.stage = 'evaluation') v
      GROUP BY v.template_id, v.model_id)""",
    "evaluation_design": """-- One row per cohort and scored evaluation: its score and the design of its whole lineage.
SELECT m.cohort_id, s.evaluation_gen_id, s.essay_gen_id, d.gen_id AS draft_gen_id,
       COALESCE(d.gen_id, s.essay_gen_id) AS unit_gen_id,
       COALESCE(e.combo_id, d.combo_id) AS combo,
       d.template_id AS draft_template, d.model_id AS draft_llm, d.replicate AS draft_replicate,
       COALESCE(d.generator = 'copy', 0) AS draft_copy,
       e.template_id AS essay_template, e.model_id AS essay_llm, e.replicate AS essay_replicate,
       COALESCE(e.generator = 'copy', 0) AS essay_copy,
       s.rubric AS evaluation_template, s.evaluator AS evaluation_llm,
       s.replicate AS evaluation_replicate,
       CASE WHEN k.scales > 1 THEN s.score_norm ELSE s.score END AS score,
       s.scale_min, s.scale_max
FROM cohort_members m
JOIN scores s ON s.evaluation_gen_id = m.gen_id
JOIN gen_state e ON e.gen_id = s.essay_gen_id
LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id AND d.stage != 'essay'
-- A cohort whose rubrics use different scales is compared on score_norm (0-1), as daydream compare does.
JOIN (SELECT m2.cohort_id, COUNT(DISTINCT s2.scale_min || '-' || s2.scale_max) AS scales
      FROM cohort_members m2 JOIN scores s2 ON s2.evaluation_gen_id = m2.gen_id
      WHERE m2.stage = 'evaluation' AND s2.score IS NOT NULL GROUP BY m2.cohort_id) k
  ON k.cohort_id = m.cohort_id
WHERE m.stage = 'evaluation' AND s.score IS NOT NULL""",
}


def _migration(name: str) -> ModuleType:
    """An earlier revision's module (for downgrade), read from its file: those files never change."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"daydream_migration_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _replace(triggers: dict[str, str], views: dict[str, str]) -> None:
    for name, sql in triggers.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(sql)
    for name, sql in views.items():
        op.execute(f"DROP VIEW IF EXISTS {name}")
        op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        script = Path(__file__).with_name("0013_postgresql.sql").read_text(encoding="utf-8")
        # Straight to the driver, without parameters: the script's % and : are SQL, not placeholders.
        op.get_bind().connection.driver_connection.cursor().execute(script)
        return
    op.add_column("gen_state", sa.Column(
        "plan_id", sa.Text, nullable=True,
        comment="the open plan (PlanStarted) that staged this generation: hidden from every reader until "
                "its CohortPlanned; NULL once visible"))
    op.add_column("cohort_members", sa.Column(
        "plan_id", sa.Text, nullable=True,
        comment="the open plan that staged this membership: not counted, not shown until the plan completes"))
    op.execute("CREATE INDEX ix_gen_state_plan ON gen_state (plan_id) WHERE plan_id IS NOT NULL")
    op.execute("CREATE INDEX ix_cohort_members_plan ON cohort_members (plan_id) WHERE plan_id IS NOT NULL")
    op.create_table("open_plans",
                    sa.Column("plan_id", sa.Text, primary_key=True, comment="a plan started and not completed"),
                    sa.Column("cohort_id", sa.Text, nullable=False))
    op.create_table("plan_totals",
                    sa.Column("plan_id", sa.Text, primary_key=True), sa.Column("cohort_id", sa.Text, primary_key=True),
                    sa.Column("stage", sa.Text, primary_key=True), sa.Column("model_key", sa.Text, primary_key=True),
                    sa.Column("generations", sa.Integer, nullable=False, server_default="0",
                              comment="new generations the open plan staged: counted when it completes"))
    op.create_table("plan_links",
                    sa.Column("plan_id", sa.Text, primary_key=True), sa.Column("cohort_id", sa.Text, primary_key=True),
                    sa.Column("gen_id", sa.Text, primary_key=True,
                              comment="a generation the open plan links: counted when it completes"))
    for event_type in CHANGED_TYPES:
        op.execute(f"DROP TRIGGER IF EXISTS project_{event_type}")
        op.execute(PROJECTION_TRIGGERS[event_type])
    op.execute("DELETE FROM projected_types")
    op.bulk_insert(sa.table("projected_types", sa.column("type", sa.Text)),
                   [{"type": t} for t in PROJECTED_TYPES])
    _replace(COUNTER_TRIGGERS, VIEWS)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        raise NotImplementedError("0013_plan_chunks cannot be downgraded on PostgreSQL (nor can 0011)")
    _replace(PREVIOUS_COUNTER_TRIGGERS, PREVIOUS_VIEWS)
    before = _migration("0011_projections_per_type")
    for event_type in CHANGED_TYPES:
        op.execute(f"DROP TRIGGER IF EXISTS project_{event_type}")
        if event_type in before.PROJECTION_TRIGGERS:
            op.execute(before.PROJECTION_TRIGGERS[event_type])
    op.execute("DELETE FROM projected_types")
    op.bulk_insert(sa.table("projected_types", sa.column("type", sa.Text)),
                   [{"type": t} for t in before.PROJECTED_TYPES])
    for table in NEW_TABLES:
        op.drop_table(table)
    op.execute("DROP INDEX IF EXISTS ix_cohort_members_plan")
    op.execute("DROP INDEX IF EXISTS ix_gen_state_plan")
    op.drop_column("cohort_members", "plan_id")
    op.drop_column("gen_state", "plan_id")
