-- PostgreSQL: what revisions 0002 to 0011 create on SQLite, as of 0011 (issue 17), frozen.
-- Generated once from the SQLite schema of 0011 and daydream/ledger/projections.py as they were, then
-- kept as it is: a migration never runs code that may change. Differences from SQLite, on purpose:
-- BIGINT / DOUBLE PRECISION columns, text keys COLLATE "C" (byte order, as SQLite's), STORED
-- generated columns, one plpgsql function applying every projected event type (read through jsonb
-- with the field's type; objects and lists through json, keeping their bytes), counters whose
-- booleans are cast to int, null-safe comparisons spelled IS [NOT] DISTINCT FROM. Views: payload
-- fields read through jsonb with their type, ROUND(real, n) by a function below, comparisons and
-- flags that SQLite shows as 0/1 cast to int, subqueries named, bare columns added to GROUP BY,
-- and in comparisons the replicate levels in columns a and b as text (one type per column).

CREATE TABLE gen_state (
    gen_id TEXT COLLATE "C" PRIMARY KEY, stage TEXT COLLATE "C" NOT NULL, parent_gen_id TEXT COLLATE "C", combo_id TEXT COLLATE "C", template_id TEXT COLLATE "C",
    template_hash TEXT COLLATE "C", generator TEXT COLLATE "C", parser TEXT COLLATE "C", model_id TEXT COLLATE "C", replicate BIGINT, origin_cohort_id TEXT COLLATE "C",
    planned_seq BIGINT, imported BIGINT, attempt BIGINT, status TEXT COLLATE "C", prompt_hash TEXT COLLATE "C", raw_hash TEXT COLLATE "C",
    parsed_hash TEXT COLLATE "C", score DOUBLE PRECISION, finish_reason TEXT COLLATE "C", prompt_tokens BIGINT, completion_tokens BIGINT,
    cost_usd DOUBLE PRECISION, latency_s DOUBLE PRECISION, resolved_model TEXT COLLATE "C", calls BIGINT, failed_calls BIGINT,
    error TEXT, lease_until TEXT COLLATE "C", worker TEXT, updated_seq BIGINT, scale_min DOUBLE PRECISION,
    scale_max DOUBLE PRECISION, parse_failed BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE cohort_members (
    cohort_id TEXT COLLATE "C" NOT NULL, gen_id TEXT COLLATE "C" NOT NULL, stage TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL,
    PRIMARY KEY (cohort_id, gen_id)
);
CREATE TABLE combos (
    combo_id TEXT COLLATE "C" PRIMARY KEY, concept_ids TEXT NOT NULL, level TEXT COLLATE "C", k BIGINT, seq BIGINT
);
CREATE TABLE cohort_totals (
    cohort_id TEXT COLLATE "C" NOT NULL, stage TEXT COLLATE "C" NOT NULL, model_key TEXT COLLATE "C" NOT NULL,
    generations BIGINT NOT NULL DEFAULT 0, completed BIGINT NOT NULL DEFAULT 0, failed BIGINT NOT NULL DEFAULT 0,
    running BIGINT NOT NULL DEFAULT 0, calls BIGINT NOT NULL DEFAULT 0, failed_calls BIGINT NOT NULL DEFAULT 0,
    prompt_tokens BIGINT NOT NULL DEFAULT 0, completion_tokens BIGINT NOT NULL DEFAULT 0,
    cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0, unpriced BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (cohort_id, stage, model_key)
);
-- SQLite's mean and mean_norm are VIRTUAL generated columns; PostgreSQL 15 has STORED ones only.
CREATE TABLE cohort_essay_scores (
    cohort_id TEXT COLLATE "C" NOT NULL, essay_gen_id TEXT COLLATE "C" NOT NULL, n BIGINT NOT NULL DEFAULT 0,
    total DOUBLE PRECISION NOT NULL DEFAULT 0,
    mean DOUBLE PRECISION GENERATED ALWAYS AS
        (CASE WHEN n > 0 THEN round((total / n)::numeric, 4)::double precision END) STORED,
    total_norm_e9 BIGINT NOT NULL DEFAULT 0, combo_id TEXT COLLATE "C", draft_gen_id TEXT COLLATE "C", draft_template TEXT COLLATE "C", draft_model TEXT COLLATE "C",
    essay_template TEXT COLLATE "C", essay_model TEXT COLLATE "C",
    mean_norm DOUBLE PRECISION GENERATED ALWAYS AS
        (CASE WHEN n > 0 THEN round((total_norm_e9 / 1e9 / n)::numeric, 6)::double precision END) STORED,
    PRIMARY KEY (cohort_id, essay_gen_id)
);
CREATE TABLE projected_types (type TEXT COLLATE "C" PRIMARY KEY);
CREATE TABLE workers (
    worker_id TEXT COLLATE "C" PRIMARY KEY, host TEXT COLLATE "C" NOT NULL, pid BIGINT, identity TEXT NOT NULL, started_at TEXT COLLATE "C" NOT NULL,
    heartbeat_at TEXT COLLATE "C" NOT NULL, grace_s DOUBLE PRECISION NOT NULL, stopped_at TEXT COLLATE "C"
);
CREATE TABLE cohort_scales (
    cohort_id TEXT COLLATE "C" NOT NULL, scale TEXT COLLATE "C" NOT NULL, n BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (cohort_id, scale)
);
CREATE INDEX ix_cohort_essay_scores_essay ON cohort_essay_scores (essay_gen_id);
CREATE INDEX ix_cohort_essay_scores_rank ON cohort_essay_scores (cohort_id, mean DESC);
CREATE INDEX ix_cohort_essay_scores_rank_norm ON cohort_essay_scores (cohort_id, mean_norm DESC);
CREATE INDEX ix_cohort_members_cohort_stage ON cohort_members (cohort_id, stage);
CREATE INDEX ix_cohort_members_gen ON cohort_members (gen_id);
CREATE INDEX ix_gen_state_combo ON gen_state (combo_id);
CREATE INDEX ix_gen_state_parent ON gen_state (parent_gen_id);
CREATE INDEX ix_gen_state_signature ON gen_state (stage, parent_gen_id, combo_id, template_id, model_id, replicate);
CREATE INDEX ix_gen_state_stage_status ON gen_state (stage, status);
CREATE INDEX ix_gen_state_status ON gen_state (status);
CREATE INDEX ix_gen_state_status_stage_seq ON gen_state (status, stage, planned_seq);
CREATE FUNCTION daydream_project() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    p jsonb := NEW.payload::jsonb;
    pj json := NEW.payload::json;
BEGIN
    IF NEW.type = 'GenerationPlanned' THEN
        INSERT INTO gen_state (gen_id, stage, parent_gen_id, combo_id, template_id, template_hash,
            generator, parser, model_id, replicate, origin_cohort_id, planned_seq, imported, attempt, status,
            calls, failed_calls, updated_seq)
        SELECT (p ->> 'gen_id'), (p ->> 'stage'), (p ->> 'parent_gen_id'), (p ->> 'combo_id'), (p ->> 'template_id'),
            (p ->> 'template_hash'), (p ->> 'generator'), (p ->> 'parser'), (p ->> 'model_id'), (p ->> 'replicate')::bigint,
            (p ->> 'cohort_id'), NEW.seq, 0, 1, 'planned', 0, 0, NEW.seq
        WHERE (p ->> 'stage') IS NOT NULL
        ON CONFLICT DO NOTHING;
        INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)
        SELECT (p ->> 'cohort_id'), (p ->> 'gen_id'), (p ->> 'stage'), NEW.seq
        WHERE (p ->> 'stage') IS NOT NULL
        ON CONFLICT DO NOTHING;
    ELSIF NEW.type = 'GenerationLinked' THEN
        INSERT INTO cohort_members (cohort_id, gen_id, stage, seq)
        SELECT (p ->> 'cohort_id'), (p ->> 'gen_id'), (p ->> 'stage'), NEW.seq
        WHERE (p ->> 'stage') IS NOT NULL
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
    ELSIF NEW.type = 'ComboDefined' THEN
        INSERT INTO combos (combo_id, concept_ids, level, k, seq)
        SELECT (p ->> 'combo_id'), NULLIF((pj -> 'concept_ids')::text, 'null'), (p ->> 'level'), (p ->> 'k')::bigint, NEW.seq
        WHERE NULLIF((pj -> 'concept_ids')::text, 'null') IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE VIEW projection_feed AS
SELECT seq, stream, version, type, payload, recorded_at, causation_seq FROM events WHERE false;
CREATE TRIGGER project_events INSTEAD OF INSERT ON projection_feed FOR EACH ROW EXECUTE FUNCTION daydream_project();
INSERT INTO projected_types (type) VALUES ('GenerationPlanned');
INSERT INTO projected_types (type) VALUES ('GenerationLinked');
INSERT INTO projected_types (type) VALUES ('GenerationImported');
INSERT INTO projected_types (type) VALUES ('PromptRendered');
INSERT INTO projected_types (type) VALUES ('LLMCallStarted');
INSERT INTO projected_types (type) VALUES ('LLMCallCompleted');
INSERT INTO projected_types (type) VALUES ('LLMCallFailed');
INSERT INTO projected_types (type) VALUES ('ClaimReleased');
INSERT INTO projected_types (type) VALUES ('ResponseParsed');
INSERT INTO projected_types (type) VALUES ('ScoreRecorded');
INSERT INTO projected_types (type) VALUES ('ParseFailed');
INSERT INTO projected_types (type) VALUES ('GenerationFailed');
INSERT INTO projected_types (type) VALUES ('GenerationRetried');
INSERT INTO projected_types (type) VALUES ('ComboDefined');
CREATE FUNCTION read_essay_scores_lineage() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE cohort_essay_scores SET combo_id = e.combo_id, draft_gen_id = d.gen_id, draft_template = d.template_id, draft_model = d.model_id, essay_template = e.template_id, essay_model = e.model_id FROM gen_state e LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id WHERE e.gen_id = cohort_essay_scores.essay_gen_id AND (cohort_essay_scores.cohort_id, cohort_essay_scores.essay_gen_id) = (NEW.cohort_id, NEW.essay_gen_id);
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_essay_scores_lineage AFTER INSERT ON cohort_essay_scores FOR EACH ROW EXECUTE FUNCTION read_essay_scores_lineage();

CREATE FUNCTION read_gen_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed')::int, -1 * (OLD.status = 'failed')::int, -1 * (OLD.status = 'running')::int, -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = OLD.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_gen_deleted AFTER DELETE ON gen_state FOR EACH ROW EXECUTE FUNCTION read_gen_deleted();

CREATE FUNCTION read_gen_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed')::int, 1 * (NEW.status = 'failed')::int, 1 * (NEW.status = 'running')::int, 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_gen_inserted AFTER INSERT ON gen_state FOR EACH ROW EXECUTE FUNCTION read_gen_inserted();

CREATE FUNCTION read_gen_inserted_essay() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE cohort_essay_scores SET combo_id = e.combo_id, draft_gen_id = d.gen_id, draft_template = d.template_id, draft_model = d.model_id, essay_template = e.template_id, essay_model = e.model_id FROM gen_state e LEFT JOIN gen_state d ON d.gen_id = e.parent_gen_id WHERE e.gen_id = cohort_essay_scores.essay_gen_id AND cohort_essay_scores.essay_gen_id = NEW.gen_id;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_gen_inserted_essay AFTER INSERT ON gen_state FOR EACH ROW WHEN (NEW.stage = 'essay') EXECUTE FUNCTION read_gen_inserted_essay();

CREATE FUNCTION read_gen_inserted_scored() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_gen_inserted_scored AFTER INSERT ON gen_state FOR EACH ROW WHEN (NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL) EXECUTE FUNCTION read_gen_inserted_scored();

CREATE FUNCTION read_gen_key_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, OLD.stage, COALESCE(OLD.model_id, ''), -1, -1 * (OLD.status = 'completed')::int, -1 * (OLD.status = 'failed')::int, -1 * (OLD.status = 'running')::int, -1 * COALESCE(OLD.calls, 0), -1 * COALESCE(OLD.failed_calls, 0), -1 * COALESCE(OLD.prompt_tokens, 0), -1 * COALESCE(OLD.completion_tokens, 0), -1 * COALESCE(OLD.cost_usd, 0), -1 * (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = OLD.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 1, 1 * (NEW.status = 'completed')::int, 1 * (NEW.status = 'failed')::int, 1 * (NEW.status = 'running')::int, 1 * COALESCE(NEW.calls, 0), 1 * COALESCE(NEW.failed_calls, 0), 1 * COALESCE(NEW.prompt_tokens, 0), 1 * COALESCE(NEW.completion_tokens, 0), 1 * COALESCE(NEW.cost_usd, 0), 1 * (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_gen_key_changed AFTER UPDATE OF model_id, stage ON gen_state FOR EACH ROW WHEN (NOT (OLD.model_id IS NOT DISTINCT FROM NEW.model_id AND OLD.stage IS NOT DISTINCT FROM NEW.stage)) EXECUTE FUNCTION read_gen_key_changed();

CREATE FUNCTION read_gen_score_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, OLD.parent_gen_id, -1, -1 * OLD.score, -1 * COALESCE(CAST(ROUND((CASE WHEN OLD.scale_max > OLD.scale_min THEN (OLD.score - OLD.scale_min) * 1.0 / (OLD.scale_max - OLD.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(OLD.scale_min || '-' || OLD.scale_max, ''), -1 FROM cohort_members m WHERE m.gen_id = OLD.gen_id AND OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL AND OLD.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT m.cohort_id, NEW.parent_gen_id, 1, 1 * NEW.score, 1 * COALESCE(CAST(ROUND((CASE WHEN NEW.scale_max > NEW.scale_min THEN (NEW.score - NEW.scale_min) * 1.0 / (NEW.scale_max - NEW.scale_min) END) * 1e9) AS BIGINT), 0) FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT m.cohort_id, COALESCE(NEW.scale_min || '-' || NEW.scale_max, ''), 1 FROM cohort_members m WHERE m.gen_id = NEW.gen_id AND NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL AND NEW.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_gen_score_changed AFTER UPDATE OF score, parent_gen_id, stage, scale_min, scale_max ON gen_state FOR EACH ROW WHEN ((OLD.score IS DISTINCT FROM NEW.score OR OLD.parent_gen_id IS DISTINCT FROM NEW.parent_gen_id OR OLD.stage IS DISTINCT FROM NEW.stage OR OLD.scale_min IS DISTINCT FROM NEW.scale_min OR OLD.scale_max IS DISTINCT FROM NEW.scale_max) AND (OLD.stage = 'evaluation' AND OLD.score IS NOT NULL AND OLD.scale_min IS NOT NULL OR NEW.stage = 'evaluation' AND NEW.score IS NOT NULL AND NEW.scale_min IS NOT NULL)) EXECUTE FUNCTION read_gen_score_changed();

CREATE FUNCTION read_gen_totals_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT m.cohort_id, NEW.stage, COALESCE(NEW.model_id, ''), 0, (NEW.status = 'completed')::int - (OLD.status = 'completed')::int, (NEW.status = 'failed')::int - (OLD.status = 'failed')::int, (NEW.status = 'running')::int - (OLD.status = 'running')::int, COALESCE(NEW.calls, 0) - COALESCE(OLD.calls, 0), COALESCE(NEW.failed_calls, 0) - COALESCE(OLD.failed_calls, 0), COALESCE(NEW.prompt_tokens, 0) - COALESCE(OLD.prompt_tokens, 0), COALESCE(NEW.completion_tokens, 0) - COALESCE(OLD.completion_tokens, 0), COALESCE(NEW.cost_usd, 0) - COALESCE(OLD.cost_usd, 0), (COALESCE(NEW.calls, 0) > COALESCE(NEW.failed_calls, 0) AND NEW.cost_usd IS NULL)::int - (COALESCE(OLD.calls, 0) > COALESCE(OLD.failed_calls, 0) AND OLD.cost_usd IS NULL)::int FROM cohort_members m WHERE m.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_gen_totals_changed AFTER UPDATE OF status, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd ON gen_state FOR EACH ROW WHEN ((OLD.status IS DISTINCT FROM NEW.status OR OLD.calls IS DISTINCT FROM NEW.calls OR OLD.failed_calls IS DISTINCT FROM NEW.failed_calls OR OLD.prompt_tokens IS DISTINCT FROM NEW.prompt_tokens OR OLD.completion_tokens IS DISTINCT FROM NEW.completion_tokens OR OLD.cost_usd IS DISTINCT FROM NEW.cost_usd) AND OLD.model_id IS NOT DISTINCT FROM NEW.model_id AND OLD.stage IS NOT DISTINCT FROM NEW.stage) EXECUTE FUNCTION read_gen_totals_changed();

CREATE FUNCTION read_member_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT OLD.cohort_id, g.stage, COALESCE(g.model_id, ''), -1, -1 * (g.status = 'completed')::int, -1 * (g.status = 'failed')::int, -1 * (g.status = 'running')::int, -1 * COALESCE(g.calls, 0), -1 * COALESCE(g.failed_calls, 0), -1 * COALESCE(g.prompt_tokens, 0), -1 * COALESCE(g.completion_tokens, 0), -1 * COALESCE(g.cost_usd, 0), -1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL)::int FROM gen_state g WHERE g.gen_id = OLD.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT OLD.cohort_id, g.parent_gen_id, -1, -1 * g.score, -1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS BIGINT), 0) FROM gen_state g WHERE g.gen_id = OLD.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT OLD.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), -1 FROM gen_state g WHERE g.gen_id = OLD.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_member_deleted AFTER DELETE ON cohort_members FOR EACH ROW EXECUTE FUNCTION read_member_deleted();

CREATE FUNCTION read_member_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_totals (cohort_id, stage, model_key, generations, completed, failed, running, calls, failed_calls, prompt_tokens, completion_tokens, cost_usd, unpriced) SELECT NEW.cohort_id, g.stage, COALESCE(g.model_id, ''), 1, 1 * (g.status = 'completed')::int, 1 * (g.status = 'failed')::int, 1 * (g.status = 'running')::int, 1 * COALESCE(g.calls, 0), 1 * COALESCE(g.failed_calls, 0), 1 * COALESCE(g.prompt_tokens, 0), 1 * COALESCE(g.completion_tokens, 0), 1 * COALESCE(g.cost_usd, 0), 1 * (COALESCE(g.calls, 0) > COALESCE(g.failed_calls, 0) AND g.cost_usd IS NULL)::int FROM gen_state g WHERE g.gen_id = NEW.gen_id ON CONFLICT (cohort_id, stage, model_key) DO UPDATE SET generations = cohort_totals.generations + excluded.generations, completed = cohort_totals.completed + excluded.completed, failed = cohort_totals.failed + excluded.failed, running = cohort_totals.running + excluded.running, calls = cohort_totals.calls + excluded.calls, failed_calls = cohort_totals.failed_calls + excluded.failed_calls, prompt_tokens = cohort_totals.prompt_tokens + excluded.prompt_tokens, completion_tokens = cohort_totals.completion_tokens + excluded.completion_tokens, cost_usd = cohort_totals.cost_usd + excluded.cost_usd, unpriced = cohort_totals.unpriced + excluded.unpriced;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_member_inserted AFTER INSERT ON cohort_members FOR EACH ROW EXECUTE FUNCTION read_member_inserted();

CREATE FUNCTION read_member_inserted_evaluation() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO cohort_essay_scores (cohort_id, essay_gen_id, n, total, total_norm_e9) SELECT NEW.cohort_id, g.parent_gen_id, 1, 1 * g.score, 1 * COALESCE(CAST(ROUND((CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END) * 1e9) AS BIGINT), 0) FROM gen_state g WHERE g.gen_id = NEW.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, essay_gen_id) DO UPDATE SET n = cohort_essay_scores.n + excluded.n, total = cohort_essay_scores.total + excluded.total, total_norm_e9 = cohort_essay_scores.total_norm_e9 + excluded.total_norm_e9;
    INSERT INTO cohort_scales (cohort_id, scale, n) SELECT NEW.cohort_id, COALESCE(g.scale_min || '-' || g.scale_max, ''), 1 FROM gen_state g WHERE g.gen_id = NEW.gen_id AND g.stage = 'evaluation' AND g.score IS NOT NULL AND g.scale_min IS NOT NULL AND g.parent_gen_id IS NOT NULL ON CONFLICT (cohort_id, scale) DO UPDATE SET n = cohort_scales.n + excluded.n;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER read_member_inserted_evaluation AFTER INSERT ON cohort_members FOR EACH ROW WHEN (NEW.stage = 'evaluation') EXECUTE FUNCTION read_member_inserted_evaluation();

-- SQLite's date and JSON functions as the runtime SQL calls them (claims, leases, heartbeats), so that
-- the same statements run on both: julianday(text | 'now'), strftime(format, text | 'now') for the
-- %Y %m %d %H %M %S %f codes, json_extract(text, '$.a.b') giving text. 'now' is the server's clock,
-- the one clock every host's leases and heartbeats are compared with.
CREATE FUNCTION julianday(at text) RETURNS double precision LANGUAGE sql VOLATILE AS $fn$
    SELECT (EXTRACT(EPOCH FROM CASE WHEN at = 'now' THEN clock_timestamp() ELSE at::timestamptz END) / 86400.0
            + 2440587.5)::double precision $fn$;
CREATE FUNCTION strftime(fmt text, at text) RETURNS text LANGUAGE sql VOLATILE AS $fn$
    SELECT to_char((CASE WHEN at = 'now' THEN clock_timestamp() ELSE at::timestamptz END) AT TIME ZONE 'UTC',
        replace(replace(replace(replace(replace(replace(replace(replace(replace(
            fmt, 'T', '"T"'), 'Z', '"Z"'), '%Y', 'YYYY'), '%m', 'MM'), '%d', 'DD'), '%H', 'HH24'),
            '%M', 'MI'), '%f', 'SS.MS'), '%S', 'SS')) $fn$;
CREATE FUNCTION json_extract(doc text, path text) RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT doc::jsonb #>> string_to_array(substr(path, 3), '.') $fn$;
-- SQLite's ROUND(real, digits): PostgreSQL rounds NUMERIC only; the views call this one.
CREATE FUNCTION round(double precision, integer) RETURNS double precision LANGUAGE sql IMMUTABLE STRICT
    PARALLEL SAFE AS $fn$ SELECT round($1::numeric, $2)::double precision $fn$;
CREATE VIEW generations AS -- One row per generation (current attempt), with its prompt, raw response and parsed text.
SELECT g.gen_id, g.stage, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed')))))::int AS blocked, g.attempt,
       g.template_id, g.template_hash, g.model_id, g.resolved_model, g.generator, g.parser,
       g.parent_gen_id, g.combo_id, g.replicate, g.origin_cohort_id, g.imported, g.score,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.prompt_hash) AS prompt,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.parsed_hash) AS parsed,
       g.prompt_tokens, g.completion_tokens, g.cost_usd, g.latency_s, g.calls, g.failed_calls,
       g.finish_reason, g.error, g.prompt_hash, g.raw_hash, g.parsed_hash, g.planned_seq,
       g.updated_seq
FROM gen_state g;

CREATE VIEW cohort_membership AS -- One row per (cohort, generation): which generations a cohort uses, planned or linked (reused).
SELECT m.cohort_id, m.stage, m.gen_id, g.status, (g.status = 'planned' AND g.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state p WHERE p.gen_id = g.parent_gen_id AND (p.status = 'failed' OR (p.status = 'planned' AND p.parent_gen_id IS NOT NULL AND EXISTS (SELECT 1 FROM gen_state q WHERE q.gen_id = p.parent_gen_id AND q.status = 'failed')))))::int AS blocked, g.template_id, g.model_id,
       g.replicate, CASE WHEN g.origin_cohort_id = m.cohort_id THEN 'planned' ELSE 'linked' END
       AS joined_as, m.seq
FROM cohort_members m JOIN gen_state g ON g.gen_id = m.gen_id;

CREATE VIEW cohort_progress AS -- One row per cohort and stage: how many generations are planned, done, failed, still pending.
SELECT p.*, COALESCE(l.lost_calls, 0) AS lost_calls, l.estimated_cost_usd
FROM (
/* the view before 0007 */
-- One row per cohort and stage: how many generations are planned, done, failed, still pending.
SELECT t.cohort_id, t.stage, t.planned, t.completed, t.failed, t.running,
       t.planned - t.completed - t.failed AS pending,
       -- blocked: planned children of failed generations, plus their planned children in turn.
       -- CROSS JOIN fixes the loop order: start from the few failed generations (status index),
       -- then follow ix_gen_state_parent; left to itself SQLite scans every planned generation.
       (SELECT COUNT(*) FROM gen_state p CROSS JOIN gen_state g CROSS JOIN cohort_members m
        WHERE p.status = 'failed' AND g.parent_gen_id = p.gen_id AND g.status = 'planned'
          AND g.stage = t.stage AND m.cohort_id = t.cohort_id AND m.gen_id = g.gen_id)
       + (SELECT COUNT(*) FROM gen_state f CROSS JOIN gen_state c CROSS JOIN gen_state g
            CROSS JOIN cohort_members m
          WHERE f.status = 'failed' AND c.parent_gen_id = f.gen_id AND c.status = 'planned'
            AND g.parent_gen_id = c.gen_id AND g.status = 'planned' AND g.stage = t.stage
            AND m.cohort_id = t.cohort_id AND m.gen_id = g.gen_id) AS blocked,
       t.calls, t.tokens, t.cost_usd
FROM (SELECT cohort_id, stage, SUM(generations) AS planned, SUM(completed) AS completed,
             SUM(failed) AS failed, SUM(running) AS running, SUM(calls) AS calls,
             SUM(prompt_tokens) + SUM(completion_tokens) AS tokens,
             ROUND(SUM(cost_usd), 6) AS cost_usd
      FROM cohort_totals GROUP BY cohort_id, stage HAVING SUM(generations) > 0) t
/* end of the view before 0007 */
) p LEFT JOIN (
  SELECT m.cohort_id, x.stage, SUM(x.lost_calls) AS lost_calls,
         ROUND(SUM(x.estimated_cost_usd), 6) AS estimated_cost_usd
  FROM (SELECT substr(x.stream, 5) AS gen_id, g.stage, g.model_id, COUNT(*) AS lost_calls,
              ROUND(SUM((x.payload::jsonb ->> 'estimated_cost_usd')::double precision), 6) AS estimated_cost_usd
       FROM events x JOIN gen_state g ON g.gen_id = substr(x.stream, 5)
       WHERE x.type = 'LLMCallLost' GROUP BY x.stream, g.stage, g.model_id) x JOIN cohort_members m ON m.gen_id = x.gen_id
  GROUP BY m.cohort_id, x.stage
) l ON l.cohort_id = p.cohort_id AND l.stage = p.stage;

CREATE VIEW spend AS -- One row per cohort, stage and model: calls, tokens and money (a reused generation counts in each).
SELECT s.*, COALESCE(l.lost_calls, 0) AS lost_calls, l.estimated_cost_usd
FROM (
/* the view before 0007 */
-- One row per cohort, stage and model: calls, tokens and money (a reused generation counts in each).
SELECT cohort_id, stage, NULLIF(model_key, '') AS model_id, generations, calls, failed_calls,
       prompt_tokens, completion_tokens, ROUND(cost_usd, 6) AS cost_usd
FROM cohort_totals
WHERE generations > 0
/* end of the view before 0007 */
) s LEFT JOIN (
  SELECT m.cohort_id, x.stage, x.model_id, SUM(x.lost_calls) AS lost_calls,
         ROUND(SUM(x.estimated_cost_usd), 6) AS estimated_cost_usd
  FROM (SELECT substr(x.stream, 5) AS gen_id, g.stage, g.model_id, COUNT(*) AS lost_calls,
              ROUND(SUM((x.payload::jsonb ->> 'estimated_cost_usd')::double precision), 6) AS estimated_cost_usd
       FROM events x JOIN gen_state g ON g.gen_id = substr(x.stream, 5)
       WHERE x.type = 'LLMCallLost' GROUP BY x.stream, g.stage, g.model_id) x JOIN cohort_members m ON m.gen_id = x.gen_id
  GROUP BY m.cohort_id, x.stage, x.model_id
) l ON l.cohort_id = s.cohort_id AND l.stage = s.stage AND l.model_id IS NOT DISTINCT FROM s.model_id;

CREATE VIEW llm_calls AS -- One row per LLM request: completed, failed, unknown (sent; the worker stopped before its answer was recorded) or open (sent, no answer yet).
SELECT o.seq, o.stream, g.gen_id AS gen_id, g.stage,
       (o.payload::jsonb ->> 'attempt')::bigint AS attempt, (o.payload::jsonb ->> 'call')::bigint AS call,
       (o.payload::jsonb ->> 'try')::bigint AS try,
       (o.payload::jsonb ->> 'model_id') AS model_id,
       (o.payload::jsonb ->> 'provider') AS provider,
       (o.payload::jsonb ->> 'resolved_model') AS resolved_model,
       CASE o.type WHEN 'LLMCallCompleted' THEN 'completed' WHEN 'LLMCallLost' THEN 'unknown'
                   ELSE 'failed' END AS outcome,
       (o.payload::jsonb ->> 'latency_s')::double precision AS latency_s,
       (o.payload::jsonb ->> 'prompt_tokens')::bigint AS prompt_tokens,
       (o.payload::jsonb ->> 'completion_tokens')::bigint AS completion_tokens,
       (o.payload::jsonb ->> 'cost_usd')::double precision AS cost_usd,
       (o.payload::jsonb ->> 'finish_reason') AS finish_reason,
       (o.payload::jsonb ->> 'error_class') AS error_class,
       (o.payload::jsonb ->> 'message') AS message,
       o.recorded_at,
       (o.payload::jsonb ->> 'estimated_cost_usd')::double precision AS estimated_cost_usd
FROM events o LEFT JOIN gen_state g ON g.gen_id = substr(o.stream, 5) AND o.stream = 'gen:' || g.gen_id
WHERE o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'LLMCallLost')
  AND (o.type <> 'LLMCallLost' OR NOT EXISTS (
    -- its answer reached the (superseded) worker after all: that row stands for the request
    SELECT 1 FROM events r WHERE r.stream = o.stream AND r.version > o.version
      AND (r.payload::jsonb ->> 'answers_lost_seq')::bigint = o.seq))
