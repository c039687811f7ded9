"""Benchmark: appending 100,000 small events, measured side by side with raw sqlite3 inserts.

Runs, in one process and one go: our single-event appends (one transaction each), our batched
appends (1,000 per transaction, hash chain included), and plain ``sqlite3.executemany`` of exactly
the rows our ledger stored (hashes included, nothing computed, same batches and transactions) into
  - a plain table with SQLite's defaults (the reference of the 0.5x target),
  - a table with the two indexes the ledger must keep, UNIQUE(stream, version) and (type, seq),
    with SQLite's defaults and with the ledger's page size: what SQLite alone costs for that schema,
    i.e. the best any implementation keeping those indexes could do with zero work in Python;
and times ``chain_events`` alone (what an append computes in Python: canonical JSON, versions and
the sha256 chain). Single-event appends are set beside plain ``sqlite3`` single-row transactions
(``BEGIN IMMEDIATE``, one INSERT, ``COMMIT``) into the indexed table with the ledger's pages, and
beside empty write transactions of the ledger's backend (what its connection handling costs).
Prints events/s, ratios, and where the time of one event goes.

With ``--pg URL`` (or ``$DAYDREAM_TEST_PG``; a server where the URL's user may create databases)
the same batched appends, and a run of single-event appends, also go into a fresh PostgreSQL
ledger (issue 17: the chain head's row lock, executemany in psycopg's pipeline), printed next to
SQLite's batched rate.

    uv run python bench/ledger_append.py [--events 100000] [--single 100000] [--pg URL]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from daydream.ledger import db
from daydream.ledger.store import EVENT_COLUMNS, Ledger, NewEvent, chain_events


def small_events(n: int) -> list[NewEvent]:
    return [NewEvent(f"bench:{i % 1000}", "BenchTicked", {"i": i, "note": "small"}) for i in range(n)]


def ours_batched(folder: Path, events: list[NewEvent], batch: int) -> tuple[float, list[tuple]]:
    """Time our batched appends; return the time and the rows as stored (for the raw baseline)."""
    ledger = Ledger.init(folder / "batched.db")[0]
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        ledger.append(events[i:i + batch])
    elapsed = time.perf_counter() - start
    rows = ledger.query("SELECT seq, stream, version, type, payload, recorded_at, causation_seq, prev_hash, hash "
                        "FROM events ORDER BY seq")
    assert len(rows) == len(events)
    return elapsed, rows


def ours_single(folder: Path, events: list[NewEvent]) -> tuple[float, list[tuple]]:
    ledger = Ledger.init(folder / "single.db")[0]
    start = time.perf_counter()
    for e in events:
        ledger.append([e])
    elapsed = time.perf_counter() - start
    return elapsed, ledger.query(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")


def empty_writes(folder: Path, n: int) -> float:
    """Time ``n`` empty write transactions of the ledger's backend (lend a connection, BEGIN IMMEDIATE, COMMIT)."""
    ledger = Ledger.init(folder / "empty.db")[0]
    start = time.perf_counter()
    for _ in range(n):
        ledger.backend.write(lambda cur: None)
    return time.perf_counter() - start


def raw_single(folder: Path, rows: list[tuple]) -> float:
    """Time plain single-row write transactions of the same rows, two indexes, the ledger's pages."""
    conn = sqlite3.connect(folder / "raw_single.db", isolation_level=None)
    conn.execute(f"PRAGMA page_size = {db.PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT,"
                 " payload TEXT, recorded_at TEXT, causation_seq INTEGER, prev_hash TEXT, hash TEXT,"
                 " UNIQUE(stream, version))")
    conn.execute("CREATE INDEX ix_type_seq ON events (type, seq)")
    start = time.perf_counter()
    for row in rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def chain_only(events: list[NewEvent], rows: list[tuple], batch: int) -> float:
    """Time ``chain_events`` alone (what an append computes in Python), same batches, no SQLite."""
    versions: dict[str, int] = {}
    seq, prev = 0, rows[0][7]
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        chained, _ = chain_events(events[i:i + batch], seq, prev, versions, rows[i][5])
        seq, prev = chained[-1][0], chained[-1][8]
    elapsed = time.perf_counter() - start
    assert prev == rows[-1][8]  # the same chain the ledger stored
    return elapsed


