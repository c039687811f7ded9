"""The append-only, hash-chained event store.

``Ledger`` appends events (one or many, atomically, with optimistic stream-version checks), stores
large texts by content hash, reads events back, and verifies the chain. Every write is one write
transaction of the ledger's backend (``daydream.ledger.backend``: on SQLite, ``BEGIN IMMEDIATE``
takes the write lock up front) so that several processes can append to one file safely; the
chain is global, so each append reads the last hash inside that lock. Runtime SQL uses named
``:name`` parameters; statements that differ by database live in the backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, NamedTuple

from daydream.errors import ConcurrencyConflict, LedgerIntegrityError, LedgerPathError
from daydream.ledger import db
from daydream.ledger.backend import EVENT_COLUMNS, Backend, Cursor

GENESIS_HASH = "0" * 64
ANY_VERSION = None


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# The C encoder behind _CANONICAL, built once, without the circular-reference bookkeeping
# (payloads are trees; a cycle still fails, see _encode_payload): 0.65 µs for a small payload
# instead of 1.5 µs through JSONEncoder.encode, which rebuilds it on every call.
_C_ENCODE = c_make_encoder(None, _CANONICAL.default, encode_basestring, None, ":", ",", True, False, True) \
    if c_make_encoder is not None else None
_new_tuple = tuple.__new__


def canonical_json(value: Any) -> str:
    """The one JSON spelling used for payloads and hashing: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(value)


def _encode_payload(value: Any) -> str:
    """``canonical_json`` of an event payload, fast."""
    if _C_ENCODE is None or not isinstance(value, dict):
        return _CANONICAL.encode(value)
    try:
        return "".join(_C_ENCODE(value, 0))
    except RecursionError:
        return _CANONICAL.encode(value)  # a cycle: let the full encoder name it


def text_hash(text: str) -> str:
    """The content address of a text: hex sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_hash(prev_hash: str, seq: int, stream: str, version: int, type_: str, payload_json: str,
               recorded_at: str, causation_seq: int | None) -> str:
    """sha256(prev_hash + canonical JSON of the event); the payload goes in as its stored JSON text."""
    causation = "null" if causation_seq is None else str(int(causation_seq))
    canonical = (f'{{"causation_seq":{causation},"payload":{payload_json},"recorded_at":{_json_str(recorded_at)},'
                 f'"seq":{int(seq)},"stream":{_json_str(stream)},"type":{_json_str(type_)},"version":{int(version)}}}')
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _json_str(value: str) -> str:
    # The C string encoder json.dumps(…, ensure_ascii=False) uses, without building an encoder.
    return encode_basestring(value)


def iso_utc(dt: datetime) -> str:
    """``dt`` (a UTC datetime) as ISO-8601 with microseconds and a Z: how every time in the ledger is written."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    """Current UTC time as ``iso_utc`` writes it."""
    return iso_utc(datetime.now(timezone.utc))


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event about to be appended.

    ``expected_version`` is the version the stream must be at *before* this event (0 for a new
    stream); ``None`` appends at the end whatever the version is. Within one ``append`` call several
    events may target the same stream: only the first needs an expectation, the rest follow it.
    """

    stream: str
    type: str
    payload: dict[str, Any]
    expected_version: int | None = None
    causation_seq: int | None = None


class Event(NamedTuple):
    """An event as stored."""

    seq: int
    stream: str
    version: int
    type: str
    payload: dict[str, Any]
    recorded_at: str
    causation_seq: int | None
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "Event":
        """Build from a row of ``SELECT {EVENT_COLUMNS}``."""
        seq, stream, version, type_, payload, recorded_at, causation, prev_hash, hash_ = row
        return cls(seq, stream, version, type_, json.loads(payload), recorded_at, causation, prev_hash, hash_)


# Applies the projected events appended after a seq to gen_state, cohort_members and combos: one
# statement per append instead of a trigger on every inserted row (migration 0004). Each row fed to
# the view runs its event type's statements (daydream/ledger/projections.py; one trigger per type).
PROJECT_EVENTS = ("INSERT INTO projection_feed SELECT seq, stream, version, type, payload, recorded_at, "
                  "causation_seq FROM events WHERE seq > ? AND type IN (SELECT type FROM projected_types) "
                  "ORDER BY seq")
