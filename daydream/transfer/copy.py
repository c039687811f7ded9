"""``daydream copy SRC DEST``: a ledger copied between SQLite files and PostgreSQL databases.

Either direction (and SQLite to SQLite). Everything read from SRC comes from one read snapshot
(``Backend.snapshot``), so a ledger that runners keep appending to can be copied while they work:
the copy is SRC as it was when the copy began. DEST is created when it does not exist yet (a new
SQLite file, or an empty PostgreSQL database), and upgraded to the newest schema.

Rows are copied verbatim — the payload's stored JSON text, ``recorded_at``, hashes — never
re-appended (``append`` would stamp and hash them anew), and each event is checked on the way:
seq without gaps, ``prev_hash`` equal to the hash before it, a payload that parses, and the hash
recomputed from the content. A flaw stops the copy before the chunk holding it is written.

Into a non-empty DEST only the missing suffix is appended, and only when DEST is a prefix of SRC:
SRC must hold DEST's last event with the same hash (the chain makes one hash enough; DEST's own
chain is ``verify``'s business). Anything else is refused in one line, with nothing written.

Texts go first (all of SRC's texts that DEST lacks, each checked against its hash and length),
then events in chunks; each chunk is one write transaction of DEST that checks DEST's head is
still where the copy left it, inserts the rows, runs DEST's projections on them and moves its
chain head. Texts written before a refused event stay: they are content-addressed and harmless.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daydream.errors import DaydreamError, LedgerIntegrityError
from daydream.ledger import db
from daydream.ledger.backend import EVENT_COLUMNS
from daydream.ledger.store import (ADVANCE_HEAD, GENESIS_HASH, LAST_EVENT, PROJECT_EVENTS, Ledger, event_hash,
                                   text_hash)

EVENT_CHUNK = 5000
TEXT_CHUNK = 500


class CopyRefused(DaydreamError):
    """The copy cannot go ahead (DEST is not a prefix of SRC, SRC's chain is broken, DEST changed)."""


@dataclass(frozen=True)
class CopyResult:
    """What a copy did: events and texts written to DEST, and DEST's head afterwards."""

    src: str
    dest: str
    events: int
    texts: int
    dest_seq: int
    dest_hash: str
    dest_was: int


def shown(db_path: str) -> str:
    """A ledger location for messages (a PostgreSQL URL without its password)."""
    if db.is_postgres(db_path):
        from daydream.ledger.pg_backend import redact

        return redact(db_path)
    return str(db_path)


def _open_dest(dest: str) -> Ledger:
    if not db.is_postgres(dest) and not Path(dest).exists():
        return Ledger.init(dest)[0]
    try:
        return Ledger.open(dest)
    except db.LedgerNotInitialised:
        return Ledger.init(dest)[0]  # an empty PostgreSQL database, or an empty SQLite file


def copy_ledger(src: str, dest: str, *, progress: Callable[[str], None] | None = None) -> CopyResult:
    """Copy SRC's events and texts that DEST lacks into DEST; see the module docstring."""
    say = progress or (lambda _msg: None)
    if not db.is_postgres(src) and not db.is_postgres(dest) and Path(src).resolve() == Path(dest).resolve():
        raise CopyRefused(f"SRC and DEST are the same ledger ({shown(src)})")
    source = Ledger.open(src, readonly=True)
    target = _open_dest(dest)
    try:
        return _copy(source, target, src, dest, say)
    finally:
        source.close()
        target.close()


def _dest_head(target: Ledger) -> tuple[int, str]:
    with target.backend.read() as conn:
        row = conn.execute(LAST_EVENT).fetchone()
    return (row[0], row[1]) if row else (0, GENESIS_HASH)


def _copy(source: Ledger, target: Ledger, src: str, dest: str, say: Callable[[str], None]) -> CopyResult:
    n, h = _dest_head(target)
    with source.backend.snapshot() as conn:
        cur = conn.cursor()
        last = cur.execute(LAST_EVENT).fetchone()
        src_seq = last[0] if last else 0
        if n > src_seq:
            raise CopyRefused(f"DEST {shown(dest)} has {n:,} events and SRC {shown(src)} only {src_seq:,}: DEST is "
                              "not a prefix of SRC; nothing copied")
        if n:
            row = cur.execute("SELECT hash FROM events WHERE seq = :seq", {"seq": n}).fetchone()
            if row is None or row[0] != h:
                theirs = row[0][:12] if row else "none"
                raise CopyRefused(f"event {n} differs (DEST {h[:12]}…, SRC {theirs}…): DEST {shown(dest)} is not a "
                                  f"prefix of SRC {shown(src)}; nothing copied")
        texts = _copy_texts(cur, target)
        if texts:
            say(f"copied {texts:,} texts")
        events, head = _copy_events(cur, target, n, h, say)
    return CopyResult(shown(src), shown(dest), events, texts, head[0], head[1], n)


def _copy_texts(cur, target: Ledger) -> int:
    """SRC's texts that DEST lacks, each checked against its hash and length; returns how many."""
    copied = 0
    after = ""
    while True:
        batch = cur.execute("SELECT sha256, text, chars FROM texts WHERE sha256 > :after ORDER BY sha256 "
                            "LIMIT :n", {"after": after, "n": TEXT_CHUNK}).fetchall()
        if not batch:
            return copied
        after = batch[-1][0]
        have = {r[0] for r in _existing_texts(target, [r[0] for r in batch])}
        rows = []
        for key, body, chars in batch:
            if key in have:
                continue
            if text_hash(body) != key or len(body) != chars:
                raise CopyRefused(f"SRC text {key[:16]}… does not match its hash or length; nothing more copied "
                                  "(run 'daydream verify' on SRC)")
            rows.append((key, body, chars))
        if rows:
            target.backend.write(lambda c, rows=rows: target.backend.insert_texts(c, rows))
            copied += len(rows)


def _existing_texts(target: Ledger, keys: list[str]) -> list[tuple]:
    in_keys, params = target.backend.in_list("h", keys)
    return target.backend.query(f"SELECT sha256 FROM texts WHERE sha256 {in_keys}", params)


def _copy_events(cur, target: Ledger, n: int, h: str, say: Callable[[str], None]) -> tuple[int, tuple[int, str]]:
    copied = 0
    seq, prev = n, h
    while True:
        batch = cur.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > :after ORDER BY seq LIMIT :n",
                            {"after": seq, "n": EVENT_CHUNK}).fetchall()
        if not batch:
            return copied, (seq, prev)
        rows = []
        for row in batch:
            e_seq, stream, version, type_, payload, recorded_at, causation, prev_hash, hash_ = row
            if e_seq != seq + 1:
                raise CopyRefused(f"SRC event {seq + 1} is missing (next is {e_seq}); {copied:,} events copied")
            if prev_hash != prev:
                raise CopyRefused(f"SRC event {e_seq}: prev_hash does not match the previous event's hash; "
                                  f"{copied:,} events copied")
            try:
                json.loads(payload)
            except ValueError:
                raise CopyRefused(f"SRC event {e_seq}: payload is not valid JSON; {copied:,} events copied") from None
            if event_hash(prev, e_seq, stream, version, type_, payload, recorded_at, causation) != hash_:
                raise CopyRefused(f"SRC event {e_seq}: hash does not match the event's content (altered); "
                                  f"{copied:,} events copied")
            rows.append(tuple(row))
            seq, prev = e_seq, hash_
        _write_chunk(target, rows)
        copied += len(rows)
        say(f"copied events up to seq {seq:,}")


