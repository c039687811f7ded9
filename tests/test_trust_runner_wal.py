"""The write-ahead log stays within a fixed bound during a long run and is emptied at its end.

A real ``daydream run`` subprocess does a long offline run while the test measures the ``-wal``
file every few milliseconds. With the checkpoint threshold T (``$DAYDREAM_WAL_CHECKPOINT_BYTES``)
the log must stay under 2 x T plus one batch (daydream.run.checkpoints); without the runner's
checkpoints the same run's log grows several times past that.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import yaml

from daydream.design.catalog import repo_catalog_dir
from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort
from tests.runner_fixtures import daydream_cmd, subprocess_env

MIB = 2**20
THRESHOLD = 4 * MIB
BATCH_ALLOWANCE = 2 * MIB  # the largest batch of an offline run writes ~1.5 MB of log


def offline_ledger(tmp: Path, replicates: int) -> Ledger:
    spec = yaml.safe_load((repo_catalog_dir().parent / "cohorts" / "demo.yaml").read_text())
    spec["axes"]["draft_replicate"] = replicates  # 88 generations per replicate
    (tmp / "long.yaml").write_text(yaml.safe_dump(spec))
    ledger = Ledger.init(tmp / "ledger.db")[0]
    plan_cohort(ledger, tmp / "long.yaml", cohort_id="long")
    return ledger


def run_measuring_the_log(ledger: Ledger, threshold: int) -> tuple[int, subprocess.CompletedProcess]:
    wal = Path(f"{ledger.path}-wal")
    peak = [0]
    done = threading.Event()

    def measure() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], wal.stat().st_size)
            except FileNotFoundError:
                pass
            time.sleep(0.002)

    watcher = threading.Thread(target=measure)
    watcher.start()
    try:
        result = subprocess.run(daydream_cmd("run", "--db", str(ledger.path), "--quiet"), capture_output=True,
                                text=True, timeout=300,
                                env=subprocess_env(DAYDREAM_WAL_CHECKPOINT_BYTES=str(threshold)))
    finally:
        done.set()
        watcher.join()
    return peak[0], result


def test_the_log_stays_bounded_during_a_long_run_and_is_emptied_at_its_end(tmp_path: Path) -> None:
    ledger = offline_ledger(tmp_path, replicates=20)
    size_before = ledger.path.stat().st_size
    peak, result = run_measuring_the_log(ledger, THRESHOLD)
    assert result.returncode == 0, result.stderr
    assert ledger.query("SELECT COUNT(*) FROM gen_state WHERE status != 'completed'") == [(0,)]
    grown = ledger.path.stat().st_size - size_before
    bound = 2 * THRESHOLD + BATCH_ALLOWANCE
    assert grown > bound, "the run must write more than the bound for the test to mean anything"
    assert peak <= bound, f"the log reached {peak / MIB:.1f} MiB (bound {bound / MIB:.0f} MiB)"
    assert Path(f"{ledger.path}-wal").stat().st_size == 0  # truncated at the end of the run


def test_without_the_runners_checkpoints_the_same_run_grows_the_log_past_the_bound(tmp_path: Path) -> None:
    # Twice the work of the bounded run: commits of a run of local calls are few and dense, and
    # the log must grow well past twice the bound for the comparison to mean anything.
    ledger = offline_ledger(tmp_path, replicates=40)
    peak, result = run_measuring_the_log(ledger, 2**40)  # the keeper never fires: SQLite's own 160 MB
    assert result.returncode == 0, result.stderr
    assert peak > 2 * (2 * THRESHOLD + BATCH_ALLOWANCE)
