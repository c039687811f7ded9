-- PostgreSQL: what revisions 0002 to 0011 create on SQLite, as of 0011 (issue 17), frozen.
-- Generated once from the SQLite schema of 0011 and daydream/ledger/projections.py as they were, then
-- kept as it is: a migration never runs code that may change. Differences from SQLite, on purpose:
-- BIGINT / DOUBLE PRECISION columns, text keys COLLATE "C" (byte order, as SQLite's), STORED
-- generated columns, one plpgsql function applying every projected event type (read through jsonb
-- with the field's type; objects and lists through json, keeping their bytes), counters whose
-- booleans are cast to int, null-safe comparisons spelled IS [NOT] DISTINCT FROM.

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
