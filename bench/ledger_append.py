"""Benchmark: appending 100,000 small events, measured side by side with raw sqlite3 inserts.

Runs, in one process and one go: our single-event appends (one transaction each), our batched
appends (1,000 per transaction, hash chain included), and plain ``sqlite3.executemany`` of exactly
the rows our ledger stored into a plain table (no indexes, no triggers, nothing computed), and into
a table with the ledger's two indexes — then prints events/s and ratios.

    uv run python bench/ledger_append.py [--events 100000] [--single 100000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from daydream.ledger import Ledger, NewEvent


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


def ours_single(folder: Path, events: list[NewEvent]) -> float:
    ledger = Ledger.init(folder / "single.db")[0]
    start = time.perf_counter()
    for e in events:
        ledger.append([e])
    return time.perf_counter() - start


def raw_executemany(folder: Path, rows: list[tuple], batch: int, indexed: bool = False) -> float:
    """Time plain ``executemany`` of exactly the rows our ledger stored (hashes included)."""
    conn = sqlite3.connect(folder / ("raw_indexed.db" if indexed else "raw.db"), isolation_level=None)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=100_000, help="events for the single-event run")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3, help="repeats of the batched/raw pair (median)")
    args = parser.parse_args()
    events = small_events(args.events)
    batched, raw, indexed = [], [], []
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            elapsed, rows = ours_batched(folder, events, args.batch)
            batched.append(elapsed)
            raw.append(raw_executemany(folder, rows, args.batch))
            indexed.append(raw_executemany(folder, rows, args.batch, indexed=True))
    with tempfile.TemporaryDirectory() as tmp:
        single = ours_single(Path(tmp), events[:args.single])
    b, w, x = statistics.median(batched), statistics.median(raw), statistics.median(indexed)
    print(f"events: {args.events:,}  batch: {args.batch}  repeats: {args.repeat} (medians)")
    print(f"raw sqlite3 executemany (plain table):  {args.events / w:>10,.0f} events/s")
    print(f"raw executemany, same two indexes:       {args.events / x:>10,.0f} events/s")
    print(f"ours, batched (chain + triggers):        {args.events / b:>10,.0f} events/s")
    print(f"ours, single-event transactions:         {args.single / single:>10,.0f} events/s")
    print(f"ratio batched/raw: {w / b:.2f}   (target >= 0.50)")
    print(f"ratio batched/raw with the same indexes: {x / b:.2f}")
    print(f"ratio single/raw:  {(args.single / single) / (args.events / w):.3f}")


if __name__ == "__main__":
    main()