UNION ALL
SELECT s.seq, s.stream, g.gen_id, g.stage, (s.payload::jsonb ->> 'attempt')::bigint,
       (s.payload::jsonb ->> 'call')::bigint, (s.payload::jsonb ->> 'try')::bigint,
       (s.payload::jsonb ->> 'model_id'), (s.payload::jsonb ->> 'provider'), NULL, 'open',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.recorded_at, NULL
FROM events s LEFT JOIN gen_state g ON g.gen_id = substr(s.stream, 5) AND s.stream = 'gen:' || g.gen_id
WHERE s.type = 'LLMCallSent' AND NOT EXISTS (
    -- sent and not answered (yet); a release naming this try says it never left after all
    SELECT 1 FROM events o WHERE o.stream = s.stream AND o.version > s.version
      AND o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'LLMCallLost', 'ClaimReleased')
      AND (o.payload::jsonb ->> 'attempt')::bigint = (s.payload::jsonb ->> 'attempt')::bigint
      AND (o.payload::jsonb ->> 'call')::bigint = (s.payload::jsonb ->> 'call')::bigint
      AND (o.payload::jsonb ->> 'try')::bigint = (s.payload::jsonb ->> 'try')::bigint)
UNION ALL
SELECT s.seq, s.stream, g.gen_id, g.stage, (s.payload::jsonb ->> 'attempt')::bigint,
       (s.payload::jsonb ->> 'call')::bigint,
       CASE WHEN (CASE (s.payload::jsonb -> 'sends_marked') WHEN 'true' THEN 1 WHEN 'false' THEN 0 END) = 1 THEN 1 END,
       (s.payload::jsonb ->> 'model_id'), (s.payload::jsonb ->> 'provider'), NULL, 'open',
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.recorded_at, NULL
FROM events s LEFT JOIN gen_state g ON g.gen_id = substr(s.stream, 5) AND s.stream = 'gen:' || g.gen_id
WHERE s.type = 'LLMCallStarted' AND NOT EXISTS (
    -- a claim is committed right before its first request leaves (sends_marked): open until that
    -- try is answered or the claim is given back; a claim of a runner before 0007, or of a local
    -- provider: open until anything answers it
    SELECT 1 FROM events o WHERE o.stream = s.stream AND o.version > s.version
      AND o.type IN ('LLMCallCompleted', 'LLMCallFailed', 'LLMCallLost', 'ClaimReleased')
      AND (o.payload::jsonb ->> 'attempt')::bigint = (s.payload::jsonb ->> 'attempt')::bigint
      AND (o.payload::jsonb ->> 'call')::bigint = (s.payload::jsonb ->> 'call')::bigint
      AND ((CASE (s.payload::jsonb -> 'sends_marked') WHEN 'true' THEN 1 WHEN 'false' THEN 0 END) IS DISTINCT FROM 1 OR o.type = 'ClaimReleased'
           OR (o.payload::jsonb ->> 'try')::bigint = 1));

