"""One attempt at a generation: render -> claim -> call, with retries -> outcome.

A copy-mode generation copies its parent's parsed text. Otherwise the prompt is rendered, and with
a call slot of the model in hand (and its rate limit passed) the call is claimed: ``PromptRendered``
+ ``LLMCallStarted``, committed by the writer right before the first request leaves. Each retry is
announced by ``LLMCallSent``, committed while the claim is still ours, so every request is on
record before it is sent. The answer goes to the writer as ``LLMCallCompleted`` with what the
stage made of it (parsed output, score, or failure); failed tries as ``LLMCallFailed``, and a
generation given up on as ``GenerationFailed``. A claim that cannot finish (interrupted, model
stopped) is released, naming the request that left without an answer as ``LLMCallLost``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from daydream.contracts import CallFailed, CallRequest, CallResult
from daydream.design.scales import DEFAULT_SCALE, bind_scale
from daydream.errors import DaydreamError
from daydream.ledger.events import (ClaimReleased, DomainEvent, GenerationFailed, LLMCallCompleted, LLMCallFailed,
                                    LLMCallSent, LLMCallStarted, PromptRendered, ResponseParsed)
from daydream.ledger.store import Ledger, text_hash
from daydream.plugins import Registry
from daydream.run.budget import Budget
from daydream.ledger.store import iso_utc
from daydream.run.job import Job, LostCalls
from daydream.run.models import ModelPool
from daydream.run.options import RunOptions
from daydream.run.pacing import RateLimiter, model_params
from daydream.run.render import Context, GenFailure, PromptRenderer
from daydream.run.stats import RunStats
from daydream.run.writer import WriteItem, Writer


class Attempts:
    """Carries out jobs for one run; every outcome goes to the run's writer."""

    def __init__(self, *, ledger: Ledger, options: RunOptions, ctx: Context, stages: Registry, parsers: Registry,
                 renderer: PromptRenderer, models: ModelPool, budget: Budget, writer: Writer, lost: LostCalls,
                 stats: RunStats, worker: dict[str, Any], stopping: Callable[[], bool],
                 stop: Callable[[str], None]) -> None:
        self.ledger = ledger
        self.options = options
        self.ctx = ctx
        self.stages = stages
        self.parsers = parsers
        self.renderer = renderer
        self.models = models
        self.budget = budget
        self.writer = writer
        self.lost = lost
        self.stats = stats
        self.worker = worker
        self.stopping = stopping
        self.stop = stop
        self.skipped: set[str] = set()  # left alone for the rest of this run (replay misses)

    def fail(self, job: Job, error_class: str, reason: str, *, observed: bool = True) -> None:
        """Record ``GenerationFailed`` for a generation that failed without a call of its own
        (``observed``: only if the generation is still as the run found it)."""
        gen = job.gen
        event = GenerationFailed(gen_id=gen.gen_id, attempt=job.attempt, error_class=error_class, reason=reason)
        self.writer.enqueue(WriteItem("result", job, [event], [],
                                      observed=(gen.status, job.attempt) if observed else None))

    async def copy(self, job: Job) -> None:
        """A copy-mode generation: its parent's parsed text is its own."""
        gen = job.gen
        parent_text = self.renderer.text(gen.parent_parsed_hash)
        event: DomainEvent
        if parent_text is None or gen.parent_parsed_hash is None:
            event = GenerationFailed(gen_id=gen.gen_id, attempt=job.attempt, error_class="ParentMissing",
                                     reason="copy-mode generation has no parent text to copy")
        else:
            event = ResponseParsed(gen_id=gen.gen_id, attempt=job.attempt, parser="copy",
                                   parsed_hash=gen.parent_parsed_hash, chars=len(parent_text),
                                   copied_from=gen.parent_gen_id)
        self.writer.enqueue(WriteItem("result", job, [event], [], observed=("planned", job.attempt)))

    async def call(self, job: Job) -> None:
        """Render, claim, call (with retries) and record the outcome of one LLM generation."""
        gen = job.gen
        model_id = gen.model_id
        if not model_id or model_id not in self.ctx.models:
            self.fail(job, "UnknownModel", f"model {model_id!r} is not in any catalog snapshot of this ledger")
            return
        try:
            job.prompt = self.renderer.render(gen)
        except GenFailure as failure:
            self.fail(job, failure.error_class, failure.reason)
            return
        job.prompt_hash = text_hash(job.prompt)
        model = self.ctx.models[model_id]
        try:
            provider = self.models.provider(model_id)  # fail early (bad base URL …) before claiming anything
        except DaydreamError as exc:
            self.stats.fatal_models[model_id] = str(exc)
            return
        job.local = bool(getattr(provider, "local", False))
        sem, limiter = self.models.limits(model_id)
        temperature, max_tokens = model_params(model, gen.stage)
        request = CallRequest(gen_id=gen.gen_id, stage=gen.stage, prompt=job.prompt, model_id=model_id,
                              provider_model=model.get("model") or model_id, temperature=temperature,
                              max_tokens=max_tokens, prompt_hash=job.prompt_hash)
        has_answer = getattr(provider, "has_answer", None)
        if has_answer is not None and not has_answer(request):
            # Replaying, and the other ledger has no answer for this prompt: leave it pending for a
            # run that calls the model, and record nothing.
            self.stats.replay_misses += 1
            self.stats.replay_miss_example = self.stats.replay_miss_example or gen.gen_id
            self.skipped.add(gen.gen_id)
            return
        # Claim only with a call slot in hand and the rate limit passed: the claim is also the
        # record that the first request is about to leave (a claim waiting for a slot would be a
        # call that was never made), and other runners may take what this one is not sending.
        async with sem:
            if self.stopping() or model_id in self.stats.fatal_models:
                return
            if not await self.budget.admit(job, model):
                # It cannot fit, even with nothing else in flight: it stays pending, unclaimed,
                # for a run with more budget, while calls that still fit go on.
                self.skipped.add(gen.gen_id)
                self.stats.budget_left_pending += 1
                return
            if self.stopping() or model_id in self.stats.fatal_models:
                return
            await limiter.wait()
            if self.stopping():
                return
            try:
                if job.local:
                    # Nothing leaves the machine and nothing is paid: the claim is recorded with
                    # the answer, in one commit (half the commits of an offline run), and only if
                    # the generation is still planned then (else the answer is dropped).
                    self._defer_claim(job)
                elif not await self._claim(job):
                    return
                await self._tries(job, request, model, limiter)
            except asyncio.CancelledError:
                if job.call:
                    self.release(job, "run interrupted")
                raise

    def _defer_claim(self, job: Job) -> None:
        events, texts = self._claim_events(job)
        job.deferred_claim = (events, texts)

    def _record(self, job: Job, events: list[DomainEvent], texts: list[str]) -> None:
        """Hand a try's outcome to the writer, with the claim when it was deferred (a local call)."""
        if job.deferred_claim is not None:
            claim_events, claim_texts = job.deferred_claim
            job.deferred_claim = None
            self.writer.enqueue(WriteItem("claimed", job, [*claim_events, *events], [*claim_texts, *texts]))
            return
        self.writer.enqueue(WriteItem("result", job, events, texts))

    async def _claim(self, job: Job) -> bool:
        events, texts = self._claim_events(job)
        gen = job.gen
        return await self.writer.submit(WriteItem("claim", job, events, texts,
                                                  observed=(gen.status, job.attempt, gen.worker)))

    def _claim_events(self, job: Job) -> tuple[list[DomainEvent], list[str]]:
        """The events (and texts) of claiming ``job``: its prompt rendered and its call started."""
        gen = job.gen
        model = self.ctx.models.get(gen.model_id or "")
        lease_until = iso_utc(datetime.now(timezone.utc) + timedelta(seconds=self.options.lease_s))
        job.call = 1
        job.marked_try = 0 if job.local else 1
        events: list[DomainEvent] = [
            PromptRendered(gen_id=gen.gen_id, attempt=job.attempt, prompt_hash=job.prompt_hash or "",
                           chars=len(job.prompt or ""), template_id=gen.template_id,
                           template_hash=gen.template_hash),
            LLMCallStarted(gen_id=gen.gen_id, attempt=job.attempt, call=job.call, model_id=gen.model_id or "",
                           provider=self.models.provider_name(model), provider_model=(model or {}).get("model"),
                           lease_until=lease_until, worker=self.worker, sends_marked=not job.local),
        ]
        return events, [job.prompt or ""]

    async def _mark_sent(self, job: Job, try_: int) -> bool:
        """Commit ``LLMCallSent`` for this try before its request leaves; False when the claim is no
        longer ours (taken over), in which case nothing must be sent."""
        gen = job.gen
        job.marked_try = try_
        event = LLMCallSent(gen_id=gen.gen_id, attempt=job.attempt, call=job.call, try_=try_,
                            model_id=gen.model_id or "",
                            provider=self.models.provider_name(self.ctx.models.get(gen.model_id or "")))
        return await self.writer.submit(WriteItem("sent", job, [event], []))

    async def _tries(self, job: Job, request: CallRequest, model: dict[str, Any], limiter: RateLimiter) -> None:
        """Call until an answer, a non-retryable failure, or the retry limit; record every try."""
        gen = job.gen
        model_id = gen.model_id or ""
        provider = self.models.provider(model_id)
        tries = 0
        while True:
            tries += 1
            if tries > 1:  # the first request was announced by the claim itself
                await limiter.wait()
                if not job.local and not await self._mark_sent(job, tries):
                    return  # the claim was taken over: whoever holds it now makes the call
            job.sent_try = tries
            started = time.monotonic()
            sending = self.stats.stages[gen.stage]
            sending.calls_in_flight += 1
            self.stats.calls_in_flight += 1
            try:
                try:
                    result = await self.models.complete(provider, request)
                finally:  # answered, failed or cancelled: no longer a request in the air
                    sending.calls_in_flight -= 1
                    self.stats.calls_in_flight -= 1
            except CallFailed as failure:
                job.answered_try = tries
                if self._failed_try(job, failure, tries, started, model):
                    return
                await asyncio.sleep(self.models.backoff(tries, failure.retry_after))
                continue
            break
        job.answered_try = tries
        self._answered(job, result, tries)

    def _failed_try(self, job: Job, failure: CallFailed, tries: int, started: float,
                    model: dict[str, Any]) -> bool:
        """Record a failed try; True when the generation is given up on (or handed back)."""
        gen = job.gen
        model_id = gen.model_id or ""
        self.stats.failed_calls += 1
        self.stats.calls += 1
        fatal = failure.fatal_for_model
        give_up = fatal or not failure.retryable or tries >= self.options.max_tries or self.stopping()
        # Another call of this model already showed the endpoint is unusable: hand the
        # generation back instead of failing it too.
        stopped = model_id in self.stats.fatal_models and give_up
        released = bool(fatal or stopped or (failure.retryable and self.stopping()))
        events: list[DomainEvent] = [LLMCallFailed(
            gen_id=gen.gen_id, attempt=job.attempt, call=job.call, try_=tries, model_id=model_id,
            provider=self.models.provider_name(model), error_class=failure.error_class,
            message=failure.message[:500], status=failure.status, retryable=failure.retryable,
            latency_s=round(failure.latency_s if failure.latency_s is not None else time.monotonic() - started, 4),
            released=released)]
        texts: list[str] = []
        if fatal:
            self.stats.fatal_models.setdefault(model_id, failure.message)
        elif give_up and not released:
            reason = (f"gave up after {tries} tries: {failure.error_class}: {failure.message[:300]}"
                      if failure.retryable else f"{failure.error_class}: {failure.message[:300]}")
            events.append(GenerationFailed(gen_id=gen.gen_id, attempt=job.attempt, error_class=failure.error_class,
                                           reason=reason,
                                           raw_hash=text_hash(failure.raw_text) if failure.raw_text else None))
            if failure.raw_text:
                texts.append(failure.raw_text)
            self.models.gave_up(model_id, failure, tries)
        self._record(job, events, texts)
        return give_up

    def _answered(self, job: Job, result: CallResult, tries: int) -> None:
        """Record a successful answer and what the stage made of it, in one transaction."""
        gen = job.gen
        model_id = gen.model_id or ""
        self.models.succeeded(model_id)
        self.stats.calls += 1
        self.stats.tokens += (result.prompt_tokens or 0) + (result.completion_tokens or 0)
        cost, estimated = result.cost_usd, None
        if cost is None and result.prompt_tokens is None and result.completion_tokens is None:
            # The response reported no usage: what it cost is estimated from the texts (and says so).
            found = self.budget.estimate_cost(self.ctx.models.get(model_id) or {}, job.prompt or "", result.text)
            if found is not None:
                cost, estimated = found[0], True
                self.stats.estimated_calls += 1
                self.stats.estimated_usd += cost
        if cost:
            self.stats.spent_usd += cost
        self.budget.observe(job, cost, result.prompt_tokens)
        text, cut = cut_answer(result.text, self.options.max_response_bytes)
        stage = self.stages.get(gen.stage)
        parser_name = gen.parser or "identity"
        completed = LLMCallCompleted(
            gen_id=gen.gen_id, attempt=job.attempt, call=job.call, try_=tries, text_hash=text_hash(text),
            chars=len(text), finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, cost_usd=cost,
            latency_s=round(result.latency_s, 4), model_id=model_id, provider=result.provider,
            requested_model=result.requested_model, resolved_model=result.resolved_model,
            request_id=result.request_id, offline=result.provider == "offline", cost_estimated=estimated,
            **(cut or {}))
        if cut is not None:
            self.stats.truncated += 1
        outcome: list[DomainEvent]
        try:
            parse = self.parsers.get(parser_name)
        except DaydreamError as exc:
            outcome = [GenerationFailed(gen_id=gen.gen_id, attempt=job.attempt, error_class="UnknownParser",
                                        reason=str(exc))]
            texts: list[str] = []
        else:
            if stage.scored:  # the parser reads scores on the rubric's scale
                parse = bind_scale(parse, self.ctx.template_scale(gen.template_hash) or DEFAULT_SCALE)
            outcome, texts = stage.outcome(gen.ref(), job.attempt, text, result.finish_reason, parse, parser_name)
        self._record(job, [completed, *outcome], [text, *texts])

    def release(self, job: Job, message: str) -> None:
        """Give a claim back so the next run takes it (``ClaimReleased``). A request that left and
        has no answer is recorded first as ``LLMCallLost``; a try marked sent that never left is
        named in the release, so the mark stands for nothing."""
        if job.deferred_claim is not None:  # a local call whose claim was never recorded: nothing to give back
            job.deferred_claim = None
            return
        events: list[DomainEvent] = []
        try_ = None
        if not job.local and job.sent_try > job.answered_try:
            reason = f"{message} before the answer arrived"
            events.append(self.lost.event(job, job.sent_try, reason, sent=True, worker=self.worker, sent_seq=None,
                                          prompt_chars=len(job.prompt or ""), query=self.ledger.query))
        elif not job.local and job.marked_try > job.answered_try:
            try_, reason = job.marked_try, f"{message} before the request left"
        else:
            reason = f"{message} before the call was sent"
        events.append(ClaimReleased(gen_id=job.gen.gen_id, attempt=job.attempt, call=job.call, reason=reason,
                                    try_=try_))
        self.writer.enqueue(WriteItem("result", job, events, []))


def cut_answer(text: str, limit: int) -> tuple[str, dict[str, Any] | None]:
    """An answer over ``limit`` bytes (UTF-8) cut there, and the marks saying so."""
    if len(text) * 4 <= limit:  # a character is at most 4 bytes: surely under the limit
        return text, None
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text, None
    kept = raw[:limit].decode("utf-8", errors="ignore")  # never half a character
    return kept, {"truncated": True, "original_bytes": len(raw), "original_chars": len(text),
                  "original_hash": text_hash(text), "max_response_bytes": limit}