def raw_executemany(folder: Path, rows: list[tuple], batch: int, indexed: bool = False,
                    page_size: int | None = None) -> float:
    """Time plain ``executemany`` of exactly the rows our ledger stored (hashes included)."""
    conn = sqlite3.connect(folder / f"raw_{indexed}_{page_size}.db", isolation_level=None)
    if page_size:
        conn.execute(f"PRAGMA page_size = {page_size}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT,"
                 " payload TEXT, recorded_at TEXT, causation_seq INTEGER, prev_hash TEXT, hash TEXT"
                 + (", UNIQUE(stream, version))" if indexed else ")"))
    if indexed:  # the same indexes the ledger keeps, to show what the chain itself costs
        conn.execute("CREATE INDEX ix_type_seq ON events (type, seq)")
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows[i:i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def pg_appends(url: str, events: list[NewEvent], batch: int, single: int) -> tuple[float, float]:
    """Batched and single-event appends into a fresh PostgreSQL ledger: (batched seconds, single seconds)."""
    import uuid

    import psycopg
    from urllib.parse import urlsplit, urlunsplit

    name = f"daydream_bench_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        ledger = Ledger.init(urlunsplit(parts._replace(path=f"/{name}")))[0]
        start = time.perf_counter()
        for i in range(0, len(events), batch):
            ledger.append(events[i:i + batch])
        batched = time.perf_counter() - start
        extra = [NewEvent(f"single:{i % 100}", "BenchTicked", {"i": i}) for i in range(single)]
        start = time.perf_counter()
        for e in extra:
            ledger.append([e])
        one = time.perf_counter() - start
        assert ledger.verify()[0] == len(events) + single
        ledger.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return batched, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=100_000, help="events for the single-event run")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the batched/raw pair (median)")
    parser.add_argument("--floors", action="store_true",
                        help="also measure the floors behind the 0.5x target: the indexed raw insert at "
                             "every page size, and CPython's cost of the JSON and sha256 alone")
    parser.add_argument("--pg", default=os.environ.get("DAYDREAM_TEST_PG"),
                        help="a PostgreSQL server's URL: also append there (default $DAYDREAM_TEST_PG)")
    parser.add_argument("--pg-single", type=int, default=2000, help="single-event appends on PostgreSQL")
    args = parser.parse_args()
    events = small_events(args.events)
    batched, raw, indexed, indexed_pages, chain = [], [], [], [], []
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            elapsed, rows = ours_batched(folder, events, args.batch)
            batched.append(elapsed)
            raw.append(raw_executemany(folder, rows, args.batch))
            indexed.append(raw_executemany(folder, rows, args.batch, indexed=True))
            indexed_pages.append(raw_executemany(folder, rows, args.batch, indexed=True, page_size=db.PAGE_SIZE))
            chain.append(chain_only(events, rows, args.batch))
    with tempfile.TemporaryDirectory() as tmp:
        single, single_rows = ours_single(Path(tmp), events[:args.single])
        single_raw = raw_single(Path(tmp), single_rows)
        empty = empty_writes(Path(tmp), args.single)
    b, w, x, xp, c = (statistics.median(v) for v in (batched, raw, indexed, indexed_pages, chain))
    n = args.events
    print(f"events: {n:,}  batch: {args.batch}  repeats: {args.repeat} (medians)")
    print(f"raw executemany, plain table, SQLite defaults:        {n / w:>10,.0f} events/s   1.00")
    print(f"raw executemany, the ledger's two indexes, defaults:  {n / x:>10,.0f} events/s   {w / x:.2f}")
    print(f"raw executemany, two indexes, {db.PAGE_SIZE // 1024} KiB pages (ledger's): {n / xp:>10,.0f} events/s   "
          f"{w / xp:.2f}  <- SQLite alone with these indexes: nothing computed")
    print(f"ours, batched (chain + projections + indexes):       {n / b:>10,.0f} events/s   {w / b:.2f}"
          f"  (target >= 0.50)")
    print(f"ours, single-event transactions:                      {args.single / single:>10,.0f} events/s   "
          f"{(args.single / single) / (n / w):.3f}")
    print(f"raw single-row transactions, two indexes, ledger's pages: {args.single / single_raw:>8,.0f} events/s   "
          f"ours/raw time {single / single_raw:.2f}")
    print(f"empty write transactions of the backend:              {args.single / empty:>10,.0f} /s   "
          f"{empty / args.single * 1e6:.1f} us each (ours single: {single / args.single * 1e6:.1f} us)")
    print(f"chain_events alone (JSON + sha256 chain, no SQLite):  {n / c:>10,.0f} events/s   "
          f"{c / n * 1e6:.2f} us/event")
    print(f"ratio batched/raw with the same indexes and pages: {xp / b:.2f}")
    if args.pg:
        pg_batched = [pg_appends(args.pg, events, args.batch, 0)[0] for _ in range(args.repeat)]
        pb = statistics.median(pg_batched)
        _, pg_single = pg_appends(args.pg, events[:args.batch], args.batch, args.pg_single)
        print(f"ours, batched, PostgreSQL (loopback):                 {n / pb:>10,.0f} events/s   {w / pb:.2f}"
              f"  (takes {pb / b:.2f}x SQLite's batched time)")
        print(f"ours, single-event transactions, PostgreSQL:          {args.pg_single / pg_single:>10,.0f} events/s"
              f"   ({pg_single / args.pg_single * 1e6:.0f} us each; {args.pg_single:,} appends)")
    if args.floors:
        floors(events, args.batch, args.repeat, w / n)
    print(f"per event: ours {b / n * 1e6:.2f} us = SQLite with the indexes {xp / n * 1e6:.2f} us + the rest "
          f"{(b - xp) / n * 1e6:.2f} us (chain alone {c / n * 1e6:.2f} us); plain table {w / n * 1e6:.2f} us")