CREATE VIEW scores AS -- One row per evaluation generation: the essay it judged, rubric, evaluator and score (or why not), with the score's scale and the score on 0-1.
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
WHERE v.stage = 'evaluation';

CREATE VIEW failures AS -- One row per generation whose current attempt failed: what, why, and the event that says so.
SELECT g.gen_id, g.stage, g.template_id, g.model_id, g.attempt, g.origin_cohort_id,
       CASE WHEN g.parse_failed = 1 THEN 'parse' ELSE 'generation' END AS kind,
       g.error AS reason, g.calls, g.failed_calls,
       (SELECT COUNT(*) FROM gen_state c WHERE c.parent_gen_id = g.gen_id) AS blocked_children,
       (SELECT x.seq FROM events x WHERE x.stream = 'gen:' || g.gen_id
          AND x.type IN ('GenerationFailed', 'ParseFailed') ORDER BY x.version DESC LIMIT 1) AS failed_seq,
       (SELECT t.text FROM texts t WHERE t.sha256 = g.raw_hash) AS response,
       COALESCE((SELECT CASE WHEN x.type = 'ParseFailed' THEN 'ParseFailed'
                             ELSE COALESCE((x.payload::jsonb ->> 'error_class'), 'Unknown') END
                 FROM events x WHERE x.stream = 'gen:' || g.gen_id
          AND x.type IN ('GenerationFailed', 'ParseFailed') ORDER BY x.version DESC LIMIT 1), 'Imported') AS error_class
