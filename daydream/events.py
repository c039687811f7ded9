"""Event types: the facts daydream records, and the payload each one carries.

Streams: ``catalog:<hash16>``, ``cohort:<cohort_id>``, ``combo:<combo_id>``, ``gen:<gen_id>``,
``report:<cohort_id>``. Every payload is self-contained JSON (large texts by sha256 into ``texts``).
The ``gen_state`` and ``cohort_members`` projection tables are maintained from these events by
SQLite triggers (migration 0002), so they are always consistent with the log.

Payload fields (``?`` = may be null):

CatalogImported     catalog_hash, source, concepts[{id, name, levels{level: text_hash}}],
                    templates[{stage, id, hash?, parser, generator, description, scale? [min, max]
                    (rubrics), text_hash? (when the scale makes hash differ from the text's sha256)}],
                    models[{…}]
ComboDefined        combo_id, concept_ids[], level, k
SpecCompiled        cohort_id, spec_hash, spec_path, catalog_hash, rows, spec_version
CohortPlanned       cohort_id, spec_hash, catalog_hash, spec_version, planned{stage: n}, linked{stage: n}
GenerationPlanned   gen_id, stage, parent_gen_id?, combo_id?, template_id, template_hash?, generator,
                    parser?, model_id?, replicate, cohort_id, catalog_hash?
GenerationLinked    gen_id, stage, cohort_id              (an existing generation joins a cohort)
GenerationImported  gen_id, stage, parent_gen_id?, combo_id?, template_id, model_id?, replicate,
                    generator, parser?, cohort_id?, status, prompt_hash?, raw_hash?, parsed_hash?, score?,
                    finish_reason?, prompt_tokens?, completion_tokens?, cost_usd?, latency_s?,
                    error?, source, metadata{…verbatim}, completes_import? (true: a second
                    GenerationImported for a generation first imported without its results),
                    scale? [min, max] (evaluations: the rubric's scale the score was read on)
PromptRendered      gen_id, attempt, prompt_hash, chars, template_id, template_hash
LLMCallStarted      gen_id, attempt, call, model_id, provider, provider_model, lease_until, worker{…}
LLMCallCompleted    gen_id, attempt, call, text_hash, chars, finish_reason?, prompt_tokens?,
                    completion_tokens?, cost_usd?, latency_s, model_id, provider, requested_model,
                    resolved_model?, request_id?, offline, superseded? (true: the claim had been
                    taken over by another worker; recorded because it was paid, not projected)
LLMCallFailed       gen_id, attempt, call, try, model_id, provider, error_class, message, status?,
                    retryable, latency_s?, released (true: the claim is given up and the
                    generation is pending again — interrupted, or the model's key was refused)
ClaimReleased       gen_id, attempt, call, reason   (a claim given back before its call was sent:
                    stopped, interrupted or out of budget; the generation is pending again)
ResponseParsed      gen_id, attempt, parser, parsed_hash, chars, copied_from?, reparsed?, template_hash?
ParseFailed         gen_id, attempt, parser, reason, preview, reparsed?, template_hash?
                    (reparsed: true — written by ``daydream reparse`` from the recorded answer, with
                    the template hash whose parser and scale it used; the earlier parse stays)
ScoreRecorded       gen_id, attempt, essay_gen_id, score, scale [min, max] (absent before scales:
                    0-9), rubric, evaluator, replicate, reparsed?
GenerationFailed    gen_id, attempt, reason, error_class, raw_hash?
GenerationRetried   gen_id, attempt (the new one), previous_attempt, reason
ReportPublished     cohort_id, out_dir, files{name: sha256}
"""

from __future__ import annotations

CATALOG_IMPORTED = "CatalogImported"
COMBO_DEFINED = "ComboDefined"
SPEC_COMPILED = "SpecCompiled"
COHORT_PLANNED = "CohortPlanned"
GENERATION_PLANNED = "GenerationPlanned"
GENERATION_LINKED = "GenerationLinked"
GENERATION_IMPORTED = "GenerationImported"
PROMPT_RENDERED = "PromptRendered"
LLM_CALL_STARTED = "LLMCallStarted"
LLM_CALL_COMPLETED = "LLMCallCompleted"
LLM_CALL_FAILED = "LLMCallFailed"
CLAIM_RELEASED = "ClaimReleased"
RESPONSE_PARSED = "ResponseParsed"
PARSE_FAILED = "ParseFailed"
SCORE_RECORDED = "ScoreRecorded"
GENERATION_FAILED = "GenerationFailed"
GENERATION_RETRIED = "GenerationRetried"
REPORT_PUBLISHED = "ReportPublished"

ALL_TYPES = (
    CATALOG_IMPORTED, COMBO_DEFINED, SPEC_COMPILED, COHORT_PLANNED, GENERATION_PLANNED,
    GENERATION_LINKED, GENERATION_IMPORTED, PROMPT_RENDERED, LLM_CALL_STARTED, LLM_CALL_COMPLETED,
    LLM_CALL_FAILED, CLAIM_RELEASED, RESPONSE_PARSED, PARSE_FAILED, SCORE_RECORDED, GENERATION_FAILED,
    GENERATION_RETRIED, REPORT_PUBLISHED,
)


def gen_stream(gen_id: str) -> str:
    """The stream of one generation."""
    return f"gen:{gen_id}"


def cohort_stream(cohort_id: str) -> str:
    """The stream of one cohort (its spec versions and plans)."""
    return f"cohort:{cohort_id}"


def combo_stream(combo_id: str) -> str:
    """The stream of one concept combination."""
    return f"combo:{combo_id}"


def catalog_stream(catalog_hash: str) -> str:
    """The stream of one catalog snapshot."""
    return f"catalog:{catalog_hash[:16]}"
