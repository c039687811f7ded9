"""Benchmark: the runner against a loopback stub LLM server in another process.

1. N generations (default 1,000) against a stub answering after 200 ms at concurrency 50: wall
   time vs the ideal ``calls × latency ÷ concurrency``, and their ratio (target ≤ 1.25). Each
   request is on record before it leaves (its claim commits first), so a commit's round trip is
   part of every call; ``--repeat`` runs it several times and reports the median, which a shared
   machine's load disturbs less than a single run.
2. The same with 0 ms latency: generations per second of pure orchestration (target ≥ 300/s).
3. Peak memory (max RSS) of a ``daydream run`` subprocess doing 20,000 generations.
4. ``--scale 10000,100000``: write amplification of offline runs of that many drafts (no server),
   in this process: bytes written (``/proc/self/io``: ``wchar`` = every write() SQLite made,
   ``write_bytes`` = what reached the disk) against the final ledger's size (target: at most 5x at
   100,000), CPU per generation (user = ours, system = mostly SQLite's I/O; target: flat from 10k
   to 100k), and where the writes go: commits, log frames (read from the log after each commit),
   the rest (checkpoints copying pages back). Then the per-generation figures of every scale side
   by side, with the last scale's over the first's. Skips parts 1-3.

    uv run python bench/run_stub.py [--n 1000] [--repeat 3] [--big 20000] [--scale 10000,100000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort
from daydream.run.checkpoints import WAL_CHECKPOINT_BYTES, WAL_CHECKPOINT_MAX_BYTES
from daydream.run.runner import RunOptions, run_cohort

REPO = Path(__file__).resolve().parent.parent
KEY_ENV = "DAYDREAM_BENCH_KEY"


def start_stub(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "daydream.testing", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()  # "listening on http://127.0.0.1:PORT"
    return proc, line.rsplit(" ", 1)[1]


def stub_catalog(folder: Path, base_url: str, concurrency: int) -> tuple[Path, list[str]]:
    """Our catalog copied into ``folder`` with model ``stub`` on the loopback server; its concept ids."""
    catalog = folder / "catalog"
    shutil.copytree(REPO / "specs" / "catalog", catalog)
    models = yaml.safe_load((catalog / "models.yaml").read_text())
    models.append({"id": "stub", "provider": "openai", "model": "stub/bench", "base_url": base_url,
                   "api_key_env": KEY_ENV, "concurrency": concurrency, "price_in": 0, "price_out": 0})
    (catalog / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    return catalog, [c["id"] for c in yaml.safe_load((catalog / "concepts.yaml").read_text())]


def prepare(folder: Path, base_url: str, n: int, concurrency: int) -> Ledger:
    catalog, concepts = stub_catalog(folder, base_url, concurrency)
    combos_per_rep = 364 if len(concepts) >= 14 else len(concepts)
    replicates = -(-n // combos_per_rep)
    spec = {"combos": {"concepts": concepts[:14], "k": 3, "level": "sentence"},
            "axes": {"draft_template": ["link-brainstorm"], "draft_llm": ["stub"],
                     "draft_replicate": replicates}}
    (folder / "bench.yaml").write_text(yaml.safe_dump(spec))
    ledger = Ledger.init(folder / "bench.db")[0]
    plan_cohort(ledger, folder / "bench.yaml", catalog, cohort_id="bench")
    return ledger


def timed_run(n: int, latency: float, concurrency: int) -> tuple[float, int]:
    stub, base_url = start_stub(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = prepare(Path(tmp), base_url, n, concurrency)
            start = time.perf_counter()
            stats = run_cohort(ledger, RunOptions(cohort="bench", concurrency=concurrency, limit=n))
            elapsed = time.perf_counter() - start
            return elapsed, stats.completed
    finally:
        stub.terminate()
        stub.wait()


def peak_memory(n: int, concurrency: int) -> tuple[float, float, int]:
    stub, base_url = start_stub(0.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = prepare(Path(tmp), base_url, n, concurrency)
            env = {**os.environ, KEY_ENV: "bench"}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "daydream", "run", "--db", str(ledger.path), "--quiet",
                            "--concurrency", str(concurrency), "--limit", str(n)], check=True, env=env,
                           stdout=subprocess.DEVNULL)
            elapsed = time.perf_counter() - start
            done = ledger.query("SELECT COUNT(*) FROM gen_state WHERE status = 'completed'")[0][0]
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            return rss_mb, elapsed, done
    finally:
        stub.terminate()
        stub.wait()


def _io() -> dict[str, int]:
    with open("/proc/self/io") as fh:
        return {k: int(v) for k, v in (line.split(": ") for line in fh)}


class WriteCounter:
    """Counts a backend's write transactions, its checkpoints, and the frames its commits added to the log.

    After each commit the new frames of ``<ledger>-wal`` are read (their 24-byte headers only): a
    frame belongs to the current log while it carries the log header's salt, and a log that starts
    over gets a new salt. So ``frames`` is every page image written to the log, each counted once.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.commits = 0
        self.checkpoints = 0
        self.frames = 0
        self.wal = Path(f"{ledger.path}-wal")
        self.page = ledger.query("PRAGMA page_size")[0][0]
        self._salt = b""
        self._offset = 32
        backend = ledger.backend
        write, checkpoint = backend.write, backend.checkpoint

        def counting_write(work):  # type: ignore[no-untyped-def]
            try:
                return write(work)
            finally:
                self.commits += 1
                self.read_log()

        def counting_checkpoint(mode: str) -> tuple[int, int, int]:
            self.read_log()
            self.checkpoints += 1
            return checkpoint(mode)

        backend.write = counting_write  # type: ignore[method-assign]
        backend.checkpoint = counting_checkpoint  # type: ignore[method-assign]

    def read_log(self) -> None:
        """Count the frames appended to the log since the last look."""
        try:
            fh = open(self.wal, "rb")
        except OSError:
            return
        with fh:
            header = fh.read(32)
            if len(header) < 32:
                return
            if header[16:24] != self._salt:  # a new log (it started over): read it from its first frame
                self._salt, self._offset = header[16:24], 32
            while True:
                fh.seek(self._offset)
                frame = fh.read(24)
                if len(frame) < 24 or frame[8:16] != self._salt:
                    return
                self.frames += 1
                self._offset += 24 + self.page


