"""A run that fills the disk stops with one clear line; freeing the log's bound plus what the ledger
still has to grow is enough for a plain re-run to finish.

Needs a real small filesystem: the test mounts a tmpfs of a few MB (root in a container allows it)
and is skipped where mounting is not permitted.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from daydream.design.catalog import repo_catalog_dir
from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort
from tests.runner_fixtures import daydream_cmd, subprocess_env

MIB = 2**20
THRESHOLD = 2 * MIB  # the checkpoint threshold; the log stays under 2 x this plus one batch
BOUND = 2 * THRESHOLD + 2 * MIB


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def free_bytes(path: Path) -> int:
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize


def run(ledger: Ledger) -> subprocess.CompletedProcess:
    return subprocess.run(daydream_cmd("run", "--db", str(ledger.path), "--quiet"), capture_output=True,
                          text=True, timeout=300, env=subprocess_env(DAYDREAM_WAL_CHECKPOINT_BYTES=str(THRESHOLD)))


def test_a_full_disk_stops_the_run_and_freeing_the_bound_lets_it_finish(small_disk: Path, tmp_path: Path) -> None:
    spec = yaml.safe_load((repo_catalog_dir().parent / "cohorts" / "demo.yaml").read_text())
    spec["axes"]["draft_replicate"] = 12  # ~1,050 offline generations: the ledger grows ~7 MB
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    ledger = Ledger.init(small_disk / "ledger.db")[0]
    plan_cohort(ledger, tmp_path / "spec.yaml", cohort_id="full")
    ledger.close()
    # Leave room for about half the run.
    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (free_bytes(small_disk) - 5 * MIB))

    first = run(ledger)
    assert first.returncode == 1, first.stdout + first.stderr
    assert first.stderr.count("\n") == 1 and "disk is full" in first.stderr and "re-run" in first.stderr
    assert "Traceback" not in first.stderr
    done = ledger.query("SELECT COUNT(*) FROM gen_state WHERE status = 'completed'")[0][0]
    total = ledger.query("SELECT COUNT(*) FROM gen_state")[0][0]
    assert 0 < done < total
    ledger.verify()

    # Free the log's bound plus what the ledger still has to grow (measured on a copy of the full
    # run elsewhere: ~7 KB per generation), and nothing more.
    still_to_grow = (total - done) * 8 * 1024
    ballast.unlink()
    (small_disk / "ballast").write_bytes(b"\0" * max(0, free_bytes(small_disk) - BOUND - still_to_grow))
    second = run(ledger)
    assert second.returncode == 0, second.stderr
    assert ledger.query("SELECT COUNT(*) FROM gen_state WHERE status != 'completed'") == [(0,)]
    ledger.verify()
