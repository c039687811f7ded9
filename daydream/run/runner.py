"""The runner: turns planned generations into prompts, LLM calls, parsed outputs and scores.

It loops until nothing is pending: find ready work in the ``gen_state`` projection, render the
prompt, claim the call (``PromptRendered`` + ``LLMCallStarted`` with a lease, appended only if the
generation is still unclaimed — a compare-and-set under the write lock), call the provider
concurrently within per-model limits, and hand the outcome to a single writer that appends it in
batches. A crash at any point loses nothing: a claim whose worker died (or whose lease expired) is
re-claimed by the next run, and a completed call is never repeated.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from jinja2 import StrictUndefined, TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from daydream import plugins
from daydream.design.catalog import recorded_models
from daydream.run.claims import iso_utc, worker_identity, worker_is_dead
from daydream.run.pacing import RateLimiter, model_limits, model_params
from daydream.run.pending import (COHORT_FILTER, GEN_COLUMNS, PENDING_SQL, RECLAIM_SQL, STAGE_ORDER,
                              pending_counts)
from daydream.contracts import CallFailed, CallRequest, CallResult, StageInput
from daydream.errors import DaydreamError, UsageError
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.design.scales import DEFAULT_SCALE, bind_scale

DEFAULT_CONCURRENCY = 16


# ----------------------------------------------------------------------------- options and stats
@dataclass
class RunOptions:
    """What ``daydream run`` was asked to do."""

    cohort: str | None = None
    stage: str | None = None
    limit: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    budget: float | None = None
    dry_run: bool = False
    replay_from: str | None = None
    timeout_s: float = float(os.environ.get("DAYDREAM_TIMEOUT_S", "300"))
    max_tries: int = 4
    retry_base_s: float = float(os.environ.get("DAYDREAM_RETRY_BASE_S", "1.0"))
    retry_cap_s: float = 60.0
    lease_s: float = float(os.environ.get("DAYDREAM_LEASE_S", "900"))
    batch_size: int = 500


@dataclass
class StageStats:
    """Live counters for one stage."""

    done: int = 0
    failed: int = 0
    pending: int = 0
    in_flight: int = 0


@dataclass
class RunStats:
    """What a run did; also the snapshot handed to the progress callback."""

    stages: dict[str, StageStats] = field(default_factory=lambda: defaultdict(StageStats))
    calls: int = 0
    failed_calls: int = 0
    tokens: int = 0
    spent_usd: float = 0.0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    copied: int = 0
    lost_claims: int = 0
    stopped_reason: str | None = None
    fatal_models: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    planned: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "stages": {k: vars(v) for k, v in sorted(self.stages.items(), key=lambda kv: STAGE_ORDER.get(kv[0], 9))},
            "calls": self.calls, "failed_calls": self.failed_calls, "tokens": self.tokens,
            "spent_usd": round(self.spent_usd, 6), "completed": self.completed, "failed": self.failed,
            "copied": self.copied, "stopped_reason": self.stopped_reason,
            "fatal_models": self.fatal_models, "elapsed_s": round(time.monotonic() - self.started, 3),
        }


# ----------------------------------------------------------------------------- ledger-side context
@dataclass
class Context:
    """Catalog knowledge the runner needs, read from the ledger (which is self-contained)."""

    models: dict[str, dict[str, Any]]
    concepts: dict[str, dict[str, Any]]
    combos: dict[str, dict[str, Any]]
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)  # by template hash (identity)

    @classmethod
    def load(cls, ledger: Ledger) -> "Context":
        # Models as planned: an id's identity is the one its first plan recorded, never what a
        # later catalog (another cohort's) says; prices and limits are the newest recorded.
        models = {mid: found.definition for mid, found in recorded_models(ledger).items()}
        concepts: dict[str, dict[str, Any]] = {}
        templates: dict[str, dict[str, Any]] = {}
        for event in ledger.events(type="CatalogImported"):  # later snapshots win
            for concept in event.payload.get("concepts", []):
                concepts[concept["id"]] = concept
            templates.update((t["hash"], t) for t in event.payload.get("templates", []) if t.get("hash"))
        combos = {cid: {"concept_ids": json.loads(ids), "level": level, "k": k}
                  for cid, ids, level, k in ledger.query("SELECT combo_id, concept_ids, level, k FROM combos")}
        return cls(models, concepts, combos, templates)

    def template_text_hash(self, template_hash: str | None) -> str | None:
        """Where a template's text is in ``texts``: its hash, unless a rubric's scale is part of it."""
        return self.templates.get(template_hash or "", {}).get("text_hash") or template_hash

    def template_scale(self, template_hash: str | None) -> tuple[int, int] | None:
        """The scale a template's scores are on, as its catalog snapshot records it (None: default)."""
        scale = self.templates.get(template_hash or "", {}).get("scale")
        return (int(scale[0]), int(scale[1])) if scale else None

    def concept_list(self, ledger: Ledger, combo_id: str | None, cache: dict[str, str]) -> list[dict[str, str]] | None:
        """[{id, name, content}] of a combo at its description level (falling back as catalogs do)."""
        if not combo_id or combo_id not in self.combos:
            return None
        combo = self.combos[combo_id]
        level = combo.get("level") or "paragraph"
        order = {"article": ["article", "paragraph", "sentence"], "paragraph": ["paragraph", "sentence"],
                 "sentence": ["sentence"]}.get(level, [level, "paragraph", "sentence"])
        found = []
        for cid in combo["concept_ids"]:
            concept = self.concepts.get(cid, {"id": cid, "name": cid, "levels": {}})
            levels = concept.get("levels") or {}
            content = None
            for lvl in order:
                h = levels.get(lvl)
                if h:
                    if h not in cache:
                        cache[h] = ledger.get_text(h) or ""
                    content = cache[h]
                    break
            found.append({"id": cid, "name": concept.get("name") or cid, "content": content or concept.get("name") or cid})
        return found


