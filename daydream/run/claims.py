"""Who holds a claim on a generation's call, and whether that claimant is still alive.

A claim (``LLMCallStarted``) carries the worker's identity. Every ``daydream run`` registers itself
in the ``workers`` table and beats a heartbeat there at a fixed interval (one per worker, not per
claim): a claim is live while its worker's heartbeat is younger than the worker's grace, whatever
host the worker runs on, so a worker that died anywhere is taken over after the grace and a live
slow one never is. Heartbeats are stamped and compared with the database's clock, never a
worker's own, so runners whose clocks disagree still agree on "how long ago" (on PostgreSQL the
same holds with ``now()``). Two shortcuts and one fallback:

* a claimant on this very machine (same boot, same process namespace) whose process is gone is
  taken over at once, which is what makes a plain re-run after ``kill -9`` continue without waiting;
* a worker that stopped cleanly left no claims behind (it released them);
* a claim whose worker has no ``workers`` row (made before heartbeats existed) lives until its
  lease runs out.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

from daydream.ledger import events as ev

# The database's clock as the text every lease and heartbeat is written in.
DB_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
# Seconds since a heartbeat, by the database's clock.
SINCE_BEAT = "((julianday('now') - julianday(w.heartbeat_at)) * 86400.0)"
DEFAULT_GRACE_S = float(os.environ.get("DAYDREAM_CLAIM_GRACE_S", "30"))
HOST_ENV = "DAYDREAM_WORKER_HOST"


def _proc_start(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # starttime, in clock ticks since boot
    except (OSError, IndexError):
        return None


def _machine() -> str | None:
    """This boot of this machine and this process namespace, or None where /proc cannot say.

    Two processes may check each other's pids only when these agree: a container restarted under
    another name, or one beside it, has its own pid namespace, and a pid there means nothing here.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def worker_identity() -> dict[str, Any]:
    """Who is claiming: host, pid, the process start time (to tell a recycled pid apart), the
    machine (boot and pid namespace) and a run id (to tell two runners in one process apart).

    ``$DAYDREAM_WORKER_HOST`` names the host instead of the machine's hostname; such a worker is
    judged by its heartbeat alone, as a worker on another machine is (its pid is never checked).
    """
    named = os.environ.get(HOST_ENV, "").strip()
    return {"host": named or socket.gethostname(), "pid": os.getpid(), "start": _proc_start(os.getpid()),
            "machine": None if named else _machine(), "run": uuid.uuid4().hex[:12]}


def _same_machine(worker: dict[str, Any]) -> bool:
    if os.environ.get(HOST_ENV, "").strip():
        return False
    here = _machine()
    if worker.get("machine") or here:
        return worker.get("machine") == here and here is not None
    # Neither side knows its machine (no /proc): fall back on the host name, as before.
    return worker.get("host") == socket.gethostname()


def worker_is_dead(worker_json: str | None) -> bool:
    """True when the claimant ran on this machine and its process no longer exists."""
    if not worker_json:
        return True
    try:
        worker = json.loads(worker_json)
    except ValueError:
        return True
    if not isinstance(worker, dict) or not _same_machine(worker):
        return False  # elsewhere: only its heartbeat (or lease) can say
    pid = int(worker.get("pid") or 0)
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return worker.get("start") is not None and _proc_start(pid) != worker.get("start")


# ----------------------------------------------------------------------------- the workers table
def register_worker(cur: sqlite3.Cursor, worker: dict[str, Any], grace_s: float) -> None:
    """Record a starting worker and its first heartbeat (inside the caller's write transaction)."""
    cur.execute(*register_statement(worker, grace_s))