# The stored head of the chain (migration 0006) moves with every append, from exactly where the
# append found it.
ADVANCE_HEAD = "UPDATE chain_head SET seq = :seq, hash = :hash WHERE id = 1 AND seq = :was_seq AND hash = :was_hash"
LAST_EVENT = "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"


def chain_events(events: Sequence[NewEvent], seq: int, prev: str, versions: dict[str, int],
                 now: str) -> tuple[list[tuple], list[Event]]:
    """Number, version and hash-chain ``events`` after position ``seq`` whose hash is ``prev``.

    Returns the rows to insert (``EVENT_COLUMNS`` order, payloads as canonical JSON) and the events
    as they will be stored; ``versions`` (stream -> current version) is advanced in place. This is
    the hot path of every append, so the event's canonical JSON is spelled out inline;
    ``event_hash`` is the readable definition, and ``verify`` recomputes every hash with it.
    """
    at = f',"recorded_at":{_json_str(now)},"seq":'
    rows: list[tuple] = []
    stored: list[Event] = []
    add_row, add_event = rows.append, stored.append
    version_of = versions.get
    encode, quote, sha256 = _encode_payload, encode_basestring, hashlib.sha256
    for e in events:
        stream, type_, payload, causation = e.stream, e.type, e.payload, e.causation_seq
        version = version_of(stream, 0) + 1
        versions[stream] = version
        seq += 1
        payload_json = encode(payload)
        if causation is not None:
            causation = int(causation)
        h = sha256(f'{prev}{{"causation_seq":{"null" if causation is None else causation},'
                   f'"payload":{payload_json}{at}{seq},"stream":{quote(stream)},'
                   f'"type":{quote(type_)},"version":{version}}}'.encode()).hexdigest()
        add_row((seq, stream, version, type_, payload_json, now, causation, prev, h))
        add_event(_new_tuple(Event, (seq, stream, version, type_, payload, now, causation, prev, h)))
        prev = h
    return rows, stored


def head_mismatch(cur: Cursor, last_seq: int, last_hash: str) -> str:
    """Why the stored chain head is not the last event (seq ``last_seq``, hash ``last_hash``)."""
    row = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
    if row is None:
        return "the stored chain head is missing (table chain_head is empty)"
    head_seq, head_hash = row
    if head_seq > last_seq:
        return (f"the stored chain head is at seq {head_seq} but the last event is seq {last_seq}: "
                f"{head_seq - last_seq} event(s) at the end of the ledger were removed")
    if head_seq < last_seq:
        return (f"the stored chain head is at seq {head_seq} but events go on to seq {last_seq}: events "
                "were added without advancing the head (outside daydream, or by a daydream older than 0006)")
    return (f"the last event (seq {last_seq}) is not the one the stored chain head records "
            f"(hash {head_hash[:12]}… vs {last_hash[:12]}…): it was replaced")


class IntegrityReport(NamedTuple):
    """What ``Ledger.check_integrity`` proved.

    ``head`` is the stored chain head (seq, hash) it matched, or None when the ledger's schema
    predates stored heads (0006) and a removed tail could not be ruled out.
    """

    events: int
    texts: int
    referenced_texts: int
    head: tuple[int, str] | None


class Expect(NamedTuple):
    """What one ``gen_state`` row must be for a group of ``Ledger.append_groups`` to be appended:
    its ``attempt``, one of ``statuses``, and, while it is ``running``, claimed by ``worker``."""

    gen_id: str
    attempt: int
    statuses: tuple[str, ...]
    worker: str | None = None

    def holds(self, state: tuple[str, int, str | None] | None) -> bool:
        """Whether a (status, attempt, worker) row meets it (no row never does)."""
        if state is None:
            return False
        status, attempt, worker = state
        return (attempt == self.attempt and status in self.statuses
                and (status != "running" or worker == self.worker))


