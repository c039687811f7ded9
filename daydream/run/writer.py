"""The single writer: one thread appends everything a run records, guarded by a compare-and-set.

The event loop hands it items (``enqueue``) and is handed back, through ``call_soon_threadsafe``,
what was committed: a claim is written as soon as the thread is free, without waiting for the loop
to schedule anything, which is what keeps the commit that precedes every request short. Claims and
sent marks (which hold up a request) go at once, with every result queued by then; results with
no claim to go with wait up to ``RESULTS_EVERY_S`` and go together.

Each item is checked against the ``gen_state`` projection inside the transaction that appends it
(``guard``): a claim only on a generation still planned (or held by a dead worker: a takeover,
which records the requests that worker never saw answered as ``LLMCallLost``), a sent mark and a
result only while the claim is still this run's. A call whose claim was taken over meanwhile is
still recorded (it was paid for), marked ``superseded``. After each round the writer lets the
write-ahead log keeper checkpoint (``daydream.run.checkpoints``).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections import deque
from typing import Any, Callable

from daydream.ledger.events import (LLM_CALL_LOST, DomainEvent, LLMCallCompleted, LLMCallFailed, LLMCallLost,
                                    LLMCallStarted)
from daydream.ledger.store import Expect, Group, Ledger, NewEvent
from daydream.run import claims
from daydream.run.checkpoints import WalKeeper
from daydream.run.claims import worker_is_dead
from daydream.run.job import Job, LostCalls
from daydream.run.options import RunOptions
from daydream.run.stats import RunStats

# Write items that hold up a request (claims, sent marks), and how many other items the writer
# commits in one transaction before it looks for those again.
_URGENT = ("claim", "sent")
# Items that record what came of a generation: a result, or a local call's claim with its result.
_OUTCOMES = ("result", "claimed")
_CHUNK = 500
# The other items (results, heartbeats) go with the next claim's commit, all of them (up to
# _CHUNK), so an answer is on record before any request that left after it. With no claim to go
# with, they wait up to this long (or until _CHUNK are queued) and go together: a commit rewrites
# whole every page it touches, mostly the same few whatever it carries (the tails of events, texts
# and each event type's index, the cohort's counters, the chain head), and a commit for each few
# answers cost about 1.1x the log pages per generation (bench/run_stub.py --scale). A run that
# stops (finishes, Ctrl-C, an error) writes them all first; a process killed outright loses the
# answers of at most this long after the last claim, which the next run asks again (their claims
# are taken over).
RESULTS_EVERY_S = 0.1
# (worker, reason) -> [claims taken over, lost requests, their estimated cost, lost without estimate]
Takeovers = dict[tuple[str, str], list[Any]]


class WriteItem:
    """Events (and the texts they name) to append for one job, of one ``kind``: ``claim``, ``sent``,
    ``result``, ``claimed`` (a local call's claim and outcome together) or ``beat`` (a heartbeat,
    no events). ``future`` gets whether it was appended;
    ``observed`` is the generation's state the item was made from (claims, and results that need
    no claim)."""

    __slots__ = ("kind", "job", "events", "texts", "future", "observed", "since")

    def __init__(self, kind: str, job: Job | None, events: list[DomainEvent], texts: list[str],
                 future: asyncio.Future | None = None, observed: tuple | None = None) -> None:
        self.kind = kind
        self.job = job
        self.events = events
        self.texts = texts
        self.future = future
        self.observed = observed
        self.since = time.monotonic()  # handed to the writer


class Writer:
    """The writer thread of one run and the loop-side bookkeeping of what it has in hand."""

    def __init__(self, ledger: Ledger, options: RunOptions, worker: dict[str, Any], stats: RunStats,
                 lost: LostCalls, say: Callable[[str], None], on_error: Callable[[Exception], None],
                 on_written: Callable[[], None]) -> None:
        self.ledger = ledger
        self.options = options
        self.worker = worker
        self.worker_json = json.dumps(worker, sort_keys=True, separators=(",", ":"))
        self.stats = stats
        self.lost = lost
        self.say = say
        self.on_error = on_error
        self.on_written = on_written
        self.wal = WalKeeper(ledger, options.wal_checkpoint_bytes)
        self.unwritten = 0  # items handed over and not yet committed
        # Generations whose result is queued and not yet committed: the pending query still shows
        # them as pending, so they must not be started again meanwhile.
        self.writing: set[str] = set()
        # While the feed reads in its thread, the generations whose result was committed meanwhile:
        # the rows it read may still show them pending (None: nobody is reading).
        self.committed_while_reading: set[str] | None = None
        self.error: Exception | None = None  # the ledger refused a write (loop side)
        self._urgent: deque[WriteItem] = deque()
        self._inbox: deque[WriteItem] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._failed: Exception | None = None  # writer side: nothing more is written after it
        self._batch_takeovers: Takeovers = {}

    # ------------------------------------------------------------------ loop side
    def start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        """Start the thread; the future resolves once it has written everything and stopped."""
        done: asyncio.Future = loop.create_future()
        threading.Thread(target=self._run, args=(loop, done), name="daydream-writer", daemon=True).start()
        return done

    def enqueue(self, item: WriteItem) -> None:
        """Hand ``item`` to the thread (claims and sent marks go first)."""
        self.unwritten += 1
        if item.kind in _OUTCOMES and item.job is not None:
            self.writing.add(item.job.gen.gen_id)
        with self._wake:
            (self._urgent if item.kind in _URGENT else self._inbox).append(item)
            self._wake.notify()

    async def submit(self, item: WriteItem) -> bool:
        """Hand ``item`` over and wait until it is committed; True when it was appended."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        item.future = future
        self.enqueue(item)
        return await future

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()

    def _written(self, batch: list[WriteItem], outcome: list[bool], error: Exception | None,
                 takeovers: Takeovers) -> None:
        """In the loop: wake the waiters of a committed batch and count what it recorded."""
        if error is not None:
            self.error = self.error or error
            self.on_error(error)
        self.unwritten -= len(batch)
        for item, ok in zip(batch, outcome):
            if item.kind in _OUTCOMES and item.job is not None:
                self.writing.discard(item.job.gen.gen_id)
                if self.committed_while_reading is not None:
                    self.committed_while_reading.add(item.job.gen.gen_id)
            if item.future is not None and not item.future.done():
                item.future.set_result(ok)
            if ok and item.kind in ("result", "claim", "claimed"):
                self.stats.count_committed(item.events, item.job.gen if item.job else None,
                                           item.kind in _OUTCOMES, self.options.cohort)
        for (who, reason), (n, lost, cost, unpriced) in takeovers.items():
            line = f"took over {n} claim(s) of {who}: {reason}"
            if lost:
                priced = f"est. ${cost:.4f}" + (f", {unpriced} without an estimate" if unpriced else "")
                line += (f"; {lost} request(s) it had sent have no answer: recorded as lost "
                         f"(outcome unknown, {priced})")
            self.say(line)
        self.on_written()

    # ------------------------------------------------------------------ the thread
    def _run(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future) -> None:
        try:
            while True:
                with self._wake:
                    while not (self._urgent or self._closing or self._results_due()):
                        self._wake.wait(self._results_wait())
                    if self._closing and not (self._urgent or self._inbox):
                        break
                try:
                    self._write_some(loop)
                except Exception as exc:  # noqa: BLE001 - a bug, not a refusal: stop the run cleanly
                    self._failed = self._failed or exc
                    loop.call_soon_threadsafe(self._written, [], [], exc, {})
        finally:
            loop.call_soon_threadsafe(_resolve, done, True)

    def _write_some(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write the urgent items and one chunk of the others (alone only once they are due:
        ``RESULTS_EVERY_S``) in one transaction; report it to the loop.

        One commit, not one for the claims and another for the results: every commit writes each
        page it touched whole to the log (the scattered index pages of a generation's stream, its
        texts, its gen_state row), so half the commits is about half the bytes written per
        generation (bench/run_stub.py --scale), for a claim commit that carries a few more rows.
        """
        with self._wake:
            batch: list[WriteItem] = []
            while self._urgent and len(batch) < self.options.batch_size:
                batch.append(self._urgent.popleft())
            taken = len(batch)
            if batch or self._closing or self._results_due():
                while self._inbox and len(batch) - taken < _CHUNK:
                    batch.append(self._inbox.popleft())
        if batch:
            error: Exception | None = None
            outcome = [False] * len(batch)
            takeovers: Takeovers = {}
            if self._failed is None:
                try:
                    outcome = self._write_batch(batch, takeovers)
                except Exception as exc:  # noqa: BLE001 - the ledger refused it: the loop stops the run
                    self._failed = error = exc
            loop.call_soon_threadsafe(self._written, batch, outcome, error, takeovers)
        # Between two of the writer's own commits, once the waiters of this round were woken: the
        # only place a checkpoint lets the log start over (one beside a busy writer never catches up).
        self.wal.after_commit()

    def _results_due(self) -> bool:
        """The queued results are to be written now: the oldest waited long enough, or there are many."""
        return bool(self._inbox) and (len(self._inbox) >= _CHUNK
                                      or time.monotonic() - self._inbox[0].since >= RESULTS_EVERY_S)

    def _results_wait(self) -> float | None:
        """Seconds until the queued results are due (None: none queued, wait for a hand-over)."""
        if not self._inbox:
            return None
        return max(0.0, RESULTS_EVERY_S - (time.monotonic() - self._inbox[0].since))

    def _write_batch(self, items: list[WriteItem], takeovers: Takeovers) -> list[bool]:
        """Append what is still valid of ``items``; fills ``takeovers``.

        Most items have a plain expectation (``_expectation``): the ledger checks it and appends in
        one transaction (``Ledger.append_groups``; on PostgreSQL one statement on the server, so the
        chain lock is never held across a round trip, issue 17). The rest are decided by reading
        the ledger under the write lock (``_decide``): taking over a dead worker's claim, and a
        result whose claim is no longer ours (recorded as superseded).
        """
        outcome: list[bool | None] = [None] * len(items)
        groups: list[Group] = []
        placed: list[int] = []
        also: list[tuple[str, dict[str, Any]]] = []
        for i, item in enumerate(items):
            if item.kind == "beat":
                also.append(claims.beat_statement(self.worker["run"]))
                outcome[i] = True
                continue
            expect = self._expectation(item)
            if expect is not None:
                groups.append(Group([e.new() for e in item.events], list(item.texts), expect))
                placed.append(i)
        if groups or also:
            accepted, _stored = self.ledger.append_groups(groups, also)
            for i, ok in zip(placed, accepted):
                # A claim or a sent mark that no longer holds is simply refused; a result is
                # decided again below (its call happened and is recorded whatever the claim).
                if ok or items[i].kind != "result":
                    outcome[i] = ok
        rest = [i for i, ok in enumerate(outcome) if ok is None]
        if rest:
            decided = self._decide([items[i] for i in rest], takeovers)
            for i, ok in zip(rest, decided):
                outcome[i] = ok
        for item, ok in zip(items, outcome):
            if not ok and item.kind == "result":
                self.stats.lost_claims += 1
        return [bool(ok) for ok in outcome]

    def _expectation(self, item: WriteItem) -> Expect | None:
        """The plain condition under which ``item`` is valid, or None when deciding needs reads."""
        job = item.job
        assert job is not None
        if item.kind == "claim":
            if item.observed[0] != "planned":
                return None  # a takeover: whether the holder is dead is read under the lock
            return Expect(job.gen.gen_id, job.attempt, ("planned",))
        if item.kind == "claimed":  # a local call and its claim: only while still planned
            return Expect(job.gen.gen_id, job.attempt, ("planned",))
        if item.kind == "sent" or item.observed is None:  # a request, or the result of our claim
            return Expect(job.gen.gen_id, job.attempt, ("running",), self.worker_json)
        # A result that needs no claim (copy, render failures): planned, or running under us.
        return Expect(job.gen.gen_id, job.attempt, ("planned", "running"), self.worker_json)

    def _decide(self, items: list[WriteItem], takeovers: Takeovers) -> list[bool]:
        """Append what is still valid of ``items`` in one transaction, deciding by reading the
        ledger under the write lock (``_guard``)."""
        accepted: list[bool] = []

        def build(cur: sqlite3.Cursor) -> tuple[list[NewEvent], list[str]]:
            accepted.clear()
            takeovers.clear()
            self._batch_takeovers = takeovers
            events: list[NewEvent] = []
            texts: list[str] = []
            states = self.ledger.gen_states(cur, [item.job.gen.gen_id for item in items if item.job is not None])
            for item in items:
                ok = self._guard(cur, item, states)
                accepted.append(ok)
                if ok:
                    events.extend(e.new() for e in item.events)
                    texts.extend(item.texts)
            return events, texts

        self.ledger.transact(build)
        return list(accepted)

    def _guard(self, cur: sqlite3.Cursor, item: WriteItem, states: dict[str, tuple]) -> bool:
        """Is this item still valid against the current projection? (a compare-and-set)"""
        assert item.job is not None
        row = states.get(item.job.gen.gen_id)
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
            calls: list[DomainEvent] = [
                e.but(superseded=True, answers_lost_seq=self._answers_lost(cur, e))
                for e in item.events if isinstance(e, (LLMCallCompleted, LLMCallFailed))]
            item.texts = item.texts[:1] if calls and isinstance(calls[0], LLMCallCompleted) else []
            item.events = calls
            return bool(calls)
        return True

    def _take_over(self, cur: sqlite3.Cursor, item: WriteItem, worker_json: str | None) -> None:
        """Our claim replaces a dead worker's: record each request it sent and never saw answered
        as ``LLMCallLost`` (before our ``LLMCallStarted``, in the same transaction) and number our
        call after its own."""
        job = item.job
        assert job is not None
        found = claims.abandoned_claim(cur, job.gen.gen_id, job.attempt)
        try:
            old_worker = json.loads(worker_json) if worker_json else {}
        except ValueError:
            old_worker = {}
        reason = claims.takeover_reason(cur, old_worker)
        self.stats.taken_over += 1
        lost: list[LLMCallLost] = []
        if found is not None:
            saved_call, job.call = job.call, found.call
            for request in found.unanswered:
                lost.append(self.lost.event(
                    job, request["try"], f"claim taken over: {reason}", sent=request["sent"],
                    worker=found.worker or old_worker, sent_seq=request["sent_seq"],
                    prompt_chars=found.prompt_chars, query=lambda sql, p: cur.execute(sql, p).fetchall()))
            job.call = max(saved_call, found.next_call)
        took_over = {"worker": old_worker, "reason": reason, "lost_requests": len(lost)}
        item.events = [*lost, *(e.but(call=job.call, took_over=took_over) if isinstance(e, LLMCallStarted) else e
                                for e in item.events)]
        who = f"{old_worker.get('host', '?')} pid {old_worker.get('pid', '?')}"
        tally = self._batch_takeovers.setdefault((who, reason.split(" (")[0]), [0, 0, 0.0, 0])
        tally[0] += 1
        tally[1] += len(lost)
        tally[2] += sum(e.estimated_cost_usd or 0 for e in lost)
        tally[3] += sum(e.estimated_cost_usd is None for e in lost)

    def _answers_lost(self, cur: sqlite3.Cursor, call: LLMCallCompleted | LLMCallFailed) -> int | None:
        """A late answer to a request another worker recorded as lost: the seq of that record."""
        for seq, lost_json in cur.execute("SELECT seq, payload FROM events WHERE stream = ? AND type = ?",
                                          (call.stream, LLM_CALL_LOST)):
            lost = LLMCallLost.from_payload(json.loads(lost_json))
            if ((lost.attempt, lost.call, lost.try_) == (call.attempt, call.call, call.try_)
                    and (lost.worker or {}).get("run") == self.worker["run"]):
                return seq
        return None


def _resolve(future: asyncio.Future, ok: bool) -> None:
    if not future.done():
        future.set_result(ok)