def register_statement(worker: dict[str, Any], grace_s: float) -> tuple[str, tuple[Any, ...]]:
    """``register_worker`` as (SQL, parameters), to run beside other writes."""
    return (
        f"INSERT INTO workers (worker_id, host, pid, identity, started_at, heartbeat_at, grace_s, "
        f"stopped_at) VALUES (?, ?, ?, ?, {DB_NOW}, {DB_NOW}, ?, NULL) ON CONFLICT (worker_id) DO UPDATE SET "
        "host = excluded.host, pid = excluded.pid, identity = excluded.identity, started_at = excluded.started_at, "
        "heartbeat_at = excluded.heartbeat_at, grace_s = excluded.grace_s, stopped_at = NULL",
        (worker["run"], worker["host"], worker["pid"], json.dumps(worker, sort_keys=True, separators=(",", ":")),
         float(grace_s)))


def beat(cur: sqlite3.Cursor, worker_id: str) -> None:
    """Extend every claim of ``worker_id``: its heartbeat is now."""
    cur.execute(*beat_statement(worker_id))


def beat_statement(worker_id: str) -> tuple[str, dict[str, Any]]:
    """The heartbeat of ``worker_id`` as (SQL, parameters), to run beside other writes."""
    return f"UPDATE workers SET heartbeat_at = {DB_NOW} WHERE worker_id = :worker", {"worker": worker_id}


def stop_worker(cur: sqlite3.Cursor, worker_id: str) -> None:
    """Mark a worker that ended cleanly (its claims were released or finished)."""
    cur.execute(*stop_statement(worker_id))


def stop_statement(worker_id: str) -> tuple[str, dict[str, Any]]:
    """``stop_worker`` as (SQL, parameters), to run beside other writes."""
    return (f"UPDATE workers SET heartbeat_at = {DB_NOW}, stopped_at = {DB_NOW} WHERE worker_id = :worker",
            {"worker": worker_id})


# A running claim in SQL: its worker row (if any), whether that worker's heartbeat is stale, and
# the seconds left before it would be. ``g`` is gen_state.
CLAIM_LIVENESS = f"""
LEFT JOIN workers w ON w.worker_id = json_extract(g.worker, '$.run')"""
STALE = f"(w.worker_id IS NOT NULL AND (w.stopped_at IS NOT NULL OR {SINCE_BEAT} > w.grace_s))"
# A claim without a worker row falls back on its lease (claims of runners before heartbeats).
LEASE_EXPIRED = "(w.worker_id IS NULL AND g.lease_until < :now)"


@dataclass(frozen=True)
class HeldClaims:
    """Claims in scope held by other live workers: what a run waits for when nothing else is left."""

    claims: int
    workers: list[str]          # "host pid N" of each holder
    beat_age_s: float | None    # seconds since the freshest holder's heartbeat
    takeover_in_s: float | None  # at the latest, if every holder stopped now: when their claims free up


def held_elsewhere(conn: Any, own_run: str, scope: str, params: dict[str, Any]) -> HeldClaims:
    """Running claims in scope (``scope``: SQL conditions on ``g``) that are neither ours nor
    takeable now: the claims of live workers, which a run waits for when nothing else is left."""
    rows = conn.execute(f"""
        SELECT MIN(g.worker), json_extract(g.worker, '$.run'), w.worker_id IS NOT NULL, {SINCE_BEAT},
               w.grace_s, MAX((julianday(g.lease_until) - julianday('now')) * 86400.0), COUNT(*),
               {STALE} OR (w.worker_id IS NULL AND MAX(g.lease_until) < :now)
        FROM gen_state g {CLAIM_LIVENESS}
        WHERE g.status = 'running' {scope}
        GROUP BY json_extract(g.worker, '$.run'), w.worker_id, w.heartbeat_at, w.grace_s, w.stopped_at""",
        params).fetchall()
    claims, holders, ages, waits = 0, [], [], []
    for worker_json, run, has_row, since, grace, lease_left, n, takeable in rows:
        if run == own_run or takeable or worker_is_dead(worker_json):
            continue
        if has_row:
            ages.append(since)
            waits.append(max(0.0, grace - since))
        else:
            waits.append(max(0.0, lease_left or 0.0))
        worker = json.loads(worker_json) if worker_json else {}
        claims += n
        holders.append(f"{worker.get('host', '?')} pid {worker.get('pid', '?')}")
    return HeldClaims(claims, sorted(holders), min(ages) if ages else None, max(waits) if waits else None)