def _write_chunk(target: Ledger, rows: list[tuple]) -> None:
    """One DEST transaction: head unchanged since the copy's last chunk, rows in, projections, head moved."""
    before, before_hash = rows[0][0] - 1, rows[0][7]
    last_seq, last_hash = rows[-1][0], rows[-1][8]

    def work(cur) -> None:
        row = cur.execute(LAST_EVENT).fetchone()
        now = (row[0], row[1]) if row else (0, GENESIS_HASH)
        if now != (before, before_hash):
            raise CopyRefused(f"DEST changed during the copy (it is at seq {now[0]}, the copy left it at "
                              f"{before}): another writer appended; run the copy again")
        target.backend.insert_events(cur, rows)
        # The ledger's own view of the schema (projected types, stored head), as its appends use it.
        projected = target._projected_types(cur)
        if any(r[3] in projected for r in rows):
            cur.execute(PROJECT_EVENTS, (before,))
        if target._has_head:
            cur.execute(ADVANCE_HEAD, {"seq": last_seq, "hash": last_hash, "was_seq": before, "was_hash": before_hash})
            if cur.rowcount != 1:
                raise LedgerIntegrityError(None, "DEST's stored chain head is not its last event; nothing copied: "
                                                 "run 'daydream verify' on DEST")

    target.backend.write(work)


def snapshot_path(url: str) -> Path:
    """Where browse keeps the SQLite snapshot of a PostgreSQL ledger (one per URL, password left out)."""
    import hashlib
    import os

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "daydream" / "snapshots"
    return cache / f"pg-{hashlib.sha256(shown(url).encode()).hexdigest()[:16]}.db"


def refresh_snapshot(url: str, path: Path | None = None) -> tuple[Path, CopyResult]:
    """A SQLite snapshot of the PostgreSQL ledger ``url``, brought up to date by ``copy_ledger``.

    The snapshot from an earlier browse is kept and only the new suffix copied; one that is not a
    prefix any more (another ledger at that URL) is replaced. Datasette reads SQLite only.
    """
    target = path or snapshot_path(url)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        return target, copy_ledger(url, str(target))
    except (CopyRefused, LedgerIntegrityError):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        return target, copy_ledger(url, str(target))


__all__ = ["CopyRefused", "CopyResult", "copy_ledger", "refresh_snapshot", "shown", "snapshot_path"]
