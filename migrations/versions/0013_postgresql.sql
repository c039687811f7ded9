-- PostgreSQL part of revision 0013_plan_chunks, frozen (see the revision's docstring).
ALTER TABLE gen_state ADD COLUMN plan_id TEXT COLLATE "C";
ALTER TABLE cohort_members ADD COLUMN plan_id TEXT COLLATE "C";
CREATE INDEX ix_gen_state_plan ON gen_state (plan_id) WHERE plan_id IS NOT NULL;
CREATE INDEX ix_cohort_members_plan ON cohort_members (plan_id) WHERE plan_id IS NOT NULL;
CREATE TABLE open_plans (plan_id TEXT COLLATE "C" PRIMARY KEY, cohort_id TEXT COLLATE "C" NOT NULL);
CREATE TABLE plan_totals (plan_id TEXT COLLATE "C" NOT NULL, cohort_id TEXT COLLATE "C" NOT NULL, stage TEXT COLLATE "C" NOT NULL, model_key TEXT COLLATE "C" NOT NULL, generations BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (plan_id, cohort_id, stage, model_key));
CREATE TABLE plan_links (plan_id TEXT COLLATE "C" NOT NULL, cohort_id TEXT COLLATE "C" NOT NULL, gen_id TEXT COLLATE "C" NOT NULL, PRIMARY KEY (plan_id, cohort_id, gen_id));
CREATE OR REPLACE FUNCTION read_gen_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed')::int, 1 * (NEW.status = 'failed')::int, 1 * (NEW.status = 'running')::int, 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_gen_inserted_scored() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_gen_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed')::int, -1 * (OLD.status = 'failed')::int, -1 * (OLD.status = 'running')::int, -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_gen_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 0, (NEW.status = 'completed')::int - (OLD.status = 'completed')::int, (NEW.status = 'failed')::int - (OLD.status = 'failed')::int, (NEW.status = 'running')::int - (OLD.status = 'running')::int, COALESCE(NEW.calls, 0) - COALESCE(OLD.calls, 0), COALESCE(NEW.failed_calls, 0) - COALESCE(OLD.failed_calls, 0), COALESCE(NEW.prompt_tokens, 0) - COALESCE(OLD.prompt_tokens, 0), COALESCE(NEW.completion_tokens, 0) - COALESCE(OLD.completion_tokens, 0), COALESCE(NEW.cost_usd, 0) - COALESCE(OLD.cost_usd, 0), (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL)::int - (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_gen_key_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed')::int, -1 * (OLD.status = 'failed')::int, -1 * (OLD.status = 'running')::int, -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed')::int, 1 * (NEW.status = 'failed')::int, 1 * (NEW.status = 'running')::int, 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_gen_score_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_member_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT NEW.cohort_id, g.stage, COALESCE(g.model_id, ''), 1, 1 * (g.status = 'completed')::int, 1 * (g.status = 'failed')::int, 1 * (g.status = 'running')::int, 1 * COALESCE(g.calls, 0), 1 * COALESCE(g.failed_calls, 0), 1 * COALESCE(g.prompt_tokens, 0), 1 * COALESCE(g.completion_tokens, 0), 1 * COALESCE(g.cost_usd, 0), 1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL)::int FROM gen_state g WHERE g.gen_id = NEW.gen_id AND (NEW.plan_id IS NULL OR NEW.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_member_inserted_evaluation() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT NEW.cohort_id, g.parent_gen_id, 1, 1 * g.score, 1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS BIGINT), 0) FROM gen_state g WHERE g.gen_id = NEW.gen_id AND (NEW.plan_id IS NULL OR NEW.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT NEW.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), 1 FROM gen_state g WHERE g.gen_id = NEW.gen_id AND (NEW.plan_id IS NULL OR NEW.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE FUNCTION read_member_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT OLD.cohort_id, g.stage, COALESCE(g.model_id, ''), -1, -1 * (g.status = 'completed')::int, -1 * (g.status = 'failed')::int, -1 * (g.status = 'running')::int, -1 * COALESCE(g.calls, 0), -1 * COALESCE(g.failed_calls, 0), -1 * COALESCE(g.prompt_tokens, 0), -1 * COALESCE(g.completion_tokens, 0), -1 * COALESCE(g.cost_usd, 0), -1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL)::int FROM gen_state g WHERE g.gen_id = OLD.gen_id AND (OLD.plan_id IS NULL OR OLD.plan_id NOT IN (SELECT plan_id FROM open_plans)) ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT OLD.cohort_id, g.parent_gen_id, -1, -1 * g.score, -1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS BIGINT), 0) FROM gen_state g WHERE g.gen_id = OLD.gen_id AND (OLD.plan_id IS NULL OR OLD.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT OLD.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), -1 FROM gen_state g WHERE g.gen_id = OLD.gen_id AND (OLD.plan_id IS NULL OR OLD.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE OR REPLACE VIEW generations AS -- One row per generation (current attempt), with its prompt, raw response and parsed text.
SELECT g.gen_id, g.stage, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed')))))::int AS blocked, g.attempt,
       g.template_id, g.template_hash, g.model_id, g.resolved_model, g.generator, g.parser,
       g.parent_gen_id, g.combo_id, g.replicate, g.origin_cohort_id, g.imported, g.score,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.prompt_hash) AS prompt,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.parsed_hash) AS parsed,
       g.prompt_tokens, g.completion_tokens, g.cost_usd, g.latency_s, g.calls, g.failed_calls,
       g.finish_reason, g.error, g.prompt_hash, g.raw_hash, g.parsed_hash, g.planned_seq,
       g.updated_seq