# Run ids of the workers whose heartbeat is fresh and who have not stopped.
LIVE_WORKERS = f"SELECT w.worker_id FROM workers w WHERE w.stopped_at IS NULL AND {SINCE_BEAT} <= w.grace_s"


# ----------------------------------------------------------------------------- what a dead claimant left
def local_claims_pattern(worker: dict[str, Any]) -> str:
    """A LIKE pattern matching gen_state.worker of claims made on this machine (their pid can be
    checked); matches nothing when this worker is judged by heartbeat only."""
    if os.environ.get(HOST_ENV, "").strip():
        # A raw control character: JSON text never holds one (U+0000 would do, but PostgreSQL's
        # text cannot carry it).
        return "\x01"
    if worker.get("machine"):
        return f'%"machine":"{worker["machine"]}"%'
    return f'%"host":"{worker["host"]}"%'


@dataclass
class AbandonedClaim:
    """The current claim of a generation's attempt, as its events tell, and the requests it sent
    that have no recorded outcome."""

    call: int                    # the claim's call number
    next_call: int               # the number a new claim of this attempt takes
    worker: dict[str, Any]
    unanswered: list[dict[str, Any]]  # {"try", "sent_seq", "sent": True, or None when unknown}
    # (sent_seq: the seq of the LLMCallSent, or of the LLMCallStarted for the first request)
    prompt_chars: int | None


# The events of a generation's stream that tell the story of its calls.
_CALL_TYPES = (ev.PROMPT_RENDERED, ev.LLM_CALL_STARTED, ev.LLM_CALL_SENT, ev.LLM_CALL_COMPLETED, ev.LLM_CALL_FAILED,
               ev.LLM_CALL_LOST, ev.CLAIM_RELEASED)


def abandoned_claim(cur: sqlite3.Cursor, gen_id: str, attempt: int) -> AbandonedClaim | None:
    """Read one generation's stream (a few dozen events at most) for the claim being taken over."""
    claim: dict[str, Any] | None = None
    prompt_chars: int | None = None
    max_call = 0
    sent: dict[int, int] = {}
    tries_seen = 0
    answered = False
    for seq, type_, payload_json in cur.execute(
            "SELECT seq, type, payload FROM events WHERE stream = ? ORDER BY version", (ev.gen_stream(gen_id),)):
        if type_ not in _CALL_TYPES:
            continue
        payload = json.loads(payload_json)
        if payload.get("attempt") != attempt:
            continue
        if type_ == ev.PROMPT_RENDERED:
            prompt_chars = payload.get("chars")
            continue
        call = payload.get("call") or 0
        if type_ == ev.LLM_CALL_STARTED:
            max_call = max(max_call, call)
            # A claim that marks its requests is itself the mark of its first one.
            claim, tries_seen, answered = payload, 0, False
            sent = {1: seq} if payload.get("sends_marked") else {}
            continue
        if claim is None or call != claim.get("call"):
            continue
        try_ = payload.get("try")
        if type_ == ev.LLM_CALL_SENT:
            sent[try_] = seq
        elif type_ == ev.CLAIM_RELEASED and try_ is None:
            sent.clear()
            answered = True
        else:
            sent.pop(try_, None)
            if isinstance(try_, int):
                tries_seen = max(tries_seen, try_)
            answered = answered or type_ == ev.LLM_CALL_COMPLETED
    if claim is None:
        return None
    if claim.get("sends_marked"):
        unanswered = [{"try": t, "sent_seq": s, "sent": True} for t, s in sorted(sent.items())]
    elif claim.get("sends_marked") is None and not answered:
        # A runner that did not mark its requests: the claim may or may not have been sent.
        unanswered = [{"try": tries_seen + 1, "sent_seq": None, "sent": None}]
    else:
        unanswered = []  # a local provider: nothing left the building
    return AbandonedClaim(claim.get("call") or 0, max_call + 1, claim.get("worker") or {}, unanswered,
                          prompt_chars)


