"""The types that plugins exchange with the core: stages, providers and parsers.

These are the plugin contracts. A provider knows HTTP (or nothing at all, offline) but not the
ledger; a parser turns raw text into parsed text; a stage knows what variables its templates get and
how to judge an answer, and says so in events it returns (the runner, ``daydream.run``, writes them).

The pipeline has three fixed stages, ``PIPELINE_STAGES``: draft -> essay -> evaluation. The spec
DSL's axes, the planner, generation ids (``daydream.design.ids``: prefixes ``d_``, ``e_``, ``v_``)
and the read side's views name them. A stage plugin supplies the *behaviour* of one of them (what
its templates are given, how an answer is checked, parsed and scored); it does not add a stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:
    from daydream.ledger.events import DomainEvent

# The stages of every study, parents first.
PIPELINE_STAGES = ("draft", "essay", "evaluation")


# ----------------------------------------------------------------------------- parsers
@dataclass(frozen=True)
class Parsed:
    """What a parser extracted: the parsed text, and for evaluations the score and the scale
    (min, max) it is on (``daydream.design.scales.bind_scale`` fills in the rubric's scale when a parser
    leaves it out)."""

    text: str
    score: float | None = None
    scale: tuple[int, int] | None = None


class ParseFailure(Exception):
    """The raw text does not contain what the parser needs; ``preview`` shows the relevant part."""

    def __init__(self, reason: str, preview: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.preview = preview


# ----------------------------------------------------------------------------- providers
@dataclass(frozen=True)
class CallRequest:
    """One LLM call as the runner asks for it."""

    gen_id: str
    stage: str
    prompt: str
    model_id: str
    provider_model: str
    temperature: float | None = None
    max_tokens: int | None = None
    prompt_hash: str = ""


@dataclass(frozen=True)
class CallResult:
    """A successful LLM answer and everything we record about it."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_s: float
    requested_model: str
    resolved_model: str | None
    request_id: str | None
    provider: str
    extra: dict[str, Any] = field(default_factory=dict)


class CallFailed(Exception):
    """One failed attempt at a call.

    ``retryable`` says whether trying again may help (429, 408, 5xx, timeouts, connection errors);
    ``fatal_for_model`` stops all work on that model (401/403: a bad or missing key);
    ``retry_after`` is the server's requested wait in seconds, if it gave one.
    """

    def __init__(self, error_class: str, message: str, *, retryable: bool, status: int | None = None,
                 retry_after: float | None = None, fatal_for_model: bool = False,
                 latency_s: float | None = None, raw_text: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.fatal_for_model = fatal_for_model
        self.latency_s = latency_s
        self.raw_text = raw_text


@runtime_checkable
class Provider(Protocol):
    """An LLM backend. ``complete`` makes exactly one attempt: retries are the runner's job.

    Optional, looked up with ``getattr``:

    * ``local = True`` says a call reaches no one and costs nothing (offline, replay): the runner
      then records no ``LLMCallSent`` before it, and a crash leaves no lost call behind.
    * ``has_answer(request) -> bool`` is asked before a generation is claimed; False leaves the
      generation pending for this run without recording anything (replay: no recorded answer).

    Factories receive the options ``timeout_s`` and ``max_response_bytes`` (the runner cuts a longer
    answer there and marks it truncated; a provider may refuse to read far more than that).
    """

    name: str

    async def complete(self, request: CallRequest) -> CallResult:  # pragma: no cover - protocol
        """Answer ``request`` or raise ``CallFailed``."""
        ...

    async def aclose(self) -> None:  # pragma: no cover - protocol
        """Release connections."""
        ...


# ----------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class StageInput:
    """What a stage needs to build template variables for one generation."""

    gen_id: str
    combo_concepts: list[dict[str, str]] | None  # [{id, name, content}] at the combo's level
    parent_parsed: str | None                    # parsed text of the parent generation
    parent_stage: str | None


@dataclass(frozen=True)
class Generation:
    """The generation a stage judges an answer for: what its events must name."""

    gen_id: str
    stage: str
    parent_gen_id: str | None
    template_id: str
    model_id: str | None
    replicate: int | None


@runtime_checkable
class Stage(Protocol):
    """The behaviour of one of the ``PIPELINE_STAGES`` (registered under its name).

    ``parent_stage`` is the stage whose parsed output this one's templates read (None: the
    concepts only); ``scored`` says its answers carry a score, parsed on the rubric's scale.
    """

    name: str
    parent_stage: str | None
    scored: bool

    def variables(self, source: StageInput) -> dict[str, Any]:  # pragma: no cover - protocol
        """Template variables for this generation."""
        ...

    def check(self, raw_text: str, finish_reason: str | None) -> str | None:  # pragma: no cover
        """A reason to fail the generation despite a successful call, or None."""
        ...

    def outcome(self, gen: Generation, attempt: int, raw_text: str, finish_reason: str | None,
                parse: Callable[[str], Parsed], parser_name: str
                ) -> tuple[list[DomainEvent], list[str]]:  # pragma: no cover - protocol
        """What came of an answered call of ``gen``'s ``attempt``, as events and the texts they name:
        parsed output (and a score), a parse failure, or a failed check. Never writes them."""
        ...
