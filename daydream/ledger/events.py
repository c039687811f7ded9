"""Event types: the facts daydream records, one frozen dataclass each, and the payload it carries.

Every event class names its type (``TYPE``), says which stream it belongs to (``stream``), and
turns into the JSON payload stored in ``events.payload`` (``to_payload()``) and back
(``from_payload()``); ``new()`` makes the ``NewEvent`` the ledger appends. Code outside this module
builds these classes, never dicts with literal type strings (a test scans for them).

Payload keys are the dataclass fields (``try_`` is stored as ``try``). A field marked ``optional``
is left out of the payload when it is None (``GenerationFailed.raw_hash`` appears only when the
answer is kept); every other field is always written, as null when it is None. The payloads are
exactly those earlier versions wrote, since every event is hash-chained as stored.

Streams: ``catalog:<hash16>``, ``cohort:<cohort_id>``, ``combo:<combo_id>``, ``gen:<gen_id>``,
``model:<model_id>``, ``report:<cohort_id>``. Large texts are stored once in ``texts`` and named by
their sha256 (``TEXT_FIELDS``). What each event does to the projection tables (``gen_state``,
``cohort_members``, ``combos``) is stated per type in ``daydream.ledger.projections``, applied in the transaction of each append.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:  # the store is imported when an event is first appended: reading types stays light
    from daydream.ledger.store import NewEvent


# ----------------------------------------------------------------------------- streams
def gen_stream(gen_id: str) -> str:
    """The stream of one generation."""
    return f"gen:{gen_id}"


def cohort_stream(cohort_id: str) -> str:
    """The stream of one cohort (its spec versions, plans and linked generations)."""
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


def report_stream(cohort_id: str) -> str:
    """The stream of one cohort's published reports."""
    return f"report:{cohort_id}"


# ----------------------------------------------------------------------------- the base class
def optional(default: Any = None) -> Any:
    """A payload field left out of the payload when it is None."""
    return field(default=default, metadata={"optional": True})


def _key(name: str) -> Any:
    """A payload field whose key is not a Python name (``try``)."""
    return field(metadata={"key": name})


E = TypeVar("E", bound="DomainEvent")
# Event classes by type name (every subclass registers itself).
EVENT_TYPES: dict[str, type[DomainEvent]] = {}