def still_takeable(cur: sqlite3.Cursor, worker_json: str | None) -> bool:
    """Checked again inside the claiming transaction: a worker whose heartbeat came back since we
    looked (it was only late) keeps its claims."""
    try:
        run = (json.loads(worker_json) or {}).get("run") if worker_json else None
    except (ValueError, AttributeError):
        run = None
    row = cur.execute(f"SELECT w.stopped_at IS NOT NULL OR {SINCE_BEAT} > w.grace_s FROM workers w "
                      "WHERE w.worker_id = ?", (run,)).fetchone() if run else None
    if row is None:
        return True  # no heartbeat row: the lease or the local pid decided, and still does
    return bool(row[0]) or worker_is_dead(worker_json)


def takeover_reason(cur: sqlite3.Cursor, worker: dict[str, Any]) -> str:
    """Why a claim of ``worker`` may be taken over, in words (recorded on the new claim)."""
    row = cur.execute(f"SELECT w.stopped_at, {SINCE_BEAT}, w.grace_s FROM workers w WHERE w.worker_id = ?",
                      (worker.get("run"),)).fetchone()
    if row is not None and row[0] is not None:
        return "its worker had stopped"
    if row is not None and row[1] is not None and row[1] > row[2]:
        return f"its worker stopped heartbeating {row[1]:.0f} s ago (grace {row[2]:g} s)"
    if worker_is_dead(json.dumps(worker)):
        return "its worker's process is gone from this machine"
    return "its lease ran out (a worker without heartbeats)"


# ----------------------------------------------------------------------------- cost of a lost call
def estimate_lost_cost(query: Any, model: dict[str, Any], stage: str, prompt_chars: int | None,
                       max_tokens: int | None, cache: dict[tuple[str, str], tuple[int | None, int]]
                       ) -> dict[str, Any]:
    """An estimate of what a request whose outcome is unknown cost, and how it was made.

    Prompt tokens: the prompt's length / 4. Completion tokens: the median of up to 101 completed
    generations of the same model and stage in this ledger, else the stage's max_tokens. Prices are
    the catalog's (USD per million tokens); without them, or without a completion figure, the cost
    is None (unknown, counted as unpriced). ``query(sql, params)`` returns rows.
    """
    model_id = str(model.get("id"))
    key = (model_id, stage)
    if key not in cache:
        rows = [r[0] for r in query(
            "SELECT completion_tokens FROM gen_state WHERE stage = ? AND status = 'completed' AND model_id = ? "
            "AND calls = 1 AND completion_tokens IS NOT NULL LIMIT 101", (stage, model_id))]
        rows.sort()
        cache[key] = (rows[len(rows) // 2] if rows else None, len(rows))
    median, samples = cache[key]
    prompt_tokens = -(-(prompt_chars or 0) // 4)
    if median is not None:
        completion, basis = median, f"completion: median of {samples} completed calls of {model_id} at {stage}"
    elif max_tokens:
        completion, basis = int(max_tokens), f"completion: max_tokens {max_tokens} (no completed call to go by)"
    else:
        completion, basis = None, "completion unknown (no max_tokens and no completed call to go by)"
    price_in, price_out = model.get("price_in"), model.get("price_out")
    cost = None
    if completion is not None and price_in is not None and price_out is not None:
        cost = round((prompt_tokens * float(price_in) + completion * float(price_out)) / 1_000_000, 8)
    return {"estimated_cost_usd": cost, "estimated_prompt_tokens": prompt_tokens,
            "estimated_completion_tokens": completion,
            "estimate_basis": f"prompt: {prompt_chars or 0} chars / 4; {basis}"}