FROM gen_state g
WHERE g.status = 'failed';

CREATE VIEW evaluation_design AS -- One row per cohort and scored evaluation: its score and the design of its whole lineage.
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
      WHERE m2.stage = 'evaluation' AND s2.score IS NOT NULL GROUP BY m2.cohort_id) k
  ON k.cohort_id = m.cohort_id
WHERE m.stage = 'evaluation' AND s.score IS NOT NULL;

CREATE VIEW comparisons AS -- One row per matched pair of scored evaluations: a factor, two of its levels a < b, and
-- two evaluations of one cohort equal on every other design axis (as daydream compare pairs them).
WITH design AS MATERIALIZED (SELECT * FROM evaluation_design)
SELECT a.cohort_id, 'combo' AS factor, a.combo AS a, b.combo AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.combo > a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'draft_template' AS factor, a.draft_template AS a, b.draft_template AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.draft_template > a.draft_template
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'draft_llm' AS factor, a.draft_llm AS a, b.draft_llm AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.draft_llm > a.draft_llm
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'draft_replicate' AS factor, a.draft_replicate::text AS a, b.draft_replicate::text AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.draft_replicate > a.draft_replicate
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'essay_template' AS factor, a.essay_template AS a, b.essay_template AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.essay_template > a.essay_template
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'essay_llm' AS factor, a.essay_llm AS a, b.essay_llm AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.essay_llm > a.essay_llm
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'essay_replicate' AS factor, a.essay_replicate::text AS a, b.essay_replicate::text AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.essay_replicate > a.essay_replicate
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'evaluation_template' AS factor, a.evaluation_template AS a, b.evaluation_template AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.evaluation_template > a.evaluation_template
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'evaluation_llm' AS factor, a.evaluation_llm AS a, b.evaluation_llm AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.evaluation_llm > a.evaluation_llm
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_replicate IS NOT DISTINCT FROM a.evaluation_replicate
UNION ALL
SELECT a.cohort_id, 'evaluation_replicate' AS factor, a.evaluation_replicate::text AS a, b.evaluation_replicate::text AS b,
       CASE WHEN a.unit_gen_id = b.unit_gen_id THEN a.unit_gen_id
            ELSE a.unit_gen_id || '+' || b.unit_gen_id END AS unit,
       a.combo, a.draft_template, a.draft_llm, a.draft_replicate, a.essay_template, a.essay_llm, a.essay_replicate, a.evaluation_template, a.evaluation_llm, a.evaluation_replicate,
       a.evaluation_gen_id AS evaluation_a, b.evaluation_gen_id AS evaluation_b,
       a.score AS score_a, b.score AS score_b, a.score - b.score AS diff