FROM gen_state g
WHERE (g.plan_id IS NULL OR g.plan_id NOT IN (SELECT plan_id FROM open_plans));
CREATE OR REPLACE VIEW cohort_membership AS -- One row per (cohort, generation): which generations a cohort uses, planned or linked (reused).
SELECT m.cohort_id, m.stage, m.gen_id, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed')))))::int AS blocked, g.template_id, g.model_id,
       g.replicate, CASE WHEN g.origin_cohort_id = m.cohort_id THEN 'planned' ELSE 'linked' END
       AS joined_as, m.seq
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id
WHERE (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans));
CREATE OR REPLACE VIEW scores AS -- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not), with the score's scale and the score on 0-1.
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
WHERE v.stage = 'evaluation' AND (v.plan_id IS NULL OR v.plan_id NOT IN (SELECT plan_id FROM open_plans));
CREATE OR REPLACE VIEW evaluator_agreement AS -- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric), on the rubric's scale (score_norm if its scores mix scales).
SELECT rubric, evaluator, evaluations, scored, essays,
       CASE WHEN mixed = 1 THEN ROUND(s1n / scored, 6) ELSE ROUND(s1 / scored, 4) END AS mean,
       CASE WHEN scored > 1 AND mixed = 1 THEN ROUND(sqrt(GREATEST(0.0, (s2n - s1n * s1n / scored) / (scored - 1))), 6)
            WHEN scored > 1 THEN ROUND(sqrt(GREATEST(0.0, (s2 - s1 * s1 / scored) / (scored - 1))), 4) END AS stdev,
       parse_failure_rate,
       CASE WHEN mixed = 1 THEN '0-1 (score_norm)' ELSE low END AS scale
FROM (SELECT v.template_id AS rubric, v.model_id AS evaluator, COUNT(*) AS evaluations,
             COUNT(v.score) AS scored, COUNT(DISTINCT v.parent_gen_id) AS essays, SUM(v.score) AS s1,
             SUM(v.score * v.score) AS s2, SUM(v.norm) AS s1n, SUM(v.norm * v.norm) AS s2n,
             MIN(v.scale_min) || '-' || MIN(v.scale_max) AS low, (MIN(v.scale_min) != MAX(v.scale_min) OR MIN(v.scale_max) != MAX(v.scale_max))::int AS mixed,
             ROUND(1.0 * SUM((v.status = 'failed' AND v.parse_failed = 1)::int) / COUNT(*), 4)
             AS parse_failure_rate
      FROM (SELECT template_id, model_id, parent_gen_id, score, status, parse_failed, CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END AS norm,
                   CASE WHEN g.score IS NOT NULL THEN scale_min END AS scale_min,
                   CASE WHEN g.score IS NOT NULL THEN scale_max END AS scale_max
            FROM gen_state g WHERE g.stage = 'evaluation' AND (g.plan_id IS NULL OR g.plan_id NOT IN (SELECT plan_id FROM open_plans))) v
      GROUP BY v.template_id, v.model_id) AS _sub1;
