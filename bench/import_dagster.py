"""Benchmark: importing a 10,000-generation Dagster data root (target: under 30 s).

Builds a synthetic root with ``tests/dagster_root.py`` (1,000 drafts, 1,000 essays, 8,000
evaluations, ~1.5 KB per text, 12 synthetic concepts; no seed data needed, so every checkout measures
the same thing), imports it into a fresh ledger with ``daydream import``'s code path and prints wall
time and generations/s. Then it re-imports the same root, which must append nothing: the importer
recognises a generation already in the ledger by its id and does not read its files again, so that
figure is the cost of walking the root and looking ids up, and is printed as such (not as files
checked).

    uv run python bench/import_dagster.py [--combos 250] [--chars 1500] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from dagster_root import build_dagster_root  # noqa: E402

from daydream.transfer.importer import import_dagster  # noqa: E402
from daydream.ledger.store import Ledger  # noqa: E402

# 12 concepts give 4,083 distinct combinations of 2 or more: room for --combos up to that.
CONCEPTS = [f"bench-concept-{i:02d}" for i in range(12)]


def run(folder: Path, combos: int, chars: int) -> None:
    start = time.perf_counter()
    built = build_dagster_root(
        folder / "root", concepts=CONCEPTS, n_combos=combos,
        draft_templates=("creative-synthesis-v10", "creative-synthesis-v7"),
        draft_models=("gemini_25_pro", "sonnet-4"),
        evaluation_templates=("daydreaming-verification-v2", "novelty-v2", "style-coherence-v3",
                              "creativity-metrics-v2"),
        evaluation_models=("sonnet-4", "gemini_25_pro"), text_chars=chars)
    n = len(built.all_ids)
    print(f"built root: {n} generations ({len(built.drafts)} drafts, {len(built.essays)} essays, "
          f"{len(built.evaluations)} evaluations) in {time.perf_counter() - start:.1f} s")

    ledger = Ledger.init(folder / "ledger.db")[0]
    start = time.perf_counter()
    report = import_dagster(ledger, built.root)
    wall = time.perf_counter() - start
    imported = sum(c.imported + c.incomplete for c in report.stages.values())
    assert imported == n and not report.problems, (imported, report.problems[:3])
    print(f"import:    {wall:6.2f} s wall, {n / wall:8.0f} gens/s, {report.events_appended} events, "
          f"{ledger.query('SELECT COUNT(*) FROM texts')[0][0]} texts "
          f"({'PASS' if wall < 30 else 'FAIL'}: target < 30 s)")

    start = time.perf_counter()
    again = import_dagster(ledger, built.root)
    wall = time.perf_counter() - start
    skipped = sum(c.skipped for c in again.stages.values())
    assert again.events_appended == 0 and skipped == n, (again.events_appended, skipped)
    print(f"re-import: {wall:6.2f} s wall, {skipped} generations already in the ledger, skipped by id "
          f"without reading their files ({skipped / wall:,.0f} ids/s); 0 events appended")

    start = time.perf_counter()
    ledger.verify()
    print(f"verify:    {time.perf_counter() - start:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--combos", type=int, default=250, help="combos (each gives 40 generations)")
    parser.add_argument("--chars", type=int, default=1500, help="characters per text file")
    parser.add_argument("--keep", type=Path, help="build in this (new) folder instead of a temp one")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
        run(args.keep, args.combos, args.chars)
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args.combos, args.chars)


if __name__ == "__main__":
    main()