FROM design a JOIN design b
  ON b.cohort_id = a.cohort_id AND b.evaluation_replicate > a.evaluation_replicate
  AND b.combo IS NOT DISTINCT FROM a.combo
  AND b.draft_template IS NOT DISTINCT FROM a.draft_template
  AND (b.draft_llm IS NOT DISTINCT FROM a.draft_llm OR a.draft_copy = 1 OR b.draft_copy = 1)
  AND b.draft_replicate IS NOT DISTINCT FROM a.draft_replicate
  AND b.essay_template IS NOT DISTINCT FROM a.essay_template
  AND (b.essay_llm IS NOT DISTINCT FROM a.essay_llm OR a.essay_copy = 1 OR b.essay_copy = 1)
  AND b.essay_replicate IS NOT DISTINCT FROM a.essay_replicate
  AND b.evaluation_template IS NOT DISTINCT FROM a.evaluation_template
  AND b.evaluation_llm IS NOT DISTINCT FROM a.evaluation_llm;

CREATE VIEW essay_rankings AS -- One row per cohort and scored essay: the mean of all its scores in that cohort, rank 1 = best. A cohort whose rubrics mix scales is ranked on score_norm (0-1).
WITH scale_sets AS (
    SELECT cohort_id, COUNT(*) AS scales, string_agg(scale, ', ' ORDER BY scale) AS shown
    FROM (SELECT cohort_id, scale FROM cohort_scales WHERE n > 0 AND scale != '' ORDER BY cohort_id, scale) AS _sub1
    GROUP BY cohort_id)