CREATE OR REPLACE VIEW evaluation_design AS -- One row per cohort and scored evaluation: its score and the design of its whole lineage.
SELECT m.cohort_id, s.evaluation_gen_id, s.essay_gen_id, d.gen_id AS draft_gen_id,
       COALESCE(d.gen_id, s.essay_gen_id) AS unit_gen_id,
       COALESCE(e.combo_id, d.combo_id) AS combo,
       d.template_id AS draft_template, d.model_id AS draft_llm, d.replicate AS draft_replicate,
       COALESCE((d.generator = 'copy')::int, 0) AS draft_copy,
       e.template_id AS essay_template, e.model_id AS essay_llm, e.replicate AS essay_replicate,
       COALESCE((e.generator = 'copy')::int, 0) AS essay_copy,
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
WHERE m.stage = 'evaluation' AND (m.plan_id IS NULL OR m.plan_id NOT IN (SELECT plan_id FROM open_plans)) AND s.score IS NOT NULL;
CREATE OR REPLACE FUNCTION daydream_project() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    p jsonb := NEW.payload::jsonb;
    pj json := NEW.payload::json;
BEGIN
    IF NEW.type = 'GenerationPlanned' THEN
        INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
            generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
            calls, failed_calls, updated_seq, plan_id)
        SELECT (p ->> 'gen_id'), (p ->> 'stage'), (p ->> 'parent_gen_id'), (p ->> 'combo_id'), (p ->> 'template_id'),
            (p ->> 'template_hash'), (p ->> 'generator'), (p ->> 'parser'), (p ->> 'model_id'), (p ->> 'replicate')::bigint,
            (p ->> 'cohort_id'), NEW.seq, 0, 1, 'planned', 0, 0, NEW.seq, (p ->> 'plan_id')
        WHERE (p ->> 'stage') IS NOT NULL
        ON CONFLICT DO NOTHING;
        INSERT INTO cohort_members (cohort_id, gen_id, stage, seq, plan_id)
        SELECT (p ->> 'cohort_id'), (p ->> 'gen_id'), (p ->> 'stage'), NEW.seq, (p ->> 'plan_id')
        WHERE (p ->> 'stage') IS NOT NULL
        ON CONFLICT (cohort_id, gen_id) DO UPDATE SET plan_id = excluded.plan_id, seq = excluded.seq
        WHERE excluded.plan_id IS NOT NULL AND cohort_members.plan_id IN (SELECT plan_id FROM open_plans);
        INSERT INTO plan_totals (plan_id, cohort_id, stage, model_key, generations)
        SELECT (p ->> 'plan_id'), (p ->> 'cohort_id'), (p ->> 'stage'), COALESCE((p ->> 'model_id'), ''), 1
        WHERE (p ->> 'plan_id') IN (SELECT plan_id FROM open_plans) AND EXISTS (SELECT 1 FROM gen_state WHERE gen_id = (p ->> 'gen_id') AND plan_id = (p ->> 'plan_id'))
        ON CONFLICT (plan_id, cohort_id, stage, model_key) DO UPDATE SET generations = plan_totals.generations + 1;
    ELSIF NEW.type = 'GenerationLinked' THEN
        UPDATE gen_state SET plan_id = NULL
        WHERE gen_id = (p ->> 'gen_id') AND plan_id IN (SELECT plan_id FROM open_plans)
            AND ((p ->> 'plan_id') IS NULL OR (p ->> 'plan_id') NOT IN (SELECT plan_id FROM open_plans));
        INSERT INTO cohort_members (cohort_id, gen_id, stage, seq, plan_id)
        SELECT (p ->> 'cohort_id'), (p ->> 'gen_id'), (p ->> 'stage'), NEW.seq, (p ->> 'plan_id')
        WHERE (p ->> 'stage') IS NOT NULL
        ON CONFLICT (cohort_id, gen_id) DO UPDATE SET plan_id = excluded.plan_id, seq = excluded.seq
        WHERE excluded.plan_id IS NOT NULL AND cohort_members.plan_id IN (SELECT plan_id FROM open_plans);
        INSERT INTO plan_links (plan_id, cohort_id, gen_id)
        SELECT (p ->> 'plan_id'), (p ->> 'cohort_id'), (p ->> 'gen_id')
        WHERE (p ->> 'plan_id') IN (SELECT plan_id FROM open_plans) AND (p ->> 'stage') IS NOT NULL
        ON CONFLICT DO NOTHING;
    ELSIF NEW.type = 'GenerationImported' THEN
        INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
            generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
            prompt_hash, raw_hash, parsed_hash, score, scale_min, scale_max, finish_reason, prompt_tokens,
            completion_tokens, cost_usd, latency_s, calls, failed_calls, error, updated_seq)
        SELECT (p ->> 'gen_id'), (p ->> 'stage'), (p ->> 'parent_gen_id'), (p ->> 'combo_id'), (p ->> 'template_id'),
            (p ->> 'template_hash'), (p ->> 'generator'), (p ->> 'parser'), (p ->> 'model_id'), (p ->> 'replicate')::bigint,
            (p ->> 'cohort_id'), NEW.seq, 1, 1, (p ->> 'status'), (p ->> 'prompt_hash'), (p ->> 'raw_hash'),
            (p ->> 'parsed_hash'), (p ->> 'score')::double precision,
            CASE WHEN (p ->> 'score')::double precision IS NOT NULL THEN COALESCE((p -> 'scale' ->> 0)::double precision, 0) END,
            CASE WHEN (p ->> 'score')::double precision IS NOT NULL THEN COALESCE((p -> 'scale' ->> 1)::double precision, 9) END,
            (p ->> 'finish_reason'), (p ->> 'prompt_tokens')::bigint, (p ->> 'completion_tokens')::bigint, (p ->> 'cost_usd')::double precision,
            (p ->> 'latency_s')::double precision, CASE WHEN (p ->> 'raw_hash') IS NULL THEN 0 ELSE 1 END, 0, (p ->> 'error'), NEW.seq
        WHERE (p ->> 'stage') IS NOT NULL
        ON CONFLICT DO NOTHING;
        INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)
        SELECT (p ->> 'cohort_id'), (p ->> 'gen_id'), (p ->> 'stage'), NEW.seq
        WHERE (p ->> 'stage') IS NOT NULL AND (p ->> 'cohort_id') IS NOT NULL
        ON CONFLICT DO NOTHING;
        UPDATE gen_state SET status = 'completed', prompt_hash = (p ->> 'prompt_hash'),
            raw_hash = (p ->> 'raw_hash'), parsed_hash = (p ->> 'parsed_hash'), score = (p ->> 'score')::double precision,
            scale_min = CASE WHEN (p ->> 'score')::double precision IS NOT NULL THEN COALESCE((p -> 'scale' ->> 0)::double precision, 0) END,
            scale_max = CASE WHEN (p ->> 'score')::double precision IS NOT NULL THEN COALESCE((p -> 'scale' ->> 1)::double precision, 9) END,
            finish_reason = (p ->> 'finish_reason'), prompt_tokens = (p ->> 'prompt_tokens')::bigint,
            completion_tokens = (p ->> 'completion_tokens')::bigint, cost_usd = (p ->> 'cost_usd')::double precision,
            latency_s = (p ->> 'latency_s')::double precision, parser = COALESCE((p ->> 'parser'), parser),
            calls = CASE WHEN (p ->> 'raw_hash') IS NULL THEN 0 ELSE 1 END, error = NULL, parse_failed = 0,
            updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND imported = 1 AND status = 'failed' AND planned_seq < NEW.seq
            AND (p ->> 'status') = 'completed';
    ELSIF NEW.type = 'PromptRendered' THEN
        UPDATE gen_state SET prompt_hash = (p ->> 'prompt_hash'),
            template_hash = COALESCE((p ->> 'template_hash'), template_hash), updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint;
    ELSIF NEW.type = 'LLMCallStarted' THEN
        UPDATE gen_state SET status = 'running', lease_until = (p ->> 'lease_until'),
            worker = NULLIF((pj -> 'worker')::text, 'null'), updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint;
    ELSIF NEW.type = 'LLMCallCompleted' THEN
        UPDATE gen_state SET raw_hash = (p ->> 'text_hash'), finish_reason = (p ->> 'finish_reason'),
            prompt_tokens = COALESCE(prompt_tokens, 0) + COALESCE((p ->> 'prompt_tokens')::bigint, 0),
            completion_tokens = COALESCE(completion_tokens, 0) + COALESCE((p ->> 'completion_tokens')::bigint, 0),
            cost_usd = CASE WHEN (p ->> 'cost_usd')::double precision IS NULL THEN cost_usd
                            ELSE COALESCE(cost_usd, 0) + (p ->> 'cost_usd')::double precision END,
            latency_s = (p ->> 'latency_s')::double precision, resolved_model = (p ->> 'resolved_model'), calls = calls + 1,
            updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint AND NOT COALESCE((p -> 'superseded') = 'true'::jsonb OR (p -> 'superseded') = '1'::jsonb, false);
    ELSIF NEW.type = 'LLMCallFailed' THEN
        UPDATE gen_state SET failed_calls = failed_calls + 1, calls = calls + 1,
            error = (p ->> 'error_class') || ': ' || (p ->> 'message'), parse_failed = 0,
            status = CASE WHEN COALESCE((p -> 'released') = 'true'::jsonb OR (p -> 'released') = '1'::jsonb, false) THEN 'planned' ELSE status END,
            lease_until = CASE WHEN COALESCE((p -> 'released') = 'true'::jsonb OR (p -> 'released') = '1'::jsonb, false) THEN NULL ELSE lease_until END,
            worker = CASE WHEN COALESCE((p -> 'released') = 'true'::jsonb OR (p -> 'released') = '1'::jsonb, false) THEN NULL ELSE worker END,
            updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint AND NOT COALESCE((p -> 'superseded') = 'true'::jsonb OR (p -> 'superseded') = '1'::jsonb, false);
    ELSIF NEW.type = 'ClaimReleased' THEN
        UPDATE gen_state SET status = 'planned', lease_until = NULL, worker = NULL,
            updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint AND status = 'running';
    ELSIF NEW.type = 'ResponseParsed' THEN
        UPDATE gen_state SET parsed_hash = (p ->> 'parsed_hash'), status = 'completed', error = NULL,
            parse_failed = 0, lease_until = NULL, updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint;
        UPDATE gen_state SET template_hash = COALESCE((p ->> 'template_hash'), template_hash),
            parser = COALESCE((p ->> 'parser'), parser)
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint AND COALESCE((p -> 'reparsed') = 'true'::jsonb OR (p -> 'reparsed') = '1'::jsonb, false);
    ELSIF NEW.type = 'ScoreRecorded' THEN
        UPDATE gen_state SET score = (p ->> 'score')::double precision, scale_min = COALESCE((p -> 'scale' ->> 0)::double precision, 0), scale_max = COALESCE((p -> 'scale' ->> 1)::double precision, 9),
            updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint;
    ELSIF NEW.type = 'ParseFailed' THEN
        UPDATE gen_state SET status = 'failed', error = 'ParseFailed: ' || (p ->> 'reason'),
            parse_failed = 1, score = NULL, scale_min = NULL, scale_max = NULL, lease_until = NULL,
            updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint;
        UPDATE gen_state SET template_hash = COALESCE((p ->> 'template_hash'), template_hash),
            parser = COALESCE((p ->> 'parser'), parser)
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint AND COALESCE((p -> 'reparsed') = 'true'::jsonb OR (p -> 'reparsed') = '1'::jsonb, false);
    ELSIF NEW.type = 'GenerationFailed' THEN
        UPDATE gen_state SET status = 'failed', error = (p ->> 'reason'), parse_failed = 0,
            raw_hash = COALESCE((p ->> 'raw_hash'), raw_hash), score = NULL, scale_min = NULL, scale_max = NULL,
            lease_until = NULL, updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id') AND attempt = (p ->> 'attempt')::bigint;
    ELSIF NEW.type = 'GenerationRetried' THEN
        UPDATE gen_state SET attempt = (p ->> 'attempt')::bigint, status = 'planned', prompt_hash = NULL,
            raw_hash = NULL, parsed_hash = NULL, score = NULL, scale_min = NULL, scale_max = NULL,
            finish_reason = NULL, error = NULL, parse_failed = 0, lease_until = NULL, worker = NULL,
            latency_s = NULL, updated_seq = NEW.seq
        WHERE gen_id = (p ->> 'gen_id');
    ELSIF NEW.type = 'PlanStarted' THEN
        INSERT INTO open_plans (plan_id, cohort_id)
        SELECT (p ->> 'plan_id'), (p ->> 'cohort_id')
        WHERE (p ->> 'plan_id') IS NOT NULL
        ON CONFLICT DO NOTHING;
    ELSIF NEW.type = 'CohortPlanned' THEN
        INSERT INTO cohort_totals (cohort_id, stage, model_key, generations)
        SELECT cohort_id, stage, model_key, generations FROM plan_totals WHERE plan_id = (p ->> 'plan_id') AND (p ->> 'plan_id') IN (SELECT plan_id FROM open_plans)
        ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations;
        INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running,
            calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced)
        SELECT l.cohort_id, g.stage, COALESCE(g.model_id, ''), COUNT(*), SUM((g.status = 'completed')::int),
            SUM((g.status = 'failed')::int), SUM((g.status = 'running')::int), SUM(COALESCE(g.calls, 0)),
            SUM(COALESCE(g.failed_calls, 0)), SUM(COALESCE(g.prompt_tokens, 0)), SUM(COALESCE(g.completion_tokens, 0)),
            SUM(COALESCE(g.cost_usd, 0)),
            SUM((COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL)::int)
        FROM plan_links l JOIN gen_state g ON g.gen_id = l.gen_id
        WHERE l.plan_id = (p ->> 'plan_id') AND (p ->> 'plan_id') IN (SELECT plan_id FROM open_plans)
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
                / (g.scale_max - g.scale_min) END) * 1e9) AS BIGINT), 0))
        FROM plan_links l JOIN gen_state g ON g.gen_id = l.gen_id
        WHERE l.plan_id = (p ->> 'plan_id') AND (p ->> 'plan_id') IN (SELECT plan_id FROM open_plans) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL
        GROUP BY l.cohort_id, g.parent_gen_id
        ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n,
            total = cohort_essay_scores.total + excluded.total,
            total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
        INSERT INTO cohort_scales (cohort_id, scale, n)
        SELECT l.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), COUNT(*)
        FROM plan_links l JOIN gen_state g ON g.gen_id = l.gen_id
        WHERE l.plan_id = (p ->> 'plan_id') AND (p ->> 'plan_id') IN (SELECT plan_id FROM open_plans) AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL
        GROUP BY l.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, '')
        ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
        UPDATE gen_state SET plan_id = NULL
        WHERE gen_id IN (SELECT gen_id FROM plan_links WHERE plan_id = (p ->> 'plan_id')) AND (p ->> 'plan_id') IN (SELECT plan_id FROM open_plans)
            AND plan_id IN (SELECT plan_id FROM open_plans WHERE plan_id != (p ->> 'plan_id'));
        DELETE FROM plan_totals WHERE plan_id = (p ->> 'plan_id');
        DELETE FROM plan_links WHERE plan_id = (p ->> 'plan_id');
        DELETE FROM open_plans WHERE plan_id = (p ->> 'plan_id');
    ELSIF NEW.type = 'ComboDefined' THEN
        INSERT INTO combos (combo_id, concept_ids, level, k, seq)
        SELECT (p ->> 'combo_id'), NULLIF((pj -> 'concept_ids')::text, 'null'), (p ->> 'level'), (p ->> 'k')::bigint, NEW.seq
        WHERE NULLIF((pj -> 'concept_ids')::text, 'null') IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$fn$;
INSERT INTO projected_types (type) VALUES ('PlanStarted');
INSERT INTO projected_types (type) VALUES ('CohortPlanned');
