"""Benchmark: appending 100,000 small events, measured side by side with raw sqlite3 inserts.

Runs, in one process and one go: our single-event appends (one transaction each), our batched
appends (1,000 per transaction, hash chain included), and plain ``sqlite3.executemany`` of the same
rows into a plain table (same columns, no triggers, no chain) — then prints events/s and ratios.

    uv run python bench/ledger_append.py [--events 100000] [--single 100000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from daydream.ledger import Ledger, NewEvent, canonical_json, utc_now


def small_events(n: int) -> list[NewEvent]:
    return [NewEvent(f"bench:{i % 1000}", "BenchTicked", {"i": i, "note": "small"}) for i in range(n)]


def ours_batched(folder: Path, events: list[NewEvent], batch: int) -> float:
    ledger = Ledger.init(folder / "batched.db")[0]
    start = time.perf_counter()
    for i in range(0, len(events), batch):
        ledger.append(events[i:i + batch])
    elapsed = time.perf_counter() - start
    assert ledger.count() == len(events)
    return elapsed


def ours_single(folder: Path, events: list[NewEvent]) -> float:
    ledger = Ledger.init(folder / "single.db")[0]
    start = time.perf_counter()
    for e in events:
        ledger.append([e])
    return time.perf_counter() - start


def raw_executemany(folder: Path, events: list[NewEvent], batch: int, indexed: bool = False) -> float:
    conn = sqlite3.connect(folder / ("raw_indexed.db" if indexed else "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, stream TEXT, version INTEGER, type TEXT,"
                 " payload TEXT, recorded_at TEXT, causation_seq INTEGER, prev_hash TEXT, hash TEXT"
                 + (", UNIQUE(stream, version))" if indexed else ")"))
    if indexed:  # the same indexes the ledger keeps, to show what the chain itself costs
        conn.execute("CREATE INDEX ix_type_seq ON events (type, seq)")
    now = utc_now()
    start = time.perf_counter()
    seq = 0
    for i in range(0, len(events), batch):
        rows = []
        for e in events[i:i + batch]:
            seq += 1
            rows.append((seq, e.stream, seq // 1000 + 1, e.type, canonical_json(e.payload), now, None, "", ""))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
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
            raw.append(raw_executemany(folder, events, args.batch))
            indexed.append(raw_executemany(folder, events, args.batch, indexed=True))
            batched.append(ours_batched(folder, events, args.batch))
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
