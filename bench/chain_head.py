"""Benchmark: what the stored chain head (migration 0006) costs appends and verify, side by side.

Appends the same small events to two ledgers in one process, alternating rounds: one at schema
0005 (no ``chain_head``: the append code skips the head) and one at head (every append advances
the head with a compare-and-set UPDATE in its transaction). Single-event appends (one transaction
each, where one more row update weighs most) and batches of 1,000. Then times ``check_integrity``
(chain + head + text references + texts) on a ledger with a text per event. Prints medians and
ratios.

    uv run python bench/chain_head.py [--events 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from alembic import command

from daydream.ledger import db
from daydream.ledger.store import Ledger, NewEvent


def at_revision(path: Path, revision: str) -> Ledger:
    backend = db.create_backend(path, create=True)
    with db.schema_connection(backend) as conn:
        command.upgrade(db._alembic_config(conn), revision)
        if conn.in_transaction():
            conn.commit()
    return Ledger(path, backend)


def events(n: int, offset: int) -> list[NewEvent]:
    return [NewEvent(f"bench:{(offset + i) % 1000}", "BenchTicked", {"i": offset + i}) for i in range(n)]


def time_appends(ledger: Ledger, batch: list[NewEvent], size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(batch), size):
        ledger.append(batch[i:i + size])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="events per round and mode")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians are printed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ledgers = {"0005 (no head)": at_revision(folder / "old.db", "0005_llm_calls_by_stream"),
                   "0006 (head)": at_revision(folder / "new.db", "head")}
        for size, label in ((1, "single-event appends"), (1000, "batches of 1,000")):
            n = args.events if size > 1 else max(1, args.events // 4)
            times: dict[str, list[float]] = {k: [] for k in ledgers}
            offset = 0
            for _ in range(args.rounds):
                for name, ledger in ledgers.items():
                    times[name].append(time_appends(ledger, events(n, offset), size))
                offset += n
            base, head = (statistics.median(times[k]) for k in ledgers)
            print(f"{label:>22}: 0005 {n / base:>9,.0f} ev/s   0006 {n / head:>9,.0f} ev/s   "
                  f"ratio 0006/0005 time {head / base:.3f}")
        for ledger in ledgers.values():
            ledger.close()

        texts = Ledger.init(folder / "texts.db")[0]
        n = args.events * 2
        for i in range(0, n, 1000):
            chunk = [f"text {j}" for j in range(i, i + 1000)]
            from daydream.ledger.store import text_hash
            texts.append([NewEvent(f"gen:{j}", "LLMCallCompleted", {"text_hash": text_hash(t), "i": j})
                          for j, t in zip(range(i, i + 1000), chunk)], texts=chunk)
        runs = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            report = texts.check_integrity()
            runs.append(time.perf_counter() - start)
        per = statistics.median(runs) / report.events * 1e6
        print(f"{'check_integrity':>22}: {report.events:,} events, {report.referenced_texts:,} referenced texts: "
              f"median {statistics.median(runs):.3f} s ({per:.1f} µs per event)")


if __name__ == "__main__":
    main()