SELECT cohort_id, essay_gen_id, combo_id, draft_gen_id, draft_template, draft_model, essay_template,
       essay_model, mean, n, rank, scale
FROM (SELECT c.cohort_id, c.essay_gen_id, c.combo_id, c.draft_gen_id, c.draft_template, c.draft_model,
             c.essay_template, c.essay_model, c.mean AS mean, c.n,
             RANK() OVER (PARTITION BY c.cohort_id ORDER BY c.mean DESC) AS rank, COALESCE(k.shown, '') AS scale
      FROM cohort_essay_scores c LEFT JOIN scale_sets k ON k.cohort_id = c.cohort_id
      WHERE c.n > 0 AND COALESCE(k.scales, 0) <= 1
      UNION ALL
      SELECT c.cohort_id, c.essay_gen_id, c.combo_id, c.draft_gen_id, c.draft_template, c.draft_model,
             c.essay_template, c.essay_model, c.mean_norm AS mean, c.n,
             RANK() OVER (PARTITION BY c.cohort_id ORDER BY c.mean_norm DESC) AS rank, '0-1 (score_norm; rubrics on ' || k.shown || ')' AS scale
      FROM cohort_essay_scores c JOIN scale_sets k ON k.cohort_id = c.cohort_id
      WHERE c.n > 0 AND k.scales > 1) AS _sub2;