class DomainEvent:
    """A fact to record. Subclasses are frozen keyword-only dataclasses; see the module docstring."""

    TYPE: ClassVar[str] = ""
    # (attribute, payload key, optional) of every field, in declaration order.
    _FIELDS: ClassVar[tuple[tuple[str, str, bool], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__.startswith("_"):
            return  # a base of several event types (a stream kind), never recorded itself
        if not cls.TYPE or cls.TYPE in EVENT_TYPES:
            raise TypeError(f"{cls.__name__}: TYPE {cls.TYPE!r} is missing or taken")
        EVENT_TYPES[cls.TYPE] = cls

    @property
    def stream(self) -> str:  # pragma: no cover - every subclass defines it
        """The stream this event is appended to."""
        raise NotImplementedError

    def to_payload(self) -> dict[str, Any]:
        """The JSON payload as stored."""
        out: dict[str, Any] = {}
        for attr, key, opt in self._FIELDS:
            value = getattr(self, attr)
            if value is None and opt:
                continue
            out[key] = value
        return out

    @classmethod
    def from_payload(cls: type[E], payload: dict[str, Any]) -> E:
        """The event a stored payload records. Keys that a ledger written by an older daydream
        lacks take their field's default (None); keys this version does not know are ignored."""
        return cls(**{attr: payload.get(key) for attr, key, _opt in cls._FIELDS if key in payload})

    def new(self, *, expected_version: int | None = None, causation_seq: int | None = None) -> NewEvent:
        """The event as the ledger appends it."""
        from daydream.ledger.store import NewEvent

        return NewEvent(self.stream, self.TYPE, self.to_payload(), expected_version, causation_seq)

    def but(self: E, **changes: Any) -> E:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def event(cls: type[E]) -> type[E]:
    """Class decorator: a frozen keyword-only dataclass event, its payload fields listed."""
    cls = dataclass(frozen=True, kw_only=True)(cls)
    cls._FIELDS = tuple((f.name, f.metadata.get("key", f.name), bool(f.metadata.get("optional")))
                        for f in dataclasses.fields(cls))
    return cls


def from_stored(type_: str, payload: dict[str, Any]) -> DomainEvent:
    """The typed event of a stored (type, payload); KeyError for a type this version does not know."""
    return EVENT_TYPES[type_].from_payload(payload)


@dataclass(frozen=True, kw_only=True)
class _GenEvent(DomainEvent):
    """An event about one generation (stream ``gen:<gen_id>``)."""

    gen_id: str

    @property
    def stream(self) -> str:
        return gen_stream(self.gen_id)


@dataclass(frozen=True, kw_only=True)
class _CohortEvent(DomainEvent):
    """An event about one cohort (stream ``cohort:<cohort_id>``)."""

    cohort_id: str

    @property
    def stream(self) -> str:
        return cohort_stream(self.cohort_id)


@dataclass(frozen=True, kw_only=True)
class _ModelEvent(DomainEvent):
    """An event about one model id (stream ``model:<model_id>``)."""

    model_id: str

    @property
    def stream(self) -> str:
        return model_stream(self.model_id)



# ----------------------------------------------------------------------------- the design
@event
class CatalogImported(DomainEvent):
    """A catalog snapshot: concepts (text hashes per level), templates, models, combos."""

    TYPE = "CatalogImported"
    catalog_hash: str
    source: str
    concepts: list[dict[str, Any]]   # [{id, name, levels{level: text_hash}}]
    templates: list[dict[str, Any]]  # [{stage, id, hash, parser, generator, description, scale?, text_hash?}]
    models: list[dict[str, Any]]     # the catalog's model entries
    combos: list[dict[str, Any]] | None = optional()  # [{combo_id, concept_ids, level, k}] when listed

    @property
    def stream(self) -> str:
        return catalog_stream(self.catalog_hash)


@event
class ComboDefined(DomainEvent):
    """A concept combination: its concepts and description level."""

    TYPE = "ComboDefined"
    combo_id: str
    concept_ids: list[str]
    level: str | None
    k: int

    @property
    def stream(self) -> str:
        return combo_stream(self.combo_id)


@event
class SpecCompiled(_CohortEvent):
    """A new version of a cohort's spec (the spec text, its included files and the catalog)."""

    TYPE = "SpecCompiled"
    spec_hash: str
    spec_path: str
    catalog_hash: str | None
    rows: int
    spec_version: int
    includes: dict[str, str] | None = optional()  # {include name: text hash}; absent for imports


@event
class CohortPlanned(_CohortEvent):
    """A cohort was planned: how many generations each stage got, new and linked."""

    TYPE = "CohortPlanned"
    spec_hash: str
    catalog_hash: str
    spec_version: int
    planned: dict[str, int]  # {stage: new generations}
    linked: dict[str, int]   # {stage: existing generations that joined}
    models: dict[str, str]   # {model_id: identity_hash} of the models its new generations use
    # The plan it completes when the plan was appended in several transactions (PlanStarted):
    # its generations become visible with this event. Absent for a plan appended in one.
    plan_id: str | None = optional()


@event
class PlanStarted(_CohortEvent):
    """A plan too big for one transaction started; its events follow in several (migration 0013)."""

    # Generations and links carrying its plan_id stay invisible to every reader until the
    # CohortPlanned with the same plan_id; one that dies part way leaves them invisible, and
    # planning the same spec again resumes it (resumed: this process took the plan over).
    TYPE = "PlanStarted"
    plan_id: str
    spec_hash: str
    catalog_hash: str
    spec_version: int
    events: int  # events the plan appends after this one (when resumed: what is still missing)
    transactions: int  # the write transactions it appends them in
    resumed: bool = False


@event
class ModelDefined(_ModelEvent):
    """What a model id means in this ledger, for good (recorded by the first plan on it)."""

    TYPE = "ModelDefined"
    identity_hash: str
    identity: dict[str, Any]    # {provider, model, base_url?, temperature?, max_tokens?, stages{}}
    definition: dict[str, Any]  # the catalog's model entry
    catalog_hash: str
    cohort_id: str


@event
class ModelSettingsChanged(_ModelEvent):
    """A later catalog changed a model's prices, limits or key variable (runs use the newest)."""

    TYPE = "ModelSettingsChanged"
    identity_hash: str
    settings: dict[str, Any]  # {api_key_env?, concurrency, rpm?, price_in?, price_out?, release_date?}
    previous: dict[str, Any]
    catalog_hash: str
    cohort_id: str


@event
class GenerationPlanned(_GenEvent):
    """A generation to make: its stage, lineage, template, model and replicate."""

    TYPE = "GenerationPlanned"
    stage: str
    parent_gen_id: str | None
    combo_id: str | None
    template_id: str
    template_hash: str | None
    generator: str  # llm or copy
    parser: str | None
    model_id: str | None
    model_hash: str | None  # the model's identity_hash
    replicate: int
    cohort_id: str
    catalog_hash: str | None
    plan_id: str | None = optional()  # staged by this plan until its CohortPlanned (see PlanStarted)


@event
class GenerationLinked(_CohortEvent):
    """An existing generation joins a cohort (stream: the cohort's)."""

    TYPE = "GenerationLinked"
    gen_id: str
    stage: str
    plan_id: str | None = optional()  # staged by this plan until its CohortPlanned (see PlanStarted)


@event
class GenerationImported(_GenEvent):
    """A generation moved in from the previous pipeline, with whatever results it had."""

    TYPE = "GenerationImported"
    stage: str
    parent_gen_id: str | None
    combo_id: str | None
    template_id: str
    model_id: str | None
    replicate: int
    generator: str
    parser: str | None
    cohort_id: str | None
    status: str  # completed or failed
    prompt_hash: str | None
    raw_hash: str | None
    parsed_hash: str | None
    score: float | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_s: float | None
    error: str | None
    created_at: str | None
    source: str
    metadata: dict[str, Any]  # the old files' metadata, verbatim
    scale: list[int] | None = optional()  # evaluations: the rubric's scale the score was read on
    completes_import: bool | None = optional()  # true: results of a generation imported without them


# ----------------------------------------------------------------------------- running
@event
class PromptRendered(_GenEvent):
    """The prompt of an attempt, rendered from its template (by content hash)."""

    TYPE = "PromptRendered"
    attempt: int
    prompt_hash: str
    chars: int
    template_id: str
    template_hash: str | None


@event
class LLMCallStarted(_GenEvent):
    """A claim on an attempt's call, appended right before its first request leaves."""

    TYPE = "LLMCallStarted"
    attempt: int
    call: int
    model_id: str
    provider: str
    provider_model: str | None
    lease_until: str
    worker: dict[str, Any]  # {host, pid, start, machine, run}
    # True: the claim records its first request (later ones get LLMCallSent); False: a local
    # provider, nothing leaves; None (absent): a runner before sent marks.
    sends_marked: bool | None = optional()
    took_over: dict[str, Any] | None = optional()  # {worker, reason, lost_requests}


@event
class LLMCallSent(_GenEvent):
    """A retry's request is about to leave (appended while the claim is still the sender's)."""

    TYPE = "LLMCallSent"
    attempt: int
    call: int
    try_: int = _key("try")
    model_id: str
    provider: str


@event
class LLMCallLost(_GenEvent):
    """A request whose outcome will never be known: its sender died or was interrupted."""

    TYPE = "LLMCallLost"
    attempt: int
    call: int
    try_: int = _key("try")
    model_id: str | None
    provider: str
    sent: bool | None  # None: the claim predates sent marks
    sent_seq: int | None
    worker: dict[str, Any]  # who sent it
    reason: str
    estimated_cost_usd: float | None
    estimated_prompt_tokens: int
    estimated_completion_tokens: int | None
    estimate_basis: str


@event
class LLMCallCompleted(_GenEvent):
    """An answer: its text (by hash), usage, cost, latency and the model that answered."""

    TYPE = "LLMCallCompleted"
    attempt: int
    call: int
    try_: int = _key("try")
    text_hash: str
    chars: int
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_s: float
    model_id: str
    provider: str
    requested_model: str | None
    resolved_model: str | None
    request_id: str | None
    offline: bool
    # An answer cut at --max-response-bytes: what it was before.
    truncated: bool | None = optional()
    original_bytes: int | None = optional()
    original_chars: int | None = optional()
    original_hash: str | None = optional()
    max_response_bytes: int | None = optional()
    # The response reported no usage: cost_usd and the token counts are estimated from the text.
    cost_estimated: bool | None = optional()
    # The claim had been taken over: recorded because it was paid, not projected.
    superseded: bool | None = optional()
    answers_lost_seq: int | None = optional()  # the LLMCallLost a superseded answer answers


@event
class LLMCallFailed(_GenEvent):
    """One failed try of a call (HTTP error, timeout, refused key …)."""

    TYPE = "LLMCallFailed"
    attempt: int
    call: int
    try_: int = _key("try")
    model_id: str
    provider: str
    error_class: str
    message: str
    status: int | None
    retryable: bool
    latency_s: float | None
    released: bool  # the claim is given up and the generation pending again (the model was stopped)
    raw_hash: str | None = optional()
    superseded: bool | None = optional()
    answers_lost_seq: int | None = optional()


@event
class ClaimReleased(_GenEvent):
    """A claim given back (stopped, interrupted, out of budget): the generation is pending again."""

    TYPE = "ClaimReleased"
    attempt: int
    call: int
    reason: str
    try_: int | None = field(default=None, metadata={"key": "try", "optional": True})  # marked, never left


@event
class ResponseParsed(_GenEvent):
    """The parsed output of an answer (or, copy-mode, the parent's parsed text)."""

    TYPE = "ResponseParsed"
    attempt: int
    parser: str
    parsed_hash: str
    chars: int
    copied_from: str | None = optional()
    reparsed: bool | None = optional()      # written by ``daydream reparse`` from the recorded answer
    template_hash: str | None = optional()  # (reparse) the template whose parser and scale it used


@event
class ParseFailed(_GenEvent):
    """The parser found nothing usable in an answer."""

    TYPE = "ParseFailed"
    attempt: int
    parser: str
    reason: str
    preview: str
    reparsed: bool | None = optional()
    template_hash: str | None = optional()


@event
class ScoreRecorded(_GenEvent):
    """An evaluation's score, on its rubric's scale."""

    TYPE = "ScoreRecorded"
    attempt: int
    essay_gen_id: str | None
    score: float
    scale: list[int] | None = optional()  # [min, max]; absent before scales (0-9)
    rubric: str
    evaluator: str | None
    replicate: int | None
    reparsed: bool | None = optional()


@event
class GenerationFailed(_GenEvent):
    """An attempt failed for good: ``error_class`` names why, ``reason`` says it in words."""

    TYPE = "GenerationFailed"
    attempt: int
    error_class: str
    reason: str
    raw_hash: str | None = optional()  # the answer or error body that failed, when kept
    reparsed: bool | None = optional()


@event
class GenerationRetried(_GenEvent):
    """A new attempt of a finished generation (``daydream rerun``); the old one stays."""

    TYPE = "GenerationRetried"
    attempt: int  # the new one
    previous_attempt: int
    reason: str


@event
class ReportPublished(DomainEvent):
    """A report of a cohort was written: its folder and the sha256 of each file."""

    TYPE = "ReportPublished"
    cohort_id: str
    out_dir: str
    files: dict[str, str]

    @property
    def stream(self) -> str:
        return report_stream(self.cohort_id)


# ----------------------------------------------------------------------------- type names
# The type names as constants, for SQL and for readers of stored events.
CATALOG_IMPORTED = CatalogImported.TYPE
COMBO_DEFINED = ComboDefined.TYPE
SPEC_COMPILED = SpecCompiled.TYPE
COHORT_PLANNED = CohortPlanned.TYPE
PLAN_STARTED = PlanStarted.TYPE
GENERATION_PLANNED = GenerationPlanned.TYPE
GENERATION_LINKED = GenerationLinked.TYPE
GENERATION_IMPORTED = GenerationImported.TYPE
PROMPT_RENDERED = PromptRendered.TYPE
LLM_CALL_STARTED = LLMCallStarted.TYPE
LLM_CALL_COMPLETED = LLMCallCompleted.TYPE
LLM_CALL_FAILED = LLMCallFailed.TYPE
LLM_CALL_SENT = LLMCallSent.TYPE
LLM_CALL_LOST = LLMCallLost.TYPE
CLAIM_RELEASED = ClaimReleased.TYPE
RESPONSE_PARSED = ResponseParsed.TYPE
PARSE_FAILED = ParseFailed.TYPE
SCORE_RECORDED = ScoreRecorded.TYPE
GENERATION_FAILED = GenerationFailed.TYPE
GENERATION_RETRIED = GenerationRetried.TYPE
REPORT_PUBLISHED = ReportPublished.TYPE
MODEL_DEFINED = ModelDefined.TYPE
MODEL_SETTINGS_CHANGED = ModelSettingsChanged.TYPE

ALL_TYPES = tuple(EVENT_TYPES)

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
