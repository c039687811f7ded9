"""The runner: turns planned generations into prompts, LLM calls, parsed outputs and scores.

``Runner.run()`` loops until nothing is pending: the feed (``run.feed``) finds ready work in the
``gen_state`` projection, and each generation becomes a job carried out by ``run.attempt``
(render -> claim -> call with retries -> outcome) within its model's call slots and rate limit
(``run.models``) and the budget (``run.budget``). Everything the run records goes through one
writer thread (``run.writer``), which appends in batches, claims first, each item checked against
the projection in its own transaction (a compare-and-set), and keeps the write-ahead log bounded
(``run.checkpoints``). A claim is live while its worker's heartbeat is recent (``run.claims``): the
runner beats one through the writer; a claim whose worker died is taken over after a short grace,
whatever host made it, and a completed call is never repeated. ``run.stats`` counts what happened;
``run.progress`` hands it to the display.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from daydream import plugins
from daydream.errors import DaydreamError, UsageError
from daydream.ledger.events import GenerationFailed
from daydream.ledger.store import Ledger
from daydream.run import claims
from daydream.run.attempt import Attempts
from daydream.run.budget import Budget
from daydream.run.claims import worker_identity
from daydream.run.feed import Feed
from daydream.run.job import Job, LostCalls
from daydream.run.models import ModelPool
from daydream.run.options import RunOptions
from daydream.run.pending import PendingGeneration, pending_counts
from daydream.run.progress import Progress, ProgressCallback
from daydream.run.render import Context, PromptRenderer
from daydream.run.stats import RunStats
from daydream.run.writer import WriteItem, Writer

__all__ = ["RunOptions", "RunStats", "Runner", "run_cohort"]

# Seconds the feed sleeps when nothing was written meanwhile.
_IDLE_S = 0.5


class Runner:
    """One ``daydream run``: construct, then ``await run()`` (or call ``run_sync()``).

    ``progress`` gets the live statistics; ``notice`` gets one-line messages a person should see
    even without a progress display (waiting for other workers, claims taken over).
    """

    def __init__(self, ledger: Ledger, options: RunOptions, progress: ProgressCallback | None = None,
                 notice: Callable[[str], None] | None = None) -> None:
        stages = plugins.stages()
        if options.stage and options.stage not in stages.items:
            raise UsageError(f"--stage {options.stage!r} is not a stage (known: "
                             f"{', '.join(sorted(stages.items))})")
        self.ledger = ledger
        self.options = options
        self.notice = notice
        self.stats = RunStats(budget_usd=options.budget)
        self.ctx = Context.load(ledger)
        self.worker = worker_identity()
        self.models = ModelPool(self.ctx.models, options, self.stats)
        self.progress = Progress(ledger, options, self.stats, progress)
        self.feed = Feed(ledger, options, list(stages.items), self.worker, self.stats, self._say)
        lost = LostCalls(self.ctx.models, self.models.provider_name)
        self.writer = Writer(ledger, options, self.worker, self.stats, lost, self._say,
                             on_error=lambda error: self.request_stop(f"ledger write failed: {error}"),
                             on_written=self._wake_feed)
        self.attempts = Attempts(
            ledger=ledger, options=options, ctx=self.ctx, stages=stages, parsers=plugins.parsers(),
            renderer=PromptRenderer(ledger, self.ctx, stages), models=self.models,
            budget=Budget(options.budget, self.stats), writer=self.writer, lost=lost, stats=self.stats,
            worker=self.worker, stopping=lambda: self._stop, stop=self.request_stop)
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._stop = False
        self._flushed: asyncio.Event | None = None

    # ------------------------------------------------------------------ public
    def run_sync(self) -> RunStats:
        """Run to completion in a fresh event loop."""
        return asyncio.run(self.run())

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop claiming new work (Ctrl-C); in-flight calls are released for the next run."""
        self._stop = True
        self.stats.stopped_reason = self.stats.stopped_reason or reason
        self._wake_feed()  # the feed loop notices at once

    async def run(self) -> RunStats:
        """Process pending work until none is left, a limit is hit, or a stop is requested."""
        if self.options.dry_run:
            self.stats.planned = pending_counts(self.ledger, self.options.cohort, self.options.stage)
            return self.stats
        if self.options.replay_from:
            await self._check_replay_source()  # before anything is claimed or recorded
        # The workers table is not part of the chain: no chain lock (on a server, one round trip).
        self.ledger.append_groups([], also=[claims.register_statement(self.worker, self.options.claim_grace_s)])
        self.progress.start()
        self._flushed = asyncio.Event()
        writer_done = self.writer.start(asyncio.get_running_loop())
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
            self.writer.close()
            await writer_done  # everything handed to the writer is written and reported
            budget_line = self.attempts.budget.stop_line()
            if budget_line is not None:  # calls left pending for want of money say so, with the sums
                self.stats.stopped_reason = self.stats.stopped_reason or budget_line
            await self.models.aclose()
            self._finish_worker()
            self.progress.final()
        if self.writer.error is not None:
            if isinstance(self.writer.error, DaydreamError):
                raise self.writer.error
            raise DaydreamError(f"could not record results in {self.ledger.path}: {self.writer.error}; "
                                "a plain re-run continues where this one stopped")
        return self.stats

    # ------------------------------------------------------------------ around the run
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
            self.ledger.append_groups([], also=[claims.stop_statement(self.worker["run"])])
        except Exception:
            pass  # a ledger that refuses writes (disk full) already stopped the run and said why
        self.writer.wal.truncate()

    async def _heartbeat(self) -> None:
        """Keep this worker's claims live: a heartbeat through the writer at a fixed interval."""
        interval = self.options.heartbeat_interval()
        while True:
            await asyncio.sleep(interval)
            self.writer.enqueue(WriteItem("beat", None, [], []))

    def _say(self, message: str) -> None:
        if self.notice is not None:
            self.notice(message)

    def _wake_feed(self) -> None:
        if self._flushed is not None:
            self._flushed.set()

    # ------------------------------------------------------------------ feeding
    def _startable(self, gen: PendingGeneration) -> bool:
        if gen.gen_id in self._in_flight or gen.gen_id in self.writer.writing or gen.gen_id in self.attempts.skipped:
            return False
        return gen.generator == "copy" or gen.model_id not in self.stats.fatal_models

    def _capacity(self) -> int:
        # Jobs in hand at once: enough to keep every call slot busy while others render or wait.
        return max(self.options.concurrency * 2, 64)

    def _limit_reached(self) -> bool:
        return self.options.limit is not None and self.stats.claimed >= self.options.limit

    async def _feed(self) -> None:
        assert self._flushed is not None
        while not self._stop:
            if self._limit_reached():
                self.stats.stopped_reason = self.stats.stopped_reason or f"--limit {self.options.limit} reached"
                break
            room = self._capacity() - len(self._in_flight)
            started = 0
            # Commits from here on wake the next round (including those made while reading).
            self._flushed.clear()
            finished: set[str] = set()
            if room > 0:
                in_hand = len(self._in_flight) + len(self.writer.writing)
                # In a thread: on a ledger across a network the reads take round trips, which
                # must not stall the answers and claims the loop is handling meanwhile.
                self.writer.committed_while_reading = set()
                try:
                    gens = await asyncio.to_thread(self._next_work, room, in_hand)
                    finished = self.writer.committed_while_reading or set()
                finally:
                    self.writer.committed_while_reading = None
                for gen in gens:
                    if self._stop or len(self._in_flight) >= self._capacity() or self._limit_reached():
                        break
                    if not self._startable(gen) or gen.gen_id in finished:
                        continue
                    self._start(gen)
                    started += 1
            self.progress.tick()
            # Results committed while the feed read are pending in what it read: read again
            # before concluding there is nothing left (their children may be ready now).
            if not self._in_flight and started == 0 and self.writer.unwritten == 0 and not finished:
                # Nothing running, nothing waiting to be written, nothing startable: done — unless
                # live workers elsewhere hold claims of this scope (their children may follow).
                if not self.feed.wait_for_others():
                    break
            else:
                self.feed.end_wait()
            try:
                await asyncio.wait_for(self._flushed.wait(), timeout=_IDLE_S)
            except asyncio.TimeoutError:
                pass

    def _next_work(self, room: int, in_hand: int) -> list[PendingGeneration]:
        """(In a thread) the next startable work, with the texts its prompts need already read."""
        gens = self.feed.next(room, in_hand, self._startable)
        self.attempts.renderer.prefetch(gens)
        return gens

    def _start(self, gen: PendingGeneration) -> None:
        job = Job(gen, attempt=gen.attempt or 1)
        self._in_flight.add(gen.gen_id)
        self.stats.claimed += 1
        self.stats.stages[gen.stage].in_flight += 1
        task = asyncio.create_task(self._process(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, job: Job) -> None:
        gen = job.gen
        try:
            if gen.generator == "copy":
                await self.attempts.copy(job)
            else:
                await self.attempts.call(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in a plugin must not kill the run: record it and go on
            self.writer.enqueue(WriteItem("result", job, [GenerationFailed(
                gen_id=gen.gen_id, attempt=job.attempt, error_class=type(exc).__name__,
                reason=f"internal error: {exc}")], []))
        finally:
            self.stats.stages[gen.stage].in_flight -= 1
            self._in_flight.discard(gen.gen_id)
            self.attempts.budget.release(job)
            # Half the jobs in hand are done: feed more now rather than at the next commit (a run
            # of local calls commits only every RESULTS_EVERY_S).
            if len(self._in_flight) == self._capacity() // 2:
                self._wake_feed()


def run_cohort(ledger: Ledger, options: RunOptions, progress: ProgressCallback | None = None) -> RunStats:
    """Run pending work to completion (the library entry point of ``daydream run``)."""
    return Runner(ledger, options, progress).run_sync()
