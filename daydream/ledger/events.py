"""Event types: the facts daydream records, and the payload each one carries.

Streams: ``catalog:<hash16>``, ``cohort:<cohort_id>``, ``combo:<combo_id>``, ``gen:<gen_id>``,
``model:<model_id>``, ``report:<cohort_id>``. Every payload is self-contained JSON (large texts by sha256 into ``texts``).
What each event does to the projection tables (``gen_state``, ``cohort_members``, ``combos``) is
stated per type in ``daydream/ledger/projections.py``, applied in the transaction of each append.

Payload fields (``?`` = may be null):

CatalogImported     catalog_hash, source, concepts[{id, name, levels{level: text_hash}}],
                    templates[{stage, id, hash?, parser, generator, description, scale? [min, max]
                    (rubrics), text_hash? (when the scale makes hash differ from the text's sha256)}],
                    models[{…}]
ComboDefined        combo_id, concept_ids[], level, k
SpecCompiled        cohort_id, spec_hash, spec_path, catalog_hash, rows, spec_version
CohortPlanned       cohort_id, spec_hash, catalog_hash, spec_version, planned{stage: n}, linked{stage: n},
                    models{model_id: identity_hash} (the models its new generations are planned on)
ModelDefined        model_id, identity_hash, identity{provider, model, base_url?, temperature?,
                    max_tokens?, stages{}}, definition{…the catalog's model entry}, catalog_hash,
                    cohort_id  (first plan on a model id: what the id means in this ledger, for good)
ModelSettingsChanged model_id, identity_hash, settings{api_key_env?, concurrency, rpm?, price_in?,
                    price_out?, release_date?}, previous{…}, catalog_hash, cohort_id  (a later catalog
                    with the same identity but other prices or limits; runs use the newest)
GenerationPlanned   gen_id, stage, parent_gen_id?, combo_id?, template_id, template_hash?, generator,
                    parser?, model_id?, model_hash? (the model's identity_hash), replicate, cohort_id,
                    catalog_hash?
GenerationLinked    gen_id, stage, cohort_id              (an existing generation joins a cohort)
GenerationImported  gen_id, stage, parent_gen_id?, combo_id?, template_id, model_id?, replicate,
                    generator, parser?, cohort_id?, status, prompt_hash?, raw_hash?, parsed_hash?, score?,
                    finish_reason?, prompt_tokens?, completion_tokens?, cost_usd?, latency_s?,
                    error?, source, metadata{…verbatim}, completes_import? (true: a second
                    GenerationImported for a generation first imported without its results),
                    scale? [min, max] (evaluations: the rubric's scale the score was read on)
PromptRendered      gen_id, attempt, prompt_hash, chars, template_id, template_hash
LLMCallStarted      gen_id, attempt, call, model_id, provider, provider_model, lease_until, worker{host,
                    pid, start, machine, run}, sends_marked (true: appended right before the first
                    request leaves, which it records; false: a local provider, nothing leaves;
                    absent: a runner before 0007), took_over? {worker, reason, lost_requests}
LLMCallSent         gen_id, attempt, call, try, model_id, provider   (appended before a retry's
                    request leaves, while the claim is still the sender's)
LLMCallLost         gen_id, attempt, call, try, model_id, provider, sent (true, or null when the
                    claim predates sent marks), sent_seq?, worker{…} (who sent it), reason,
                    estimated_cost_usd?, estimated_prompt_tokens, estimated_completion_tokens?,
                    estimate_basis   (a request whose outcome will never be known: its sender died
                    or was interrupted; recorded by the takeover or by the interrupted run itself)
LLMCallCompleted    gen_id, attempt, call, text_hash, chars, finish_reason?, prompt_tokens?,
                    completion_tokens?, cost_usd?, latency_s, model_id, provider, requested_model,
                    resolved_model?, request_id?, offline, try, superseded? (true: the claim had been
                    taken over by another worker; recorded because it was paid, not projected),
                    answers_lost_seq? (the LLMCallLost a superseded answer turns out to answer),
                    truncated?, original_bytes?, original_chars?, original_hash?,
                    max_response_bytes? (an answer cut at the size limit)
LLMCallFailed       gen_id, attempt, call, try, model_id, provider, error_class, message, status?,
                    retryable, latency_s?, released (true: the claim is given up and the
                    generation is pending again — the model was stopped: its key or URL was
                    refused, or its endpoint failed every call)
ClaimReleased       gen_id, attempt, call, reason, try? (a claim given back: stopped, interrupted or
                    out of budget; the generation is pending again. ``try`` names a request that
                    was recorded as about to leave and never did; a request that did leave is
                    recorded first as LLMCallLost)
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

from typing import Any

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
LLM_CALL_SENT = "LLMCallSent"
LLM_CALL_LOST = "LLMCallLost"
CLAIM_RELEASED = "ClaimReleased"
RESPONSE_PARSED = "ResponseParsed"
PARSE_FAILED = "ParseFailed"
SCORE_RECORDED = "ScoreRecorded"
GENERATION_FAILED = "GenerationFailed"
GENERATION_RETRIED = "GenerationRetried"
REPORT_PUBLISHED = "ReportPublished"
MODEL_DEFINED = "ModelDefined"
MODEL_SETTINGS_CHANGED = "ModelSettingsChanged"

ALL_TYPES = (
    CATALOG_IMPORTED, COMBO_DEFINED, SPEC_COMPILED, COHORT_PLANNED, GENERATION_PLANNED,
    GENERATION_LINKED, GENERATION_IMPORTED, PROMPT_RENDERED, LLM_CALL_STARTED, LLM_CALL_SENT,
    LLM_CALL_COMPLETED, LLM_CALL_FAILED, LLM_CALL_LOST, CLAIM_RELEASED, RESPONSE_PARSED, PARSE_FAILED,
    SCORE_RECORDED, GENERATION_FAILED, GENERATION_RETRIED, REPORT_PUBLISHED, MODEL_DEFINED,
    MODEL_SETTINGS_CHANGED,
)

# Payload fields holding the sha256 of a text stored in ``texts`` (``daydream verify`` checks that
# each one is there). ReportPublished's file hashes are of files on disk, not stored texts. A
# ``template_hash`` names a template's identity (a rubric's may cover its scale too, so it need not
# be a text's key): the template's text is referenced by the catalog snapshot that defines it.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    SPEC_COMPILED: ("spec_hash",),
    COHORT_PLANNED: ("spec_hash",),
    GENERATION_IMPORTED: ("prompt_hash", "raw_hash", "parsed_hash"),
    PROMPT_RENDERED: ("prompt_hash",),
    LLM_CALL_COMPLETED: ("text_hash",),
    LLM_CALL_FAILED: ("raw_hash",),
    RESPONSE_PARSED: ("parsed_hash",),
    GENERATION_FAILED: ("raw_hash",),
}


def text_references(type_: str, payload: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, sha256) of every stored text an event of ``type_`` refers to."""
    refs = [(name, value) for name in TEXT_FIELDS.get(type_, ()) if isinstance(value := payload.get(name), str)]
    if type_ == SPEC_COMPILED and isinstance(payload.get("includes"), dict):
        refs += [(f"includes[{k}]", v) for k, v in payload["includes"].items() if isinstance(v, str)]
    elif type_ == CATALOG_IMPORTED:
        for c in payload.get("concepts") or ():
            refs += [(f"concept {c.get('id')} {level}", h) for level, h in (c.get("levels") or {}).items()
                     if isinstance(h, str)]
        for t in payload.get("templates") or ():
            text = t.get("text_hash") or t.get("hash")  # text_hash: when the identity is not the text's key
            if isinstance(text, str):
                refs.append((f"{t.get('stage')} template {t.get('id')}", text))
    return refs


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


def model_stream(model_id: str) -> str:
    """The stream of one model id: its identity (ModelDefined) and later settings changes."""
    return f"model:{model_id}"
