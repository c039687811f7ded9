"""The runner: turns planned generations into prompts, LLM calls, parsed outputs and scores.

It loops until nothing is pending: find ready work in the ``gen_state`` projection, render the
prompt, and with a call slot of the model in hand claim the call (``PromptRendered`` +
``LLMCallStarted``, appended only if the generation is still unclaimed — a compare-and-set under
the write lock). The claim is committed right before the first request leaves, and ``LLMCallSent``
before each retry (again only while the claim is ours), so every request is on record before it is
made: whoever takes over the claim of a dead worker records each sent-but-unanswered request as
``LLMCallLost`` (outcome unknown, cost estimated). Outcomes go to a single writer thread that
appends them in batches, claims first. A claim is live while its worker's heartbeat is recent
(``daydream.run.claims``): a claim whose worker died is taken over after a short grace, whatever host
made it, and a completed call is never repeated. The writer also keeps the write-ahead log
bounded (``daydream.run.checkpoints``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from jinja2 import StrictUndefined, TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from daydream import plugins
from daydream.design.catalog import recorded_models
from daydream.run import claims
from daydream.run.checkpoints import WAL_CHECKPOINT_BYTES, WalKeeper
from daydream.run.claims import iso_utc, worker_identity, worker_is_dead
from daydream.read.failures import FailureGroup
from daydream.run.pacing import RateLimiter, model_limits, model_params
from daydream.run.pending import (COHORT_FILTER, GEN_COLUMNS, PENDING_SQL, RECLAIM_SQL, STAGE_ORDER,
                              pending_counts)
from daydream.contracts import CallFailed, CallRequest, CallResult, StageInput
from daydream.errors import DaydreamError, UsageError
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.design.scales import DEFAULT_SCALE, bind_scale

DEFAULT_CONCURRENCY = 16
# Write items that hold up a request (claims, sent marks), and how many other items the writer
# commits in one transaction before it looks for those again.
_URGENT = ("claim", "sent")
_CHUNK = 100
DEFAULT_MAX_RESPONSE_BYTES = 1_000_000
# A model whose calls fail this many generations in a row (after their retries), with no success in
# between, is stopped for the run: its endpoint is down or refuses everything, and its remaining
# work stays pending instead of being failed one generation at a time.
DEFAULT_FAILURE_STREAK = 5


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
    # The longest one call may take (it is cut off at 90%), and the lease of a claim whose worker
    # has no heartbeat row; a live worker's claims are kept by its heartbeat instead.
    lease_s: float = float(os.environ.get("DAYDREAM_LEASE_S", "900"))
    # Seconds without a heartbeat after which this worker's claims may be taken over.
    claim_grace_s: float = claims.DEFAULT_GRACE_S
    # Seconds between heartbeats (None: a fifth of the grace, at most 10 s).
    heartbeat_s: float | None = None
    max_response_bytes: int = int(os.environ.get("DAYDREAM_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES))
    failure_streak: int = DEFAULT_FAILURE_STREAK
    wal_checkpoint_bytes: int = WAL_CHECKPOINT_BYTES
    batch_size: int = 500

    def heartbeat_interval(self) -> float:
        """Seconds between two heartbeats of this run."""
        if self.heartbeat_s is not None:
            return self.heartbeat_s
        return max(0.05, min(self.claim_grace_s / 5, 10.0))


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
    # Generations of this run that failed, by (reason, stage, model).
    failures: dict[tuple[str, str, str | None], FailureGroup] = field(default_factory=dict)
    # Requests recorded as lost by this run (taken-over claims of dead workers, interrupted calls).
    lost_calls: int = 0
    lost_estimated_usd: float = 0.0
    lost_unestimated: int = 0
    taken_over: int = 0
    truncated: int = 0
    replay_misses: int = 0
    replay_miss_example: str | None = None
    waited_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "stages": {k: vars(v) for k, v in sorted(self.stages.items(), key=lambda kv: STAGE_ORDER.get(kv[0], 9))},
            "calls": self.calls, "failed_calls": self.failed_calls, "tokens": self.tokens,
            "spent_usd": round(self.spent_usd, 6), "completed": self.completed, "failed": self.failed,
            "copied": self.copied, "stopped_reason": self.stopped_reason,
            "fatal_models": self.fatal_models, "elapsed_s": round(time.monotonic() - self.started, 3),
            "failures": [g.as_dict() for g in self.failure_groups()],
            "lost_calls": self.lost_calls, "lost_estimated_usd": round(self.lost_estimated_usd, 6),
            "lost_without_estimate": self.lost_unestimated,
            "taken_over": self.taken_over, "truncated_responses": self.truncated,
            "replay_misses": self.replay_misses, "waited_for_other_workers_s": round(self.waited_s, 1),
        }

    def failure_groups(self) -> list[FailureGroup]:
        """This run's failures, largest group first."""
        return sorted(self.failures.values(), key=lambda g: (-g.count, g.stage, g.error_class))

    def record_failure(self, error_class: str, gen: dict[str, Any], reason: str, cohort: str | None) -> None:
        """Count one failed generation of this run under its reason, stage and model."""
        key = (error_class, gen.get("stage") or "?", gen.get("model_id"))
        self.failures.setdefault(key, FailureGroup(*key)).add(gen.get("gen_id", "?"), reason, cohort)


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
    local: bool = False      # the provider reaches no one (offline, replay): no LLMCallSent
    marked_try: int = 0      # the last try whose LLMCallSent was handed to the writer
    sent_try: int = 0        # the last try whose request was handed to the provider
    answered_try: int = 0    # the last try whose outcome was handed to the writer


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
    """One ``daydream run``: construct, then ``await run()`` (or call ``run_sync()``).

    ``progress`` gets the live statistics; ``notice`` gets one-line messages a person should see
    even without a progress display (waiting for other workers, claims taken over).
    """

    def __init__(self, ledger: Ledger, options: RunOptions,
                 progress: Callable[[RunStats, dict[str, dict[str, int]]], None] | None = None,
                 notice: Callable[[str], None] | None = None) -> None:
        if options.stage and options.stage not in plugins.stages().items:
            raise UsageError(f"--stage {options.stage!r} is not a stage (known: "
                             f"{', '.join(sorted(plugins.stages().items))})")
        self.ledger = ledger
        self.options = options
        self.progress = progress
        self.notice = notice
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
        self._limiters: dict[str, RateLimiter] = {}
        self._in_flight: set[str] = set()
        # Generations whose result is queued for the writer and not yet committed: the pending query
        # still shows them as pending, so they must not be started again meanwhile.
        self._writing: set[str] = set()
        self._skipped: set[str] = set()  # left alone for the rest of this run (replay misses)
        self._streak: dict[str, int] = defaultdict(int)  # model -> generations failed in a row
        self._estimates: dict[tuple[str, str], tuple[int | None, int]] = {}
        self._stop = False
        self._flushed: asyncio.Event | None = None
        self._tasks: set[asyncio.Task] = set()
        self._reserved_usd = 0.0
        self._progress_at = 0.0
        self._unwritten = 0  # items handed to the writer and not yet committed
        # What the writer thread has to write: claims and sent marks first, then the rest.
        self._urgent: deque[_WriteItem] = deque()
        self._inbox: deque[_WriteItem] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._write_failed: Exception | None = None
        self._writer_error: Exception | None = None
        self._wal = WalKeeper(ledger, options.wal_checkpoint_bytes)
        # Takeovers of the batch being written (writer thread): said once it is committed.
        self._batch_takeovers: dict[tuple[str, str], list[Any]] = {}
        self._waiting_since: float | None = None
        self._waiting_said = (0.0, -1)

    # ------------------------------------------------------------------ public
    def run_sync(self) -> RunStats:
        """Run to completion in a fresh event loop."""
        return asyncio.run(self.run())

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop claiming new work (Ctrl-C); in-flight calls are released for the next run."""
        self._stop = True
        self.stats.stopped_reason = self.stats.stopped_reason or reason
        if self._flushed is not None:
            self._flushed.set()  # the feed loop notices at once

    async def run(self) -> RunStats:
        """Process pending work until none is left, a limit is hit, or a stop is requested."""
        if self.options.dry_run:
            self.stats.planned = pending_counts(self.ledger, self.options.cohort, self.options.stage)
            return self.stats
        if self.options.replay_from:
            await self._check_replay_source()  # before anything is claimed or recorded
        self.ledger.transact(lambda cur: (claims.register_worker(cur, self.worker, self.options.claim_grace_s),
                                          ([], []))[1])
        self._flushed = asyncio.Event()
        loop = asyncio.get_running_loop()
        writer_done: asyncio.Future = loop.create_future()
        writer = threading.Thread(target=self._writer_thread, args=(loop, writer_done),
                                  name="daydream-writer", daemon=True)
        writer.start()
        heart = asyncio.create_task(self._heartbeat())
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
            heart.cancel()
            await asyncio.gather(heart, return_exceptions=True)
            with self._wake:
                self._closing = True
                self._wake.notify()
            await writer_done  # everything handed to the writer is written and reported
            for provider in self._providers.values():
                closer = getattr(provider, "aclose", None)
                if closer:
                    try:
                        await closer()
                    except Exception:
                        pass
            self._finish_worker()
            self._report()
        if self._writer_error is not None:
            if isinstance(self._writer_error, DaydreamError):
                raise self._writer_error
            raise DaydreamError(f"could not record results in {self.ledger.path}: {self._writer_error}; "
                                "a plain re-run continues where this one stopped")
        return self.stats

    async def _check_replay_source(self) -> None:
        """Open the ledger to replay once, up front: a file that is not a ledger, or a ledger with no
        recorded answer, is one clear error before anything is claimed (not thousands of failures)."""
        factory = plugins.providers().get("replay")
        provider = factory({"id": "(replay check)"}, replay_from=self.options.replay_from)
        try:
            check = getattr(provider, "check_source", None)
            if check is not None:
                check()
        finally:
            closer = getattr(provider, "aclose", None)
            if closer:
                await closer()

    def _finish_worker(self) -> None:
        """Say this worker stopped (its claims are finished or released) and fold the log back."""
        try:
            self.ledger.transact(lambda cur: (claims.stop_worker(cur, self.worker["run"]), ([], []))[1])
        except Exception:
            pass  # a ledger that refuses writes (disk full) already stopped the run and said why
        self._wal.truncate()

    def _say(self, message: str) -> None:
        if self.notice is not None:
            self.notice(message)

    # ------------------------------------------------------------------ feeding
    def _scope(self) -> tuple[str, dict[str, Any]]:
        sql, params = "", {}
        if self.options.cohort:
            sql += " " + COHORT_FILTER
            params["cohort"] = self.options.cohort
        if self.options.stage:
            sql += " AND g.stage = :stage"
            params["stage"] = self.options.stage
        return sql, params

    def _startable(self, gen: dict[str, Any]) -> bool:
        if gen["gen_id"] in self._in_flight or gen["gen_id"] in self._writing or gen["gen_id"] in self._skipped:
            return False
        return gen["generator"] == "copy" or gen["model_id"] not in self.stats.fatal_models

    def _query_pending(self, wanted: int) -> list[dict[str, Any]]:
        """Up to ``wanted`` startable generations: claims to take over first, then ready work."""
        now = iso_utc(datetime.now(timezone.utc))
        cohort = COHORT_FILTER if self.options.cohort else ""
        # Pages are big enough to step over what this run already has in hand in one go.
        page = wanted + len(self._in_flight) + len(self._writing)
        params: dict[str, Any] = {"limit": page}
        if self.options.cohort:
            params["cohort"] = self.options.cohort
        names = [self.options.stage] if self.options.stage else sorted(
            self.stages.items, key=lambda n: (STAGE_ORDER.get(n, 9), n))
        found: list[dict[str, Any]] = []
        with self.ledger.backend.read() as conn:
            reclaim_sql = RECLAIM_SQL.format(cohort=cohort, stage="AND g.stage = :stage" if self.options.stage else "")
            reclaim_params = {**params, "now": now, "local": claims.local_claims_pattern(self.worker),
                              "run": self.worker["run"]}
            if self.options.stage:
                reclaim_params["stage"] = self.options.stage
            for row in conn.execute(reclaim_sql, reclaim_params).fetchall():
                gen = dict(zip(GEN_COLUMNS, row))
                if self._startable(gen) and self._takeable(row[len(GEN_COLUMNS):], gen):
                    found.append(gen)
            for name in names:
                # Page on in plan order past generations this run leaves alone (in hand, a
                # stopped model, replay misses), so work behind them is still reached.
                after = 0
                while len(found) < wanted:
                    rows = conn.execute(PENDING_SQL.format(cohort=cohort),
                                                {**params, "stage": name, "after": after}).fetchall()
                    for row in rows:
                        gen = dict(zip(GEN_COLUMNS, row))
                        after = gen["planned_seq"]
                        if self._startable(gen):
                            found.append(gen)
                    if len(rows) < page:
                        break
                if len(found) >= wanted:
                    break
        return found[:wanted]

    def _takeable(self, liveness: tuple, gen: dict[str, Any]) -> bool:
        """A running claim returned by RECLAIM_SQL: stale heartbeat, expired lease, or a local pid."""
        stale, expired = liveness
        return bool(stale or expired or worker_is_dead(gen["worker"]))

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
                for gen in self._query_pending(room):
                    if self._stop or len(self._in_flight) >= self._capacity():
                        break
                    if self.options.limit is not None and self.stats.claimed >= self.options.limit:
                        break
                    if not self._startable(gen):
                        continue
                    self._start(gen)
                    started += 1
            self._emit_progress()
            if not self._in_flight and started == 0 and self._unwritten == 0:
                # Nothing running, nothing waiting to be written, nothing startable: done — unless
                # live workers elsewhere hold claims of this scope (their children may follow).
                if not self._wait_for_others():
                    break
            else:
                self._end_wait()
            self._flushed.clear()
            try:
                await asyncio.wait_for(self._flushed.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass

    def _wait_for_others(self) -> bool:
        """True (and say so, now and then) while other live workers hold claims of this scope."""
        scope, params = self._scope()
        with self.ledger.backend.read() as conn:
            held = claims.held_elsewhere(conn, self.worker["run"], scope,
                                         {**params, "now": iso_utc(datetime.now(timezone.utc))})
        if not held.claims:
            self._end_wait()
            return False
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        said_at, said_n = self._waiting_said
        if held.claims != said_n or now - said_at >= 30:
            self._waiting_said = (now, held.claims)
            beat = f"; last heartbeat {held.beat_age_s:.0f} s ago" if held.beat_age_s is not None else ""
            takeover = (f"; if they stopped now they would be taken over within {held.takeover_in_s:.0f} s"
                        if held.takeover_in_s is not None else "")
            waited = f"; waited {now - self._waiting_since:.0f} s so far" if now - self._waiting_since >= 1 else ""
            self._say(f"waiting for {held.claims} claim(s) held by other workers "
                      f"({', '.join(held.workers)}{beat}){takeover}{waited}")
        return True

    def _end_wait(self) -> None:
        if self._waiting_since is not None:
            self.stats.waited_s += time.monotonic() - self._waiting_since
            self._waiting_since = None
            self._waiting_said = (0.0, -1)

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

    async def _heartbeat(self) -> None:
        """Keep this worker's claims live: a heartbeat through the writer at a fixed interval."""
        interval = self.options.heartbeat_interval()
        while True:
            await asyncio.sleep(interval)
            await self._submit(_WriteItem("beat", _Job({}), [], []))

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
        job.marked_try = 0 if job.local else 1
        events = [
            NewEvent(stream, "PromptRendered", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "prompt_hash": job.prompt_hash,
                "chars": len(job.prompt or ""), "template_id": gen["template_id"],
                "template_hash": gen["template_hash"]}),
            NewEvent(stream, "LLMCallStarted", {
                "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call,
                "model_id": gen["model_id"], "provider": self._provider_name(model),
                "provider_model": (model or {}).get("model"), "lease_until": lease_until,
                "worker": self.worker, "sends_marked": not job.local}),
        ]
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        await self._submit(_WriteItem("claim", job, events, [job.prompt or ""], future,
                                      observed=(gen["status"], job.attempt, gen["worker"])))
        return await future

    async def _mark_sent(self, job: _Job, try_: int) -> bool:
        """Commit ``LLMCallSent`` for this try before its request leaves; False when the claim is no
        longer ours (taken over), in which case nothing must be sent."""
        gen = job.gen
        job.marked_try = try_
        event = NewEvent(f"gen:{gen['gen_id']}", "LLMCallSent", {
            "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call, "try": try_,
            "model_id": gen["model_id"], "provider": self._provider_name(self.ctx.models.get(gen["model_id"]))})
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._submit(_WriteItem("sent", job, [event], [], future))
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
            options: dict[str, Any] = {"timeout_s": self.options.timeout_s,
                                       "max_response_bytes": self.options.max_response_bytes}
            if self.options.replay_from:
                options["replay_from"] = self.options.replay_from
            self._providers[model_id] = factory(model, **options)
        return self._providers[model_id]

    def _limits(self, model_id: str) -> tuple[asyncio.Semaphore, RateLimiter]:
        if model_id not in self._sems:
            concurrency, rpm = model_limits(self.ctx.models.get(model_id, {}), self.options.concurrency)
            self._sems[model_id] = asyncio.Semaphore(concurrency)
            self._limiters[model_id] = RateLimiter(rpm)
        return self._sems[model_id], self._limiters[model_id]

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
            provider = self._provider(model_id)  # fail early (bad base URL …) before claiming anything
        except DaydreamError as exc:
            self.stats.fatal_models[model_id] = str(exc)
            return
        job.local = bool(getattr(provider, "local", False))
        sem, limiter = self._limits(model_id)
        temperature, max_tokens = model_params(model, gen["stage"])
        request = CallRequest(gen_id=gen["gen_id"], stage=gen["stage"], prompt=job.prompt, model_id=model_id,
                              provider_model=model.get("model") or model_id, temperature=temperature,
                              max_tokens=max_tokens, prompt_hash=job.prompt_hash)
        has_answer = getattr(provider, "has_answer", None)
        if has_answer is not None and not has_answer(request):
            # Replaying, and the other ledger has no answer for this prompt: leave it pending for a
            # run that calls the model, and record nothing.
            self.stats.replay_misses += 1
            self.stats.replay_miss_example = self.stats.replay_miss_example or gen["gen_id"]
            self._skipped.add(gen["gen_id"])
            return
        # Claim only with a call slot in hand and the rate limit passed: the claim is also the
        # record that the first request is about to leave (a claim waiting for a slot would be a
        # call that was never made), and other runners may take what this one is not sending.
        async with sem:
            if self._stop or model_id in self.stats.fatal_models:
                return
            if not self._budget_allows(gen):
                self.request_stop(f"budget ${self.options.budget:.2f} reached")
                return
            await limiter.wait()
            if self._stop:
                return
            try:
                if not await self._claim(job):
                    return
                await self._attempts(job, request, model, limiter)
            except asyncio.CancelledError:
                if job.call:
                    await self._release(job, "run interrupted")
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
            if tries > 1:  # the first request was announced by the claim itself
                await limiter.wait()
                if not job.local and not await self._mark_sent(job, tries):
                    return  # the claim was taken over: whoever holds it now makes the call
            job.sent_try = tries
            started = time.monotonic()
            try:
                result: CallResult = await self._complete_within_lease(provider, request)
            except CallFailed as failure:
                job.answered_try = tries
                self.stats.failed_calls += 1
                self.stats.calls += 1
                fatal = failure.fatal_for_model
                give_up = fatal or not failure.retryable or tries >= self.options.max_tries or self._stop
                # Another call of this model already showed the endpoint is unusable: hand the
                # generation back instead of failing it too.
                stopped = model_id in self.stats.fatal_models and give_up
                payload = {
                    "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call, "try": tries,
                    "model_id": model_id, "provider": self._provider_name(model),
                    "error_class": failure.error_class, "message": failure.message[:500],
                    "status": failure.status, "retryable": failure.retryable,
                    "latency_s": round(failure.latency_s if failure.latency_s is not None
                                       else time.monotonic() - started, 4),
                    "released": bool(fatal or stopped or (failure.retryable and self._stop)),
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
                    self._note_give_up(model_id, failure, tries)
                await self._submit(_WriteItem("result", job, events, texts))
                if give_up:
                    return
                await asyncio.sleep(self._backoff(tries, failure.retry_after))
                continue
            break
        # A successful answer: record the call and what came of it in one transaction.
        job.answered_try = tries
        self._streak[model_id] = 0
        self.stats.calls += 1
        self.stats.tokens += (result.prompt_tokens or 0) + (result.completion_tokens or 0)
        if result.cost_usd:
            self.stats.spent_usd += result.cost_usd
        text, cut = self._cut(result.text)
        stage = self.stages.get(gen["stage"])
        parser_name = gen["parser"] or "identity"
        call = {
            "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call, "try": tries,
            "text_hash": text_hash(text), "chars": len(text),
            "finish_reason": result.finish_reason, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens, "cost_usd": result.cost_usd,
            "latency_s": round(result.latency_s, 4), "model_id": model_id, "provider": result.provider,
            "requested_model": result.requested_model, "resolved_model": result.resolved_model,
            "request_id": result.request_id, "offline": result.provider == "offline"}
        if cut is not None:
            call.update(cut)
            self.stats.truncated += 1
        completed = NewEvent(stream, "LLMCallCompleted", call)
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
            outcome, texts = stage.outcome(gen, job.attempt, text, result.finish_reason, parse, parser_name)
        await self._submit(_WriteItem("result", job, [completed, *outcome], [text, *texts]))

    def _cut(self, text: str) -> tuple[str, dict[str, Any] | None]:
        """An answer over ``max_response_bytes`` (UTF-8) cut there, and the marks saying so."""
        limit = self.options.max_response_bytes
        if len(text) * 4 <= limit:  # a character is at most 4 bytes: surely under the limit
            return text, None
        raw = text.encode("utf-8")
        if len(raw) <= limit:
            return text, None
        kept = raw[:limit].decode("utf-8", errors="ignore")  # never half a character
        return kept, {"truncated": True, "original_bytes": len(raw), "original_chars": len(text),
                      "original_hash": text_hash(text), "max_response_bytes": limit}

    def _note_give_up(self, model_id: str, failure: CallFailed, tries: int) -> None:
        """Count a generation whose call failed for good; stop the model after a streak of them."""
        self._streak[model_id] += 1
        streak = self._streak[model_id]
        if streak >= self.options.failure_streak and model_id not in self.stats.fatal_models:
            after = f" after {tries} tries each" if failure.retryable else ""
            self.stats.fatal_models[model_id] = (
                f"{streak} generations in a row failed{after} with no success in between (last: "
                f"{failure.error_class}: {failure.message[:200]}); the endpoint looks down or refuses "
                "every request")

    async def _complete_within_lease(self, provider: Any, request: CallRequest) -> CallResult:
        """One provider attempt, cut off before the claim's lease runs out.

        Providers time out per read, so a server that trickles bytes could hold a call for ever;
        no call may outlive the lease its claim was given.
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

    def _lost_event(self, job: _Job, try_: int, reason: str, *, sent: bool | None, worker: dict[str, Any],
                    sent_seq: int | None, prompt_chars: int | None, query: Any) -> NewEvent:
        """``LLMCallLost``: a request that (maybe) left and whose outcome will never be known."""
        gen = job.gen
        model = self.ctx.models.get(gen["model_id"] or "") or {"id": gen["model_id"]}
        _t, max_tokens = model_params(model, gen["stage"])
        estimate = claims.estimate_lost_cost(query, model, gen["stage"], prompt_chars, max_tokens, self._estimates)
        return NewEvent(f"gen:{gen['gen_id']}", "LLMCallLost", {
            "gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call, "try": try_,
            "model_id": gen["model_id"], "provider": self._provider_name(model), "sent": sent,
            "sent_seq": sent_seq, "worker": worker, "reason": reason, **estimate})

    async def _release(self, job: _Job, message: str) -> None:
        """Give a claim back so the next run takes it (``ClaimReleased``). A request that left and
        has no answer is recorded first as ``LLMCallLost``; a try marked sent that never left is
        named in the release, so the mark stands for nothing."""
        gen = job.gen
        stream = f"gen:{gen['gen_id']}"
        events: list[NewEvent] = []
        release = {"gen_id": gen["gen_id"], "attempt": job.attempt, "call": job.call, "reason": message}
        if not job.local and job.sent_try > job.answered_try:
            events.append(self._lost_event(
                job, job.sent_try, f"{message} before the answer arrived", sent=True, worker=self.worker,
                sent_seq=None, prompt_chars=len(job.prompt or ""), query=self.ledger.query))
            release["reason"] = f"{message} before the answer arrived"
        elif not job.local and job.marked_try > job.answered_try:
            release["try"] = job.marked_try
            release["reason"] = f"{message} before the request left"
        else:
            release["reason"] = f"{message} before the call was sent"
        events.append(NewEvent(stream, "ClaimReleased", release))
        self._enqueue(_WriteItem("result", job, events, []))

    # ------------------------------------------------------------------ the single writer
    # One thread writes everything this run records. The event loop hands it items (``_submit``)
    # and is handed back, through ``call_soon_threadsafe``, what was committed (``_written``):
    # a claim is written as soon as the thread is free, without waiting for the loop to schedule
    # anything, which is what keeps the commit that precedes every request short.
    async def _submit(self, item: _WriteItem) -> None:
        self._enqueue(item)

    def _enqueue(self, item: _WriteItem) -> None:
        self._unwritten += 1
        if item.kind == "result" and item.job.gen:
            self._writing.add(item.job.gen["gen_id"])
        with self._wake:
            # A claim or a sent mark holds up a request: it goes before any result.
            (self._urgent if item.kind in _URGENT else self._inbox).append(item)
            self._wake.notify()

    def _writer_thread(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future) -> None:
        try:
            while True:
                with self._wake:
                    while not (self._urgent or self._inbox or self._closing):
                        self._wake.wait()
                    if self._closing and not (self._urgent or self._inbox):
                        break
                try:
                    self._write_some(loop)
                except Exception as exc:  # noqa: BLE001 - a bug, not a refusal: stop the run cleanly
                    self._write_failed = self._write_failed or exc
                    loop.call_soon_threadsafe(self._written, [], [], exc, {})
        finally:
            loop.call_soon_threadsafe(_resolve, done, True)

    def _write_some(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write every urgent item, then one chunk of the others; report each batch to the loop."""
        for urgent in (True, False):
            source = self._urgent if urgent else self._inbox
            batch: list[_WriteItem] = []
            while source and len(batch) < (self.options.batch_size if urgent else _CHUNK):
                batch.append(source.popleft())
            if not batch:
                continue
            error: Exception | None = None
            outcome = [False] * len(batch)
            takeovers: dict[tuple[str, str], list[Any]] = {}
            if self._write_failed is None:
                try:
                    outcome = self._write_batch(batch, takeovers)
                except Exception as exc:  # noqa: BLE001 - the ledger refused it: the loop stops the run
                    self._write_failed = error = exc
            loop.call_soon_threadsafe(self._written, batch, outcome, error, takeovers)
        # Between two of the writer's own commits, once the waiters of this round were woken: the
        # only place a checkpoint lets the log start over (one beside a busy writer never catches up).
        self._wal.after_commit()

    def _written(self, batch: list[_WriteItem], outcome: list[bool], error: Exception | None,
                 takeovers: dict[tuple[str, str], list[Any]]) -> None:
        """In the loop: wake the waiters of a committed batch and count what it recorded."""
        if error is not None:
            self._writer_error = self._writer_error or error
            self.request_stop(f"ledger write failed: {error}")
        self._unwritten -= len(batch)
        for item, ok in zip(batch, outcome):
            if item.kind == "result" and item.job.gen:
                self._writing.discard(item.job.gen["gen_id"])
            if item.future is not None and not item.future.done():
                item.future.set_result(ok)
            if ok and item.kind in ("result", "claim"):
                self._count(item)
        for (who, reason), (n, lost, cost, unpriced) in takeovers.items():
            line = f"took over {n} claim(s) of {who}: {reason}"
            if lost:
                priced = f"est. ${cost:.4f}" + (f", {unpriced} without an estimate" if unpriced else "")
                line += (f"; {lost} request(s) it had sent have no answer: recorded as lost "
                         f"(outcome unknown, {priced})")
            self._say(line)
        if self._flushed is not None:
            self._flushed.set()

    def _count(self, item: _WriteItem) -> None:
        for event in item.events:
            if event.type == "LLMCallLost":
                self.stats.lost_calls += 1
                estimate = event.payload.get("estimated_cost_usd")
                self.stats.lost_estimated_usd += estimate or 0.0
                self.stats.lost_unestimated += estimate is None
        if item.kind != "result":
            return
        gen = item.job.gen
        stage = self.stats.stages[gen.get("stage", "?")]
        for event in item.events:
            if event.type == "ResponseParsed":
                stage.done += 1
                self.stats.completed += 1
                if gen.get("generator") == "copy":
                    self.stats.copied += 1
                break
            if event.type in ("GenerationFailed", "ParseFailed"):
                stage.failed += 1
                self.stats.failed += 1
                error_class = "ParseFailed" if event.type == "ParseFailed" else (
                    event.payload.get("error_class") or "Unknown")
                self.stats.record_failure(error_class, gen, event.payload.get("reason") or "", self.options.cohort)
                break

    def _write_batch(self, items: list[_WriteItem], takeovers: dict[tuple[str, str], list[Any]]) -> list[bool]:
        """Append what is still valid of ``items`` in one transaction (writer thread); fills
        ``takeovers`` with (worker, reason) -> [claims, lost requests, estimate, unestimated]."""
        accepted: list[bool] = []

        def build(cur: sqlite3.Cursor) -> tuple[list[NewEvent], list[str]]:
            accepted.clear()
            takeovers.clear()
            self._batch_takeovers = takeovers
            events: list[NewEvent] = []
            texts: list[str] = []
            beat = False
            for item in items:
                if item.kind == "beat":
                    beat = True
                    accepted.append(True)
                    continue
                ok = self._guard(cur, item)
                accepted.append(ok)
                if ok:
                    events.extend(item.events)
                    texts.extend(item.texts)
            if beat:
                claims.beat(cur, self.worker["run"])
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
            if (status == "running" and observed_status == "running" and worker == observed_worker
                    and claims.still_takeable(cur, worker)):
                self._take_over(cur, item, worker)
                return True
            return False
        if item.kind == "sent":  # a request may leave only while the claim is ours
            return status == "running" and worker == self.worker_json
        if item.observed is not None:  # results that need no claim (copy, render failures)
            return status in ("planned", "running") and (status != "running" or worker == self.worker_json
                                                         or worker_is_dead(worker))
        # Results of a call we claimed: only while the claim is still ours. If it was taken over
        # (our heartbeat stopped), the call still happened and was paid for: record it as
        # superseded, which the projections ignore, and drop what we made of it.
        if status != "running" or worker != self.worker_json:
            calls = [NewEvent(e.stream, e.type, {**e.payload, "superseded": True,
                                                 **self._answers_lost(cur, item.job, e.payload)})
                     for e in item.events if e.type in ("LLMCallCompleted", "LLMCallFailed")]
            item.texts = item.texts[:1] if calls and calls[0].type == "LLMCallCompleted" else []
            item.events = calls
            return bool(calls)
        return True

    def _take_over(self, cur: sqlite3.Cursor, item: _WriteItem, worker_json: str | None) -> None:
        """Our claim replaces a dead worker's: record each request it sent and never saw answered
        as ``LLMCallLost`` (before our ``LLMCallStarted``, in the same transaction) and number our
        call after its own."""
        job = item.job
        found = claims.abandoned_claim(cur, job.gen["gen_id"], job.attempt)
        try:
            old_worker = json.loads(worker_json) if worker_json else {}
        except ValueError:
            old_worker = {}
        reason = claims.takeover_reason(cur, old_worker)
        self.stats.taken_over += 1
        lost: list[NewEvent] = []
        if found is not None:
            saved_call, job.call = job.call, found.call
            for request in found.unanswered:
                lost.append(self._lost_event(
                    job, request["try"], f"claim taken over: {reason}", sent=request["sent"],
                    worker=found.worker or old_worker, sent_seq=request["sent_seq"],
                    prompt_chars=found.prompt_chars, query=lambda sql, p: cur.execute(sql, p).fetchall()))
            job.call = max(saved_call, found.next_call)
        for event in item.events:
            if event.type == "LLMCallStarted":
                event.payload["call"] = job.call
                event.payload["took_over"] = {"worker": old_worker, "reason": reason,
                                              "lost_requests": len(lost)}
        item.events = lost + item.events
        who = f"{old_worker.get('host', '?')} pid {old_worker.get('pid', '?')}"
        tally = self._batch_takeovers.setdefault((who, reason.split(" (")[0]), [0, 0, 0.0, 0])
        tally[0] += 1
        tally[1] += len(lost)
        tally[2] += sum(e.payload["estimated_cost_usd"] or 0 for e in lost)
        tally[3] += sum(e.payload["estimated_cost_usd"] is None for e in lost)

    def _answers_lost(self, cur: sqlite3.Cursor, job: _Job, payload: dict[str, Any]) -> dict[str, Any]:
        """A late answer to a request another worker recorded as lost: name that record."""
        for seq, lost_json in cur.execute("SELECT seq, payload FROM events WHERE stream = ? AND type = 'LLMCallLost'",
                                          (f"gen:{job.gen['gen_id']}",)):
            lost = json.loads(lost_json)
            if ((lost.get("attempt"), lost.get("call"), lost.get("try")) ==
                    (payload.get("attempt"), payload.get("call"), payload.get("try"))
                    and (lost.get("worker") or {}).get("run") == self.worker["run"]):
                return {"answers_lost_seq": seq}
        return {}

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


def _resolve(future: asyncio.Future, ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


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