class Group(NamedTuple):
    """Events and the texts they name, appended together or not at all (see ``Expect``)."""

    events: Sequence[NewEvent]
    texts: Sequence[str] = ()
    expect: Expect | None = None


@dataclass
class Ledger:
    """One ledger. Cheap to create; holds a backend (its connections), no open transaction between calls."""

    path: Path
    backend: Backend
    clock: Callable[[], str] = field(default=utc_now)
    readonly: bool = False
    # Stream versions this process knows, valid only while the ledger's last seq is ``_known_at``
    # (i.e. nobody else appended since our last write): saves a lookup per stream per append.
    _known: dict[str, int] = field(default_factory=dict, repr=False)
    _known_at: int = field(default=-1, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _projected: frozenset[str] = field(default=frozenset(), repr=False)
    _has_head: bool = field(default=False, repr=False)
    _projected_schema: int = field(default=-1, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, readonly: bool = False) -> "Ledger":
        """Open an existing ledger (upgrading its schema when older than this daydream)."""
        return cls(db.location(path), db.open_backend(path, readonly=readonly), readonly=readonly)

    @classmethod
    def init(cls, path: str | os.PathLike[str], *, force: bool = False) -> tuple["Ledger", str | None, str]:
        """Create or upgrade the ledger at ``path``. Returns (ledger, revision before, revision after).

        Another application's SQLite file is refused unless ``force`` (then the ledger's tables are
        added beside its own).
        """
        backend = db.create_backend(path, create=True, force=force)
        before, after = db.migrate(backend, path)
        return cls(db.location(path), backend), before, after

    def close(self) -> None:
        """Close the connections this ledger keeps idle (it stays usable: new ones open on demand)."""
        self.backend.close()

    # ----------------------------------------------------------------- writing
    def append(self, events: Sequence[NewEvent], texts: Iterable[str] = ()) -> list[Event]:
        """Append ``events`` (and store ``texts``) in one transaction; all or nothing.

        Raises ``ConcurrencyConflict`` when a stream is not at the expected version; nothing is
        written then. Returns the stored events with their seq, version and hash.
        """
        text_rows = [(text_hash(t), t, len(t)) for t in texts]
        if not events and not text_rows:
            return []
        with self._lock:
            stored, versions = self.backend.write(lambda cur: self._append_in(cur, events, text_rows, last=True))
            if stored:
                if len(self._known) > 500_000:
                    self._known.clear()
                self._known.update(versions)
                self._known_at = stored[-1].seq
            return stored

    def transact(self, build: Callable[[Cursor], tuple[Sequence[NewEvent], Iterable[str]]]
                 ) -> list[Event]:
        """Decide what to append while holding the write lock, then append it atomically.

        ``build(cursor)`` may read anything (e.g. the ``gen_state`` projection) and returns the
        events and texts to append; this is a compare-and-set: no other writer can slip in between
        the reads and the append. Returning no events appends nothing. The cursor is the backend's
        (``daydream.ledger.backend.Cursor``): SQL with named ``:name`` parameters and a mapping.
        """
        def work(cur: Cursor) -> tuple[list[Event], dict[str, int]]:
            events, texts = build(cur)
            text_rows = [(text_hash(t), t, len(t)) for t in texts]
            return self._append_in(cur, list(events), text_rows, last=True)

        with self._lock:
            stored, versions = self.backend.write(work)
            if stored:
                self._known.update(versions)
                self._known_at = stored[-1].seq
            return stored

    def append_batches(self, batches: Callable[[], Iterable[tuple[Sequence[NewEvent], Iterable[str]]]], *,
                       guard: tuple[str, int] | None = None) -> int:
        """Append events given batch by batch, all in ONE transaction: all or nothing, like ``append``.

        Only one batch is in memory at a time (a plan of a million generations appends this way, a
        transaction per part of it). ``batches()`` makes the (events, texts) batches; it is called
        again if the transaction has to start over. Expected versions are checked per batch as in
        ``append`` (within a batch, only a stream's first event needs one). ``guard`` (stream,
        version): the transaction first checks that the stream is at that version, and raises
        ``ConcurrencyConflict`` otherwise: a plan appended in several transactions checks that
        nobody took its cohort over between them. Returns how many events were appended.
        """
        def work(cur: Cursor) -> int:
            if guard is not None:
                stream, expected = guard
                actual = self._stream_versions(cur, {stream}).get(stream, 0)
                if actual != expected:
                    raise ConcurrencyConflict(stream, expected, actual)
            n = 0
            for events, texts in batches():
                stored, _ = self._append_in(cur, events, [(text_hash(t), t, len(t)) for t in texts])
                n += len(stored)
            return n

        with self._lock:
            try:
                return self.backend.write(work)
            finally:
                # Stream versions learnt before may be stale now; forget them rather than track a
                # million streams.
                self._known.clear()
                self._known_at = -1

    def append_groups(self, groups: Sequence["Group"], also: Sequence[tuple[str, Mapping[str, Any]]] = ()
                      ) -> tuple[list[bool], list[Event]]:
        """Append the groups whose expectation on ``gen_state`` holds, in one transaction.

        The runner's compare-and-set (a claim only while the generation is planned, a result only
        while the claim is still ours), stated as data so that a PostgreSQL server can run it by
        itself: there ``daydream_append`` (migration 0012) locks the chain, checks, chains and
        inserts within one statement, so the chain lock is never held across a round trip. On
        SQLite the same happens from the client inside ``BEGIN IMMEDIATE``. ``also`` are statements
        run in the same round trip first (a heartbeat). Returns which groups were appended and the
        events stored. Raises ``ConcurrencyConflict`` as ``append`` does (nothing is written then).
        """
        call = getattr(self.backend, "append_groups", None)
        if call is not None and groups and self.backend.has_append_function():
            return self._append_groups_on_server(call, groups, also)

        accepted: list[bool] = []

        def build(cur: Cursor) -> tuple[list[NewEvent], list[str]]:
            for sql, params in also:
                cur.execute(sql, params)
            states = self.gen_states(cur, [g.expect.gen_id for g in groups if g.expect is not None])
            accepted[:] = [g.expect is None or g.expect.holds(states.get(g.expect.gen_id)) for g in groups]
            events = [e for g, ok in zip(groups, accepted) if ok for e in g.events]
            texts = [t for g, ok in zip(groups, accepted) if ok for t in g.texts]
            return events, texts

        if not groups:
            if also:
                run = getattr(self.backend, "run_statements", None)
                if run is not None:  # no event: no chain lock needed (PostgreSQL)
                    run(also)
                else:
                    self.backend.write(lambda cur: [cur.execute(sql, params) for sql, params in also])
            return [], []
        stored = self.transact(build)
        return list(accepted), stored

    def gen_states(self, cur: Cursor, gen_ids: Iterable[str]) -> dict[str, tuple[str, int, str | None]]:
        """gen_state (status, attempt, worker) of these generations, one statement per ``max_list`` ids."""
        ids = list(set(gen_ids))
        found: dict[str, tuple[str, int, str | None]] = {}
        step = self.backend.max_list
        for i in range(0, len(ids), step):
            in_ids, params = self.backend.in_list("gen", ids[i:i + step])
            for gen_id, status, attempt, worker in cur.execute(
                    f"SELECT gen_id, status, attempt, worker FROM gen_state WHERE gen_id {in_ids}", params):
                found[gen_id] = (status, attempt, worker)
        return found

    def _append_groups_on_server(self, call: Callable[..., Any], groups: Sequence["Group"],
                                 also: Sequence[tuple[str, Mapping[str, Any]]]) -> tuple[list[bool], list[Event]]:
        now = self.clock()
        ev_group: list[int] = []
        streams: list[str] = []
        types: list[str] = []
        payloads: list[str] = []
        causations: list[int | None] = []
        expected: list[int | None] = []
        seen: set[str] = set()
        t_group: list[int] = []
        t_rows: list[tuple[str, str, int]] = []
        g_gen: list[str | None] = []
        g_attempt: list[int | None] = []
        g_statuses: list[str | None] = []
        g_worker: list[str | None] = []
        for n, g in enumerate(groups, 1):
            for e in g.events:
                ev_group.append(n)
                streams.append(e.stream)
                types.append(e.type)
                payloads.append(_encode_payload(e.payload))
                causations.append(None if e.causation_seq is None else int(e.causation_seq))
                # As in ``append``: a stream's first event carries the expectation.
                expected.append(e.expected_version if e.stream not in seen else None)
                seen.add(e.stream)
            for t in g.texts:
                t_group.append(n)
                t_rows.append((text_hash(t), t, len(t)))
            x = g.expect
            g_gen.append(None if x is None else x.gen_id)
            g_attempt.append(None if x is None else x.attempt)
            g_statuses.append(None if x is None else ",".join(x.statuses))
            g_worker.append(None if x is None else x.worker)
        args = {
            "recorded_at": now, "recorded_json": _json_str(now),
            "group": ev_group, "stream": streams, "stream_json": [encode_basestring(s) for s in streams],
            "type": types, "type_json": [encode_basestring(t) for t in types], "payload": payloads,
            "causation": causations, "expected": expected,
            "gen": g_gen, "attempt": g_attempt, "statuses": g_statuses, "worker": g_worker,
            "text_group": t_group, "sha256": [r[0] for r in t_rows], "text": [r[1] for r in t_rows],
            "chars": [r[2] for r in t_rows]}
        with self._lock:
            before, before_hash, accepted, versions, hashes = call(args, also)
            stored: list[Event] = []
            seq, prev = before, before_hash
            k = 0
            for g, ok in zip(groups, accepted):
                if not ok:
                    continue
                for e in g.events:
                    seq += 1
                    stored.append(Event(seq, e.stream, versions[k], e.type, e.payload, now,
                                        None if e.causation_seq is None else int(e.causation_seq), prev, hashes[k]))
                    prev = hashes[k]
                    k += 1
            if stored:
                if before != self._known_at:
                    self._known.clear()
                self._known.update({e.stream: e.version for e in stored})
                self._known_at = stored[-1].seq
            return list(accepted), stored

    def put_texts(self, texts: Iterable[str]) -> list[str]:
        """Store texts by content hash (deduplicated) and return their hashes."""
        rows = [(text_hash(t), t, len(t)) for t in texts]
        if rows:
            self.backend.write(lambda cur: self.backend.insert_texts(cur, rows))
        return [r[0] for r in rows]

    def _append_in(self, cur: Cursor, events: Sequence[NewEvent], text_rows: list[tuple[str, str, int]],
                   last: bool = False) -> tuple[list[Event], dict[str, int]]:
        # ``last``: nothing follows in the transaction, so a backend may commit with its last round trip.
        backend = self.backend
        # PostgreSQL stores texts with the events, in the one round trip of ``finish_append``.
        finish = getattr(backend, "finish_append", None) if events else None
        if text_rows and finish is None:
            backend.insert_texts(cur, text_rows)
        if not events:
            return [], {}
        tip = cur.execute(LAST_EVENT).fetchone()
        seq, prev = (tip[0], tip[1]) if tip else (0, GENESIS_HASH)
        before, before_hash = seq, prev
        if seq != self._known_at:
            # Another writer appended since we last did: every version we knew may be stale (kept,
            # they would become "valid" again once this append moves _known_at on).
            self._known.clear()
            self._known_at = -1
        known = self._known
        # The first event of each stream carries the batch's expectation for that stream.
        firsts: dict[str, NewEvent] = {}
        first_of = firsts.setdefault
        for e in events:
            first_of(e.stream, e)
        versions: dict[str, int] = {}
        # Streams a batch expects to be new need no lookup: UNIQUE(stream, version) proves it.
        assumed_new: set[str] = set()
        lookup: set[str] = set()
        for stream, e in firsts.items():
            if stream in known:
                versions[stream] = known[stream]
            elif e.expected_version == 0:
                assumed_new.add(stream)
            else:
                lookup.add(stream)
        if lookup:
            versions.update(self._stream_versions(cur, lookup))
        for stream, e in firsts.items():
            if e.expected_version is not None and e.expected_version != versions.get(stream, 0):
                raise ConcurrencyConflict(stream, e.expected_version, versions.get(stream, 0))
        rows, stored = chain_events(events, seq, prev, versions, self.clock())
        if finish is not None:
            return self._finish_pipelined(cur, finish, events, text_rows, rows, stored, versions, assumed_new,
                                          before, before_hash, last)
        try:
            backend.insert_events(cur, rows)
        except backend.integrity_error:
            # A stream we took for new already has events: report it as the conflict it is.
            actual = self._stream_versions(cur, assumed_new)
            for stream, version in actual.items():
                raise ConcurrencyConflict(stream, 0, version) from None
            raise
        projected = self._projected_types(cur)
        if any(e.type in projected for e in events):
            cur.execute(PROJECT_EVENTS, (before,))
        if self._has_head:
            # Compare-and-set: the head must be the last event we chained onto. When it is not,
            # events were removed (or added) behind daydream's back; moving the head on would
            # erase the evidence, so the append is refused and verify says what happened.
            cur.execute(ADVANCE_HEAD, {"seq": stored[-1].seq, "hash": stored[-1].hash,
                                       "was_seq": before, "was_hash": before_hash})
            if cur.rowcount != 1:
                raise LedgerIntegrityError(None, head_mismatch(cur, before, before_hash) +
                                           "; nothing was appended: run 'daydream verify'")
        return stored, versions

    def _finish_pipelined(self, cur: Cursor, finish: Callable[..., bool | None], events: Sequence[NewEvent],
                          text_rows: list[tuple[str, str, int]], rows: list[tuple], stored: list[Event],
                          versions: dict[str, int], assumed_new: set[str], before: int, before_hash: str,
                          last: bool) -> tuple[list[Event], dict[str, int]]:
        """``_append_in``'s end on a backend that sends it in one round trip (PostgreSQL): the same
        statements and checks as the SQLite path below it, queued together."""
        projected = self._projected_types(cur)
        project = (PROJECT_EVENTS, (before,)) if any(e.type in projected for e in events) else None
        head = (ADVANCE_HEAD, {"seq": stored[-1].seq, "hash": stored[-1].hash, "was_seq": before,
                               "was_hash": before_hash}) if self._has_head else None
        try:
            moved = finish(cur, text_rows, rows, project, head, commit=last)
        except self.backend.integrity_error:
            actual = self._stream_versions(cur, assumed_new)
            for stream, version in actual.items():
                raise ConcurrencyConflict(stream, 0, version) from None
            raise
        if moved is None:  # a big batch: texts and events are in, the rest goes one by one
            moved = True
            if project is not None:
                cur.execute(*project)
            if head is not None:
                cur.execute(*head)
                moved = cur.rowcount == 1
        if not moved:
            raise LedgerIntegrityError(None, head_mismatch(cur, before, before_hash) +
                                       "; nothing was appended: run 'daydream verify'")
        return stored, versions

    def _projected_types(self, cur: Cursor) -> frozenset[str]:
        """Event types the projections handle (migration 0004's ``projected_types``).

        Read again whenever the schema changed (another process may have upgraded the ledger
        under us); empty on a schema older than 0004, whose trigger on ``events`` projects rows.
        Also notes whether the schema stores the chain head (0006).
        """
        backend = self.backend
        schema = backend.schema_version(cur)
        if schema != self._projected_schema:
            tables = {name for name in ("projected_types", "chain_head") if backend.has_table(cur, name)}
            self._projected = frozenset(
                r[0] for r in cur.execute("SELECT type FROM projected_types")) \
                if "projected_types" in tables else frozenset()
            self._has_head = "chain_head" in tables
            self._projected_schema = schema
        return self._projected

    def _stream_versions(self, cur: Cursor, streams: set[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        names = list(streams)
        step = self.backend.max_list
        for i in range(0, len(names), step):
            in_streams, params = self.backend.in_list("stream", names[i:i + step])
            for stream, version in cur.execute(
                    f"SELECT stream, MAX(version) FROM events WHERE stream {in_streams} GROUP BY stream", params):
                found[stream] = version
        return found

    # ----------------------------------------------------------------- reading
    def _rows(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> list[tuple]:
        return self.backend.query(sql, params)

    def events(self, *, after: int = 0, type: str | Sequence[str] | None = None,
               stream: str | None = None, limit: int | None = None) -> list[Event]:
        """Events with ``seq > after``, optionally of one type (or several) and one stream, in order."""
        where, params = ["seq > :after"], {"after": after}
        if type is not None:
            types = [type] if isinstance(type, str) else list(type)
            in_types, type_params = self.backend.in_list("type", types)
            where.append(f"type {in_types}")
            params.update(type_params)
        if stream is not None:
            where.append("stream = :stream")
            params["stream"] = stream
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = int(limit)
        return [Event.from_row(r) for r in self._rows(sql, params)]

    def iter_events(self, *, after: int = 0, batch: int = 5000) -> Iterator[Event]:
        """Every event after ``after`` in seq order, fetched in batches (for large ledgers)."""
        position = after
        while True:
            chunk = self._rows(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > :after ORDER BY seq LIMIT :batch",
                               {"after": position, "batch": batch})
            if not chunk:
                return
            for row in chunk:
                yield Event.from_row(row)
            position = chunk[-1][0]

    def stream(self, stream: str) -> list[Event]:
        """All events of one stream, by version."""
        return self.events(stream=stream)

    def stream_version(self, stream: str) -> int:
        """The current version of ``stream`` (0 when it has no events)."""
        rows = self._rows("SELECT MAX(version) FROM events WHERE stream = :stream", {"stream": stream})
        return rows[0][0] or 0

    def last_seq(self) -> int:
        """The seq of the newest event (0 for an empty ledger)."""
        return self._rows("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0]

    def count(self, type: str | None = None) -> int:
        """How many events there are (of one type, if given)."""
        if type is None:
            return self._rows("SELECT COUNT(*) FROM events")[0][0]
        return self._rows("SELECT COUNT(*) FROM events WHERE type = :type", {"type": type})[0][0]

    def get_text(self, sha256: str | None) -> str | None:
        """The text stored under ``sha256``, or None."""
        if not sha256:
            return None
        rows = self._rows("SELECT text FROM texts WHERE sha256 = :sha256", {"sha256": sha256})
        return rows[0][0] if rows else None

    def get_texts(self, hashes: Iterable[str]) -> dict[str, str]:
        """Several texts at once, keyed by hash (missing ones are absent)."""
        wanted = [h for h in set(hashes) if h]
        found: dict[str, str] = {}
        step = self.backend.max_list
        for i in range(0, len(wanted), step):
            in_hashes, params = self.backend.in_list("h", wanted[i:i + step])
            found.update(self._rows(f"SELECT sha256, text FROM texts WHERE sha256 {in_hashes}", params))
        return found

    def query(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> list[tuple]:
        """Run a read-only SQL statement (views, reports) and return all rows.

        Write new SQL with named ``:name`` parameters and a mapping (portable across backends);
        positional ``?`` with a sequence still works on SQLite.
        """
        return self._rows(sql, params)

    # ----------------------------------------------------------------- integrity
    def verify(self) -> tuple[int, int]:
        """Recompute the hash chain and every text hash. Returns (events, texts) checked.

        Raises ``LedgerIntegrityError`` naming the first event (or text) that does not match; see
        ``check_integrity`` for everything it checks.
        """
        report = self.check_integrity()
        return report.events, report.texts

    def check_integrity(self) -> "IntegrityReport":
        """Prove the ledger is what its appends wrote; raise ``LedgerIntegrityError`` at the first flaw.

        Checks, in one read snapshot (appends may go on meanwhile): every event's hash and its link
        to the one before, with no seq missing; that the last event is the stored chain head (so a
        removed tail shows); that every text an event refers to is stored; and that every stored
        text matches its hash and length.
        """
        from daydream.ledger.events import text_references

        prev = GENESIS_HASH
        expected_seq = 0
        n_events = 0
        referenced: set[str] = set()
        # One snapshot: the head read at the end belongs to the events read.
        with self.backend.snapshot() as conn:
            cur = conn.cursor()
            lookup = conn.cursor()
            cur.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")
            while True:
                batch = cur.fetchmany(10000)
                if not batch:
                    break
                wanted: dict[str, tuple[int, str, str]] = {}
                for seq, stream, version, type_, payload, recorded_at, causation, prev_hash, h in batch:
                    expected_seq += 1
                    if seq != expected_seq:
                        raise LedgerIntegrityError(expected_seq, f"event missing (next stored seq is {seq})")
                    if prev_hash != prev:
                        raise LedgerIntegrityError(seq, "prev_hash does not match the previous event's hash")
                    try:
                        body = json.loads(payload)
                    except ValueError:
                        raise LedgerIntegrityError(seq, "payload is not valid JSON") from None
                    if event_hash(prev, seq, stream, version, type_, payload, recorded_at, causation) != h:
                        raise LedgerIntegrityError(seq, "hash does not match the event's content (altered)")
                    prev = h
                    n_events += 1
                    if isinstance(body, dict):
                        for where, ref in text_references(type_, body):
                            if ref not in referenced and ref not in wanted:
                                wanted[ref] = (seq, type_, where)
                self._check_texts_exist(lookup, wanted)
                referenced.update(wanted)
            head = self._stored_head(lookup)
            if head is not None and head != (expected_seq, prev):
                first = expected_seq + 1 if head[0] > expected_seq else None
                raise LedgerIntegrityError(first, head_mismatch(lookup, expected_seq, prev))
            n_texts = 0
            cur.execute("SELECT sha256, text, chars FROM texts ORDER BY sha256")
            while True:
                batch = cur.fetchmany(2000)
                if not batch:
                    break
                for key, body, chars in batch:
                    if text_hash(body) != key or len(body) != chars:
                        raise LedgerIntegrityError(None, f"text {key[:16]}… does not match its hash or length")
                    n_texts += 1
        return IntegrityReport(n_events, n_texts, len(referenced), head)

    def _check_texts_exist(self, cur: Cursor, wanted: dict[str, tuple[int, str, str]]) -> None:
        names = list(wanted)
        step = self.backend.max_list
        for i in range(0, len(names), step):
            chunk = names[i:i + step]
            in_hashes, params = self.backend.in_list("h", chunk)
            found = {r[0] for r in cur.execute(f"SELECT sha256 FROM texts WHERE sha256 {in_hashes}", params)}
            missing = [h for h in chunk if h not in found]
            if missing:
                first = min(missing, key=lambda h: wanted[h][0])
                seq, type_, where = wanted[first]
                raise LedgerIntegrityError(seq, f"{type_} refers to text {first[:16]}… ({where}), which is "
                                                "missing from texts (deleted)")

    def _stored_head(self, cur: Cursor) -> tuple[int, str] | None:
        """(seq, hash) of the stored chain head; None on a schema older than 0006, which has none."""
        if not self.backend.has_table(cur, "chain_head"):
            return None
        row = cur.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
        return (row[0], row[1]) if row else (-1, "")

    def compact(self) -> None:
        """Fold the write-ahead log into the file, leave WAL mode and VACUUM: one self-contained file."""
        self.backend.compact()

    def backup(self, dest: str | os.PathLike[str]) -> Path:
        """A consistent copy of the ledger at ``dest`` (``VACUUM INTO``), safe while others write."""
        target = Path(dest)
        if target.exists():
            raise LedgerPathError(f"backup destination {str(target)!r} already exists; choose a new path")
        if not target.parent.is_dir():
            raise LedgerPathError(f"backup destination folder {str(target.parent)!r} does not exist")
        self.backend.backup(target)
        return target
