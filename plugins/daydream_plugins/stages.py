"""Built-in daydream plugin: the ``draft``, ``essay`` and ``evaluation`` stages.

A stage says what its templates are given and how to judge an answer; it turns a call's outcome
into events but never writes them (the runner's single writer does). Template variables keep the
previous pipeline's templates working unchanged: drafts get ``concepts``; essays get the parent
draft's parsed text as ``draft_block`` and ``links_block``; evaluations get the essay as ``response``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from daydream.contracts import Generation, Parsed, ParseFailure, StageInput
from daydream.design.scales import DEFAULT_SCALE
from daydream.hookspecs import hookimpl

if TYPE_CHECKING:  # the event classes and the store load when events are made, not with the plugins
    from daydream.ledger.events import DomainEvent

MIN_DRAFT_LINES = 3


class BuiltinStage:
    """Common behaviour of the built-in stages."""

    name = ""
    parent_stage: str | None = None
    scored = False

    def variables(self, source: StageInput) -> dict[str, Any]:
        """Template variables: the combo's concepts where known, plus what the parent produced."""
        found: dict[str, Any] = {}
        if source.combo_concepts is not None:
            found["concepts"] = source.combo_concepts
        return found

    def check(self, raw_text: str, finish_reason: str | None) -> str | None:
        """A reason to fail the generation despite a successful call (None: the answer is usable)."""
        return None

    def outcome(self, gen: Generation, attempt: int, raw_text: str, finish_reason: str | None,
                parse: Callable[[str], Parsed], parser_name: str) -> tuple[list[DomainEvent], list[str]]:
        """Events that record what came of a completed call: parsed output, score, or failure."""
        from daydream.ledger.events import GenerationFailed, ParseFailed, ResponseParsed
        from daydream.ledger.store import text_hash

        reason = self.check(raw_text, finish_reason)
        if reason is not None:
            return [GenerationFailed(gen_id=gen.gen_id, attempt=attempt, error_class="ValidationFailed",
                                     reason=reason, raw_hash=text_hash(raw_text))], []
        try:
            parsed = parse(raw_text)
        except ParseFailure as failure:
            return [ParseFailed(gen_id=gen.gen_id, attempt=attempt, parser=parser_name, reason=failure.reason,
                                preview=failure.preview[-600:])], []
        events: list[DomainEvent] = [ResponseParsed(gen_id=gen.gen_id, attempt=attempt, parser=parser_name,
                                                    parsed_hash=text_hash(parsed.text), chars=len(parsed.text))]
        events.extend(self.score_events(gen, attempt, parsed))
        return events, [parsed.text]

    def score_events(self, gen: Generation, attempt: int, parsed: Parsed) -> list[DomainEvent]:
        """Extra events for a parsed answer (scores, for evaluations)."""
        return []


class DraftStage(BuiltinStage):
    """Brainstorm links between the concepts of a combination."""

    name = "draft"

    def check(self, raw_text: str, finish_reason: str | None) -> str | None:
        if finish_reason == "length":
            return "draft truncated: the model stopped at max_tokens (finish_reason 'length')"
        lines = [line for line in raw_text.splitlines() if line.strip()]
        if len(lines) < MIN_DRAFT_LINES:
            return f"draft too short: {len(lines)} non-empty line(s), at least {MIN_DRAFT_LINES} expected"
        return None


class EssayStage(BuiltinStage):
    """Turn a draft (or, in single-stage studies, the concepts themselves) into an essay."""

    name = "essay"
    parent_stage = "draft"

    def variables(self, source: StageInput) -> dict[str, Any]:
        found = super().variables(source)
        if source.parent_parsed is not None:
            found["draft_block"] = source.parent_parsed
            found["links_block"] = source.parent_parsed
        return found


class EvaluationStage(BuiltinStage):
    """Score an essay against a rubric, on the rubric's scale (0–9 unless it declares another)."""

    name = "evaluation"
    parent_stage = "essay"
    scored = True

    def variables(self, source: StageInput) -> dict[str, Any]:
        found = super().variables(source)
        if source.parent_parsed is not None:
            found["response"] = source.parent_parsed
        return found

    def score_events(self, gen: Generation, attempt: int, parsed: Parsed) -> list[DomainEvent]:
        from daydream.ledger.events import ScoreRecorded

        if parsed.score is None:
            return []
        # The scale travels with the score, so a score is self-describing: views and comparisons
        # across rubrics need no catalog lookup, and a re-scored generation keeps both in history.
        return [ScoreRecorded(gen_id=gen.gen_id, attempt=attempt, essay_gen_id=gen.parent_gen_id,
                              score=parsed.score, scale=list(parsed.scale or DEFAULT_SCALE),
                              rubric=gen.template_id, evaluator=gen.model_id, replicate=gen.replicate)]

    def outcome(self, gen: Generation, attempt: int, raw_text: str, finish_reason: str | None,
                parse: Callable[[str], Parsed], parser_name: str) -> tuple[list[DomainEvent], list[str]]:
        from daydream.ledger.events import ParseFailed, ResponseParsed, ScoreRecorded

        events, texts = super().outcome(gen, attempt, raw_text, finish_reason, parse, parser_name)
        # An evaluation is only complete with a score; a parser that yields none is a parse failure.
        if events and isinstance(events[0], ResponseParsed) and not any(isinstance(e, ScoreRecorded) for e in events):
            return [ParseFailed(gen_id=gen.gen_id, attempt=attempt, parser=parser_name,
                                reason=f"parser {parser_name!r} returned no score", preview=raw_text[-600:])], []
        return events, texts


@hookimpl
def register_stages(register: Callable[[Any], None]) -> None:
    """Register the three built-in stages."""
    for stage in (DraftStage(), EssayStage(), EvaluationStage()):
        register(stage)