def floors(events: list[NewEvent], batch: int, repeat: int, plain: float) -> None:
    """What no ledger keeping these indexes and this chain can go below, measured here."""
    import hashlib

    from daydream.ledger.store import _encode_payload

    print("floors (medians):")
    best = None
    for page_size in (4096, 8192, 16384, 32768, 65536):
        times = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                rows = ours_batched(folder, events, batch)[1]
                times.append(raw_executemany(folder, rows, batch, indexed=True, page_size=page_size))
        t = statistics.median(times) / len(events)
        best = t if best is None else min(best, t)
        print(f"  raw executemany with the two indexes, {page_size // 1024:>2} KiB pages: {t * 1e6:5.2f} us/event")
    payloads = [e.payload for e in events]
    encoded = [_encode_payload(p) for p in payloads]
    start = time.perf_counter()
    for p in payloads:
        _encode_payload(p)
    json_t = (time.perf_counter() - start) / len(events)
    blobs = [(64 * "0" + '{"causation_seq":null,"payload":' + j + ',"recorded_at":"2026-11-30T00:00:00.000000Z",'
              '"seq":123456,"stream":"bench:123","type":"BenchTicked","version":100}').encode() for j in encoded]
    start = time.perf_counter()
    for b in blobs:
        hashlib.sha256(b).hexdigest()
    sha_t = (time.perf_counter() - start) / len(events)
    budget = 2 * plain
    print(f"  canonical JSON of a payload (C encoder) {json_t * 1e6:.2f} us + sha256 of the event {sha_t * 1e6:.2f} us"
          f" = {(json_t + sha_t) * 1e6:.2f} us/event")
    print(f"  0.5x of the plain table allows {budget * 1e6:.2f} us/event; the best indexed insert plus JSON and "
          f"sha256 alone need {(best + json_t + sha_t) * 1e6:.2f} us")


if __name__ == "__main__":
    main()