def scale_run(n: int, concurrency: int, offline_concurrency: int | None = None) -> dict[str, float]:
    """Plan and run ``n`` offline drafts; what the run wrote and cost, and the final ledger's size.

    The offline model's concurrency (the catalog's unless ``offline_concurrency``) sets how many
    generations share a commit: the runner writes each round of claims, and of results, together.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        catalog = folder / "catalog"
        shutil.copytree(REPO / "specs" / "catalog", catalog)
        if offline_concurrency:
            models = yaml.safe_load((catalog / "models.yaml").read_text())
            for model in models:
                if model["id"] == "offline":
                    model["concurrency"] = offline_concurrency
            (catalog / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
        concepts = [c["id"] for c in yaml.safe_load((catalog / "concepts.yaml").read_text())]
        spec = {"combos": {"concepts": concepts[:14], "k": 3, "level": "sentence"},
                "axes": {"draft_template": ["link-brainstorm"], "draft_llm": ["offline"],
                         "draft_replicate": -(-n // 364)}}
        (folder / "scale.yaml").write_text(yaml.safe_dump(spec))
        ledger = Ledger.init(folder / "scale.db")[0]
        io0, start = _io(), time.perf_counter()
        plan_cohort(ledger, folder / "scale.yaml", catalog, cohort_id="scale")
        ledger.backend.checkpoint("TRUNCATE")
        io1, planned_at = _io(), time.perf_counter()
        size_planned = ledger.path.stat().st_size
        counter = WriteCounter(ledger)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        stats = run_cohort(ledger, RunOptions(cohort="scale", concurrency=concurrency, limit=n))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        io2, done_at = _io(), time.perf_counter()
        ledger.backend.checkpoint("TRUNCATE")
        size = ledger.path.stat().st_size
        page = ledger.query("PRAGMA page_size")[0][0]
        counter.read_log()
        events = ledger.last_seq()
        return {"n": stats.completed, "events": events, "plan_s": planned_at - start, "run_s": done_at - planned_at,
                "plan_wchar": io1["wchar"] - io0["wchar"], "size_planned": size_planned,
                "wchar": io2["wchar"] - io1["wchar"], "write_bytes": io2["write_bytes"] - io1["write_bytes"],
                "size": size, "growth": size - size_planned,
                "user": cpu1.ru_utime - cpu0.ru_utime, "sys": cpu1.ru_stime - cpu0.ru_stime,
                "commits": counter.commits, "checkpoints": counter.checkpoints,
                "frames": counter.frames, "page": page}


def report_scale(sizes: list[int], concurrency: int, offline_concurrency: int | None) -> None:
    print(f"offline drafts, in-process run (plan not counted in the run's writes), offline model concurrency "
          f"{offline_concurrency or 'as in the catalog'}, WAL checkpoint bound {WAL_CHECKPOINT_BYTES // 2**20} MiB "
          f"or an eighth of the ledger, up to {WAL_CHECKPOINT_MAX_BYTES // 2**20} MiB")
    print(f"{'n':>8} {'run s':>6} {'ledger MB':>9} {'wchar MB':>9} {'x size':>6} {'disk MB':>8} {'x size':>6} "
          f"{'commits':>8} {'gen/commit':>10} {'log MB':>7} {'copied MB':>9}")
    mb = 2**20
    rows = []
    for n in sizes:
        r = scale_run(n, concurrency, offline_concurrency)
        r["log"] = r["frames"] * (r["page"] + 24)
        rows.append(r)
        print(f"{r['n']:>8} {r['run_s']:>6.1f} {r['size'] / mb:>9.1f} {r['wchar'] / mb:>9.1f} "
              f"{r['wchar'] / r['size']:>6.2f} {r['write_bytes'] / mb:>8.1f} {r['write_bytes'] / r['size']:>6.2f} "
              f"{r['commits']:>8} {r['n'] / max(1, r['commits']):>10.1f} {r['log'] / mb:>7.1f} "
              f"{(r['wchar'] - r['log']) / mb:>9.1f}")
        print(f"{'':>8} plan {r['plan_s']:.1f} s wrote {r['plan_wchar'] / mb:.1f} MB for a {r['size_planned'] / mb:.1f} MB "
              f"ledger; the run added {r['growth'] / mb:.1f} MB ({r['events']:,} events in all), "
              f"{r['checkpoints']} checkpoints, {r['page'] // 1024} KiB pages")
    # Per generation, the scales side by side: flat means the last column stays near 1.
    print(f"  {'per generation':<20}" + "".join(f" {r['n']:>10}" for r in rows) + (
        f" {'last/first':>10}" if len(rows) > 1 else ""))
    figures = [("KB written (wchar)", lambda r: r["wchar"] / r["n"] / 1024, "{:.1f}"),
               ("KB to disk", lambda r: r["write_bytes"] / r["n"] / 1024, "{:.1f}"),
               ("log pages", lambda r: r["frames"] / r["n"], "{:.2f}"),
               ("KB copied back", lambda r: (r["wchar"] - r["log"]) / r["n"] / 1024, "{:.1f}"),
               ("ledger KB", lambda r: r["size"] / r["n"] / 1024, "{:.2f}"),
               ("user CPU us", lambda r: r["user"] / r["n"] * 1e6, "{:.0f}"),
               ("system CPU us", lambda r: r["sys"] / r["n"] * 1e6, "{:.0f}")]
    for label, value, fmt in figures:
        line = f"  {label:<20}" + "".join(f" {fmt.format(value(r)):>10}" for r in rows)
        if len(rows) > 1 and value(rows[0]):
            line += f" {value(rows[-1]) / value(rows[0]):>10.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3, help="runs of the 200 ms case (median reported)")
    parser.add_argument("--big", type=int, default=20000, help="generations for the memory run (0: skip)")
    parser.add_argument("--scale", default="", help="comma-separated draft counts for the write-amplification runs")
    parser.add_argument("--offline-concurrency", type=int, default=None,
                        help="--scale: the offline model's concurrency (default: the catalog's)")
    args = parser.parse_args()
    os.environ[KEY_ENV] = "bench"
    if args.scale:
        report_scale([int(x) for x in args.scale.split(",")], args.concurrency, args.offline_concurrency)
        return

    print(f"{args.n} generations, {args.latency * 1000:.0f} ms stub latency, concurrency {args.concurrency}")
    ratios = []
    for _ in range(max(1, args.repeat)):
        wall, done = timed_run(args.n, args.latency, args.concurrency)
        ideal = done * args.latency / args.concurrency
        ratios.append(wall / ideal)
        print(f"  wall {wall:.2f} s   ideal {ideal:.2f} s   ratio {wall / ideal:.2f}")
    print(f"  median ratio {statistics.median(ratios):.2f}   (target <= 1.25)")

    wall0, done0 = timed_run(args.n, 0.0, args.concurrency)
    print(f"{done0} generations, 0 ms stub latency: {wall0:.2f} s = {done0 / wall0:.0f} generations/s "
          "(target >= 300/s)")

    if args.big:
        rss, elapsed, done_big = peak_memory(args.big, args.concurrency)
        print(f"{done_big} generations in a `daydream run` subprocess: {elapsed:.1f} s, "
              f"peak RSS {rss:.0f} MB (target < 300 MB)")


if __name__ == "__main__":
    main()