# ----------------------------------------------------------------------------- the runner
@dataclass
class _Job:
    gen: dict[str, Any]
    prompt: str | None = None
    prompt_hash: str | None = None
    attempt: int = 1
    call: int = 0


class _WriteItem:
    __slots__ = ("kind", "job", "events", "texts", "future", "observed")

    def __init__(self, kind: str, job: _Job, events: list[NewEvent], texts: list[str],
                 future: asyncio.Future | None = None, observed: tuple | None = None) -> None:
        self.kind = kind
        self.job = job
        self.events = events
        self.texts = texts
        self.future = future
        self.observed = observed


class Runner:
    """One ``daydream run``: construct, then ``await run()`` (or call ``run_sync()``)."""

    def __init__(self, ledger: Ledger, options: RunOptions,
                 progress: Callable[[RunStats, dict[str, dict[str, int]]], None] | None = None) -> None:
        if options.stage and options.stage not in plugins.stages().items:
            raise UsageError(f"--stage {options.stage!r} is not a stage (known: "
                             f"{', '.join(sorted(plugins.stages().items))})")
        self.ledger = ledger
        self.options = options
        self.progress = progress
        self.stats = RunStats()
        self.ctx = Context.load(ledger)
        self.stages = plugins.stages()
        self.parsers = plugins.parsers()
        self.worker = worker_identity()
        self.worker_json = json.dumps(self.worker, sort_keys=True, separators=(",", ":"))
        self.env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
        self._templates: dict[str, Any] = {}
        self._texts: dict[str, str] = {}
        self._providers: dict[str, Any] = {}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._claim_slots: dict[str, asyncio.Semaphore] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._in_flight: set[str] = set()
        self._stop = False
        self._queue: asyncio.Queue[_WriteItem] | None = None
        self._flushed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._reserved_usd = 0.0
        self._progress_at = 0.0
        self._unwritten = 0  # items handed to the writer and not yet committed
        self._writer_error: Exception | None = None

    # ------------------------------------------------------------------ public
    def run_sync(self) -> RunStats:
        """Run to completion in a fresh event loop."""
        return asyncio.run(self.run())

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop claiming new work (Ctrl-C); in-flight calls are released for the next run."""
        self._stop = True
        self.stats.stopped_reason = self.stats.stopped_reason or reason

    async def run(self) -> RunStats:
        """Process pending work until none is left, a limit is hit, or a stop is requested."""
        if self.options.dry_run:
            self.stats.planned = pending_counts(self.ledger, self.options.cohort, self.options.stage)
            return self.stats
        self._queue = asyncio.Queue()
        self._flushed = asyncio.Event()
        writer = asyncio.create_task(self._writer())
        try:
            await self._feed()
        except asyncio.CancelledError:
            self.request_stop("interrupted")
        finally:
            if self._stop:
                for task in list(self._tasks):
                    task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._queue.put(_WriteItem("end", _Job({}), [], []))
            await writer
            for provider in self._providers.values():
                closer = getattr(provider, "aclose", None)
                if closer:
                    try:
                        await closer()
                    except Exception:
                        pass
            self._report()
        if self._writer_error is not None:
            if isinstance(self._writer_error, DaydreamError):
                raise self._writer_error
            raise DaydreamError(f"could not record results in {self.ledger.path}: {self._writer_error}; "
                                "a plain re-run continues where this one stopped")
        return self.stats

    # ------------------------------------------------------------------ feeding
    def _query_pending(self, window: int) -> list[dict[str, Any]]:
        now = iso_utc(datetime.now(timezone.utc))
        cohort = COHORT_FILTER if self.options.cohort else ""
        params: dict[str, Any] = {"limit": window}
        if self.options.cohort:
            params["cohort"] = self.options.cohort
        names = [self.options.stage] if self.options.stage else sorted(
            self.stages.items, key=lambda n: (STAGE_ORDER.get(n, 9), n))
        rows: list[tuple] = []
        with self.ledger.engine.connect() as conn:
            reclaim_sql = RECLAIM_SQL.format(cohort=cohort, stage="AND g.stage = :stage" if self.options.stage else "")
            reclaim_params = {**params, "now": now, "host": f'%"host":"{self.worker["host"]}"%'}
            if self.options.stage:
                reclaim_params["stage"] = self.options.stage
            rows.extend(conn.exec_driver_sql(reclaim_sql, reclaim_params).fetchall())
            for name in names:
                if len(rows) >= window:
                    break
                rows.extend(conn.exec_driver_sql(PENDING_SQL.format(cohort=cohort),
                                                 {**params, "stage": name}).fetchall())
        found = []
        for row in rows:
            gen = dict(zip(GEN_COLUMNS, row))
            if gen["gen_id"] in self._in_flight:
                continue
            if gen["status"] == "running":
                expired = (gen["lease_until"] or "") < now
                if not expired and not worker_is_dead(gen["worker"]):
                    continue
            found.append(gen)
        return found

    def _capacity(self) -> int:
        return max(self.options.concurrency * 2, 64)

    async def _feed(self) -> None:
        assert self._flushed is not None
        while not self._stop:
            if self.options.limit is not None and self.stats.claimed >= self.options.limit:
                self.stats.stopped_reason = self.stats.stopped_reason or f"--limit {self.options.limit} reached"
                break
            room = self._capacity() - len(self._in_flight)
            started = 0
            if room > 0:
                for gen in self._query_pending(room + len(self._in_flight)):
                    if self._stop or len(self._in_flight) >= self._capacity():
                        break
                    if self.options.limit is not None and self.stats.claimed >= self.options.limit:
                        break
                    if gen["generator"] != "copy" and gen["model_id"] in self.stats.fatal_models:
                        continue
                    self._start(gen)
                    started += 1
            self._emit_progress()
            if not self._in_flight and started == 0 and self._unwritten == 0:
                # Nothing running, nothing waiting to be written, nothing startable: done (or only
                # work for stopped models is left).
                break
            self._flushed.clear()
            try:
                await asyncio.wait_for(self._flushed.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass

    def _start(self, gen: dict[str, Any]) -> None:
        job = _Job(gen, attempt=gen["attempt"] or 1)
        self._in_flight.add(gen["gen_id"])
        self.stats.claimed += 1
        self.stats.stages[gen["stage"]].in_flight += 1
        task = asyncio.create_task(self._process(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _budget_allows(self, gen: dict[str, Any]) -> bool:
        if self.options.budget is None:
            return True
        model = self.ctx.models.get(gen["model_id"] or "", {})
        price_in, price_out = model.get("price_in"), model.get("price_out")
        estimate = 0.0
        if price_in or price_out:
            _t, max_tokens = model_params(model, gen["stage"])
            estimate = (2000 * (price_in or 0) + (max_tokens or 2000) * (price_out or 0)) / 1e6
        if self.stats.spent_usd + self._reserved_usd + estimate > self.options.budget:
            return False
        self._reserved_usd += estimate
        gen["_reserved"] = estimate
        return True

    # ------------------------------------------------------------------ one generation
    def _text(self, h: str | None) -> str | None:
        if not h:
            return None
        if h not in self._texts:
            value = self.ledger.get_text(h)
            if value is None:
                return None
            if len(self._texts) > 20000:
                self._texts.clear()
            self._texts[h] = value
        return self._texts[h]

    def _render(self, job: _Job) -> str:
        gen = job.gen
        stage = self.stages.get(gen["stage"])
        template_text = self._text(self.ctx.template_text_hash(gen["template_hash"]))
        if template_text is None:
            raise _GenFailure("TemplateMissing",
                              f"template {gen['template_id']!r} (sha256 {str(gen['template_hash'])[:12]}…) is not in the ledger")
        compiled = self._templates.get(gen["template_hash"])
        if compiled is None:
            try:
                compiled = self.env.from_string(template_text)
            except JinjaTemplateError as exc:
                raise _GenFailure("TemplateError", f"template {gen['template_id']!r}: {exc}") from None
            self._templates[gen["template_hash"]] = compiled
        parent_text = self._text(gen["parent_parsed_hash"]) if gen["parent_gen_id"] else None
        source = StageInput(gen_id=gen["gen_id"],
                            combo_concepts=self.ctx.concept_list(self.ledger, gen["combo_id"], self._texts),
                            parent_parsed=parent_text, parent_stage=stage.parent_stage)
        try:
            return compiled.render(**stage.variables(source))
        except JinjaTemplateError as exc:
            raise _GenFailure("TemplateError", f"template {gen['template_id']!r} failed to render: {exc}") from None

    async def _process(self, job: _Job) -> None:
        gen = job.gen
        stage_stats = self.stats.stages[gen["stage"]]
        try:
            if gen["generator"] == "copy":
                await self._copy(job)
            else:
                await self._call(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a plugin must not kill the run: record it and go on
            await self._submit(_WriteItem("result", job, [NewEvent(f"gen:{gen['gen_id']}", "GenerationFailed", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "error_class": type(exc).__name__,
                "reason": f"internal error: {exc}"})], []))
        finally:
            stage_stats.in_flight -= 1
            self._in_flight.discard(gen["gen_id"])
            self._reserved_usd -= gen.get("_reserved", 0.0)

    async def _copy(self, job: _Job) -> None:
        gen = job.gen
        parent_text = self._text(gen["parent_parsed_hash"])
        stream = f"gen:{gen['gen_id']}"
        if parent_text is None:
            events = [NewEvent(stream, "GenerationFailed", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "error_class": "ParentMissing",
                "reason": "copy-mode generation has no parent text to copy"})]
            await self._submit(_WriteItem("result", job, events, [], observed=("planned", job.attempt)))
            return
        events = [NewEvent(stream, "ResponseParsed", {
            "gen_id": gen["gen_id"], "attempt": job.attempt, "parser": "copy",
            "parsed_hash": gen["parent_parsed_hash"], "chars": len(parent_text),
            "copied_from": gen["parent_gen_id"]})]
        await self._submit(_WriteItem("result", job, events, [], observed=("planned", job.attempt)))

    async def _claim(self, job: _Job) -> bool:
        gen = job.gen
        model = self.ctx.models.get(gen["model_id"] or "")
        stream = f"gen:{gen['gen_id']}"
        lease_until = iso_utc(datetime.now(timezone.utc) + timedelta(seconds=self.options.lease_s))
        job.call = 1
        events = [
            NewEvent(stream, "PromptRendered", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "prompt_hash": job.prompt_hash,
                "chars": len(job.prompt or ""), "template_id": gen["template_id"],
                "template_hash": gen["template_hash"]}),
            NewEvent(stream, "LLMCallStarted", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call,
                "model_id": gen["model_id"], "provider": self._provider_name(model),
                "provider_model": (model or {}).get("model"), "lease_until": lease_until,
                "worker": self.worker}),
        ]
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        await self._submit(_WriteItem("claim", job, events, [job.prompt or ""], future,
                                      observed=(gen["status"], job.attempt, gen["worker"])))
        return await future

    def _provider_name(self, model: dict[str, Any] | None) -> str:
        if self.options.replay_from:
            return "replay"
        return (model or {}).get("provider") or "openai"

    def _provider(self, model_id: str) -> Any:
        if model_id not in self._providers:
            model = self.ctx.models[model_id]
            name = self._provider_name(model)
            factory = plugins.providers().get(name)
            options: dict[str, Any] = {"timeout_s": self.options.timeout_s}
            if self.options.replay_from:
                options["replay_from"] = self.options.replay_from
            self._providers[model_id] = factory(model, **options)
        return self._providers[model_id]

    def _limits(self, model_id: str) -> tuple[asyncio.Semaphore, RateLimiter, asyncio.Semaphore]:
        if model_id not in self._sems:
            concurrency, rpm = model_limits(self.ctx.models.get(model_id, {}), self.options.concurrency)
            self._sems[model_id] = asyncio.Semaphore(concurrency)
            self._limiters[model_id] = RateLimiter(rpm)
            self._claim_slots[model_id] = asyncio.Semaphore(concurrency * 2)
        return self._sems[model_id], self._limiters[model_id], self._claim_slots[model_id]

    async def _call(self, job: _Job) -> None:
        gen = job.gen
        stream = f"gen:{gen['gen_id']}"
        model_id = gen["model_id"]
        if not model_id or model_id not in self.ctx.models:
            await self._submit(_WriteItem("result", job, [NewEvent(stream, "GenerationFailed", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "error_class": "UnknownModel",
                "reason": f"model {model_id!r} is not in any catalog snapshot of this ledger"})], [],
                observed=(gen["status"], job.attempt)))
            return
        try:
            job.prompt = self._render(job)
        except _GenFailure as failure:
            await self._submit(_WriteItem("result", job, [NewEvent(stream, "GenerationFailed", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "error_class": failure.error_class,
                "reason": failure.reason})], [], observed=(gen["status"], job.attempt)))
            return
        job.prompt_hash = text_hash(job.prompt)
        model = self.ctx.models[model_id]
        try:
            self._provider(model_id)  # fail early (bad base URL …) before claiming anything
        except DaydreamError as exc:
            self.stats.fatal_models[model_id] = str(exc)
            return
        sem, limiter, claim_slots = self._limits(model_id)
        temperature, max_tokens = model_params(model, gen["stage"])
        request = CallRequest(gen_id=gen["gen_id"], stage=gen["stage"], prompt=job.prompt, model_id=model_id,
                              provider_model=model.get("model") or model_id, temperature=temperature,
                              max_tokens=max_tokens, prompt_hash=job.prompt_hash)
        # Claim ahead of a free call slot (up to twice the model's concurrency), so the claim's round
        # trip through the writer overlaps the calls in flight instead of adding to each one.
        async with claim_slots:
            if self._stop or model_id in self.stats.fatal_models:
                return
            if not self._budget_allows(gen):
                self.request_stop(f"budget ${self.options.budget:.2f} reached")
                return
            if not await self._claim(job):
                return
            sent = False
            try:
                async with sem:
                    if self._stop or model_id in self.stats.fatal_models:
                        await self._release(job, "stopped before the call was sent", sent=False)
                        return
                    if self._over_budget(gen):
                        self.request_stop(f"budget ${self.options.budget:.2f} reached")
                        await self._release(job, "budget reached before the call was sent", sent=False)
                        return
                    sent = True
                    await self._attempts(job, request, model, limiter)
            except asyncio.CancelledError:
                if sent:
                    await self._release(job, "run interrupted before the answer arrived", sent=True)
                else:
                    await self._release(job, "run interrupted before the call was sent", sent=False)
                raise

    async def _attempts(self, job: _Job, request: CallRequest, model: dict[str, Any], limiter: RateLimiter) -> None:
        """Call until an answer, a non-retryable failure, or the retry limit; record every attempt."""
        gen = job.gen
        stream = f"gen:{gen['gen_id']}"
        model_id = gen["model_id"]
        provider = self._provider(model_id)
        tries = 0
        while True:
            tries += 1
            await limiter.wait()
            started = time.monotonic()
            try:
                result: CallResult = await self._complete_within_lease(provider, request)
            except CallFailed as failure:
                self.stats.failed_calls += 1
                self.stats.calls += 1
                fatal = failure.fatal_for_model
                give_up = fatal or not failure.retryable or tries >= self.options.max_tries or self._stop
                payload = {
                    "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call, "try": tries,
                    "model_id": model_id, "provider": self._provider_name(model),
                    "error_class": failure.error_class, "message": failure.message[:500],
                    "status": failure.status, "retryable": failure.retryable,
                    "latency_s": round(failure.latency_s if failure.latency_s is not None
                                       else time.monotonic() - started, 4),
                    "released": bool(fatal or (failure.retryable and self._stop)),
                }
                events = [NewEvent(stream, "LLMCallFailed", payload)]
                texts: list[str] = []
                if fatal:
                    self.stats.fatal_models.setdefault(model_id, failure.message)
                elif give_up and not payload["released"]:
                    reason = (f"gave up after {tries} tries: {failure.error_class}: {failure.message[:300]}"
                              if failure.retryable else f"{failure.error_class}: {failure.message[:300]}")
                    failed = {"gen_id": gen["gen_id"], "attempt": job.attempt, "error_class": failure.error_class,
                              "reason": reason}
                    if failure.raw_text:
                        failed["raw_hash"] = text_hash(failure.raw_text)
                        texts.append(failure.raw_text)
                    events.append(NewEvent(stream, "GenerationFailed", failed))
                await self._submit(_WriteItem("result", job, events, texts))
                if give_up:
                    return
                await asyncio.sleep(self._backoff(tries, failure.retry_after))
                continue
            break
        # A successful answer: record the call and what came of it in one transaction.
        self.stats.calls += 1
        self.stats.tokens += (result.prompt_tokens or 0) + (result.completion_tokens or 0)
        if result.cost_usd:
            self.stats.spent_usd += result.cost_usd
        stage = self.stages.get(gen["stage"])
        parser_name = gen["parser"] or "identity"
        completed = NewEvent(stream, "LLMCallCompleted", {
            "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call,
            "text_hash": text_hash(result.text), "chars": len(result.text),
            "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "cost_usd": result.cost_usd,
            "latency_s": round(result.latency_s, 4), "model_id": model_id, "provider": result.provider,
            "requested_model": result.requested_model, "resolved_model": result.resolved_model,
            "request_id": result.request_id, "offline": result.provider == "offline"})
        try:
            parse = self.parsers.get(parser_name)
        except DaydreamError as exc:
            outcome = [NewEvent(stream, "GenerationFailed", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "error_class": "UnknownParser",
                "reason": str(exc)})]
            texts = []
        else:
            if stage.scored:  # the parser reads scores on the rubric's scale
                parse = bind_scale(parse, self.ctx.template_scale(gen["template_hash"]) or DEFAULT_SCALE)
            outcome, texts = stage.outcome(gen, job.attempt, result.text, result.finish_reason, parse, parser_name)
        await self._submit(_WriteItem("result", job, [completed, *outcome], [result.text, *texts]))

    async def _complete_within_lease(self, provider: Any, request: CallRequest) -> CallResult:
        """One provider attempt, cut off before the claim's lease runs out.

        Providers time out per read, so a server that trickles bytes could hold a call for ever;
        past the lease another runner may take the claim over, so no call may outlive it.
        """
        deadline = max(1.0, self.options.lease_s * 0.9)
        try:
            return await asyncio.wait_for(provider.complete(request), timeout=deadline)
        except asyncio.TimeoutError:
            raise CallFailed("Timeout", f"no complete answer within {deadline:g}s (90% of the claim's lease)",
                             retryable=True, latency_s=deadline) from None

    def _backoff(self, tries: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), 600.0) + random.uniform(0, 0.05)
        base = self.options.retry_base_s * (2 ** (tries - 1))
        return min(base, self.options.retry_cap_s) * random.uniform(0.5, 1.0)

    async def _release(self, job: _Job, message: str, *, sent: bool) -> None:
        """Give a claim back so the next run takes it: ``ClaimReleased`` if nothing was sent, else
        an ``LLMCallFailed`` marked released (the call went out; its answer never came back)."""
        gen = job.gen
        stream = f"gen:{gen['gen_id']}"
        if sent:
            event = NewEvent(stream, "LLMCallFailed", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call, "try": 0,
                "model_id": gen["model_id"], "provider": None, "error_class": "Interrupted",
                "message": message, "status": None, "retryable": True, "latency_s": None, "released": True})
        else:
            event = NewEvent(stream, "ClaimReleased", {"gen_id": gen["gen_id"], "attempt": job.attempt,
                                                       "call": job.call, "reason": message})
        assert self._queue is not None
        self._unwritten += 1
        self._queue.put_nowait(_WriteItem("result", job, [event], []))

    def _over_budget(self, gen: dict[str, Any]) -> bool:
        if self.options.budget is None:
            return False
        return self.stats.spent_usd + gen.get("_reserved", 0.0) > self.options.budget

    # ------------------------------------------------------------------ the single writer
    async def _submit(self, item: _WriteItem) -> None:
        assert self._queue is not None
        self._unwritten += 1
        await self._queue.put(item)

    async def _writer(self) -> None:
        assert self._queue is not None and self._flushed is not None
        ending = False
        while not ending:
            first = await self._queue.get()
            items = [first]
            while len(items) < self.options.batch_size:
                try:
                    items.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            ending = any(i.kind == "end" for i in items)
            items = [i for i in items if i.kind != "end"]
            if ending:  # drain what is left
                while True:
                    try:
                        extra = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if extra.kind != "end":
                        items.append(extra)
            if items:
                try:
                    outcome = await asyncio.to_thread(self._write_batch, items)
                except Exception as exc:  # the ledger refused the batch: stop cleanly, say why
                    self._writer_error = self._writer_error or exc
                    self.request_stop(f"ledger write failed: {exc}")
                    outcome = [False] * len(items)
                finally:
                    self._unwritten -= len(items)
                for item, ok in zip(items, outcome):
                    if item.future is not None and not item.future.done():
                        item.future.set_result(ok)
                    if ok and item.kind == "result":
                        self._count(item)
            self._flushed.set()

    def _count(self, item: _WriteItem) -> None:
        stage = self.stats.stages[item.job.gen.get("stage", "?")]
        types = {e.type for e in item.events}
        if "ResponseParsed" in types:
            stage.done += 1
            self.stats.completed += 1
            if item.job.gen.get("generator") == "copy":
                self.stats.copied += 1
        elif types & {"GenerationFailed", "ParseFailed"}:
            stage.failed += 1
            self.stats.failed += 1

    def _write_batch(self, items: list[_WriteItem]) -> list[bool]:
        accepted: list[bool] = []

        def build(cur: sqlite3.Cursor) -> tuple[list[NewEvent], list[str]]:
            accepted.clear()
            events: list[NewEvent] = []
            texts: list[str] = []
            for item in items:
                ok = self._guard(cur, item)
                accepted.append(ok)
                if ok:
                    events.extend(item.events)
                    texts.extend(item.texts)
            return events, texts

        self.ledger.transact(build)
        for item, ok in zip(items, accepted):
            if not ok and item.kind == "result":
                self.stats.lost_claims += 1
        return list(accepted)

    def _guard(self, cur: sqlite3.Cursor, item: _WriteItem) -> bool:
        """Is this item still valid against the current projection? (a compare-and-set)"""
        gen_id = item.job.gen["gen_id"]
        row = cur.execute("SELECT status, attempt, worker FROM gen_state WHERE gen_id = ?", (gen_id,)).fetchone()
        if row is None:
            return False
        status, attempt, worker = row
        if attempt != item.job.attempt:
            return False
        if item.kind == "claim":
            observed_status, _attempt, observed_worker = item.observed
            if status == "planned":
                return True
            return status == "running" and observed_status == "running" and worker == observed_worker
        if item.observed is not None:  # results that need no claim (copy, render failures)
            return status in ("planned", "running") and (status != "running" or worker == self.worker_json
                                                         or worker_is_dead(worker))
        # Results of a call we claimed: only while the claim is still ours. If it was taken over
        # (our lease expired), the call still happened and was paid for: record it as superseded,
        # which the projections ignore, and drop what we made of it.
        if status != "running" or worker != self.worker_json:
            calls = [NewEvent(e.stream, e.type, {**e.payload, "superseded": True})
                     for e in item.events if e.type in ("LLMCallCompleted", "LLMCallFailed")]
            item.texts = item.texts[:1] if calls and calls[0].type == "LLMCallCompleted" else []
            item.events = calls
            return bool(calls)
        return True

    # ------------------------------------------------------------------ progress
    def _emit_progress(self) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._progress_at < 0.5:
            return
        self._progress_at = now
        counts = pending_counts(self.ledger, self.options.cohort, self.options.stage)
        for name, c in counts.items():
            self.stats.stages[name].pending = c["ready"] + c["blocked"]
        self.progress(self.stats, {})

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.stats, pending_counts(self.ledger, self.options.cohort, self.options.stage))


class _GenFailure(Exception):
    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


def run_cohort(ledger: Ledger, options: RunOptions,
               progress: Callable[[RunStats, dict[str, dict[str, int]]], None] | None = None) -> RunStats:
    """Run pending work to completion (the library entry point of ``daydream run``)."""
    return Runner(ledger, options, progress).run_sync()


def retry_generations(ledger: Ledger, gen_ids: list[str] | None = None, *, cohort: str | None = None,
                      stage: str | None = None, failed_only: bool = False, reason: str = "rerun requested"
                      ) -> list[str]:
    """Start a new attempt for the given generations (``GenerationRetried``); the old one stays."""
    from daydream.errors import NotFound

    def build(cur: sqlite3.Cursor) -> tuple[list[NewEvent], list[str]]:
        rows: list[tuple] = []
        if gen_ids:
            missing = []
            for gid in gen_ids:
                row = cur.execute("SELECT gen_id, attempt, status FROM gen_state WHERE gen_id = ?", (gid,)).fetchone()
                if row is None:
                    missing.append(gid)
                else:
                    rows.append(row)
            if missing:
                raise NotFound(f"no generation with id {', '.join(missing)} in this ledger")
        else:
            sql = "SELECT g.gen_id, g.attempt, g.status FROM gen_state g WHERE 1=1"
            params: list[Any] = []
            if cohort:
                sql += " AND g.gen_id IN (SELECT gen_id FROM cohort_members WHERE cohort_id = ?)"
                params.append(cohort)
            if stage:
                sql += " AND g.stage = ?"
                params.append(stage)
            rows = cur.execute(sql, params).fetchall()
        events = []
        for gid, attempt, status in rows:
            if status == "running" or status == "planned":
                continue  # nothing to retry: it has not finished its current attempt
            if failed_only and status != "failed":
                continue
            events.append(NewEvent(f"gen:{gid}", "GenerationRetried", {
                "gen_id": gid, "attempt": (attempt or 1) + 1, "previous_attempt": attempt or 1,
                "reason": reason}))
        return events, []

    stored = ledger.transact(build)
    return [e.payload["gen_id"] for e in stored]