CREATE VIEW essay_scores AS -- One row per essay and rubric: statistics of its scores over evaluators and replicates, on the rubric's scale (score_norm if they mix scales).
SELECT essay_gen_id, rubric, n, evaluators,
       CASE WHEN mixed = 1 THEN ROUND(s1n / n, 6) ELSE ROUND(s1 / n, 4) END AS mean,
       CASE WHEN mixed = 1 THEN minn ELSE mn END AS min, CASE WHEN mixed = 1 THEN maxn ELSE mx END AS max,
       CASE WHEN n > 1 AND mixed = 1 THEN ROUND(sqrt(GREATEST(0.0, (s2n - s1n * s1n / n) / (n - 1))), 6)
            WHEN n > 1 THEN ROUND(sqrt(GREATEST(0.0, (s2 - s1 * s1 / n) / (n - 1))), 4) END AS stdev,
       CASE WHEN mixed = 1 THEN '0-1 (score_norm)' ELSE low END AS scale
FROM (SELECT v.parent_gen_id AS essay_gen_id, v.template_id AS rubric, COUNT(v.score) AS n,
             COUNT(DISTINCT v.model_id) AS evaluators, SUM(v.score) AS s1, SUM(v.score * v.score) AS s2,
             MIN(v.score) AS mn, MAX(v.score) AS mx, SUM(v.norm) AS s1n, SUM(v.norm * v.norm) AS s2n,
             MIN(v.norm) AS minn, MAX(v.norm) AS maxn, MIN(v.scale_min) || '-' || MIN(v.scale_max) AS low, (MIN(v.scale_min) != MAX(v.scale_min) OR MIN(v.scale_max) != MAX(v.scale_max))::int AS mixed
      FROM (SELECT parent_gen_id, template_id, model_id, score, scale_min, scale_max, CASE WHEN g.scale_max > g.scale_min THEN (g.score - g.scale_min) * 1.0 / (g.scale_max - g.scale_min) END AS norm
            FROM gen_state g WHERE g.stage = 'evaluation' AND g.score IS NOT NULL) v
      GROUP BY v.parent_gen_id, v.template_id) AS _sub1;

CREATE VIEW evaluator_agreement AS -- One row per rubric and evaluator model: how that evaluator scores (compare rows of one rubric), on the rubric's scale (score_norm if its scores mix scales).
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
            FROM gen_state g WHERE g.stage = 'evaluation') v
      GROUP BY v.template_id, v.model_id) AS _sub1;

