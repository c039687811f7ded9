"""Keeping a ledger's write-ahead log bounded while a run appends to it.

SQLite appends every commit to ``<ledger>-wal`` and copies it back into the database at a
checkpoint. Its automatic checkpoint waits for 40 MB of log (``daydream.ledger.db``), never shrinks the
file, and cannot finish while readers (other runners, Datasette) hold older snapshots, so during
long runs the log grew past the ledger itself. The runner's writer therefore checks the log's size
after each batch it commits:

* past ``threshold`` (16 MiB by default, or an eighth of the database, up to 64 MiB: see below) a
  PASSIVE checkpoint copies the log into the database in
  a thread of its own (it never blocks anyone, and the writer goes on meanwhile); the writer then
  finishes it between two of its own commits, with only the last pages left to copy, so that the
  next commit starts the log again from its beginning and the file stops growing;
* past twice the threshold (readers kept the passive ones from finishing) it runs a RESTART
  checkpoint, which waits (up to the busy timeout) for readers to move on, then lets the log start
  over;
* at the end of a run, a TRUNCATE checkpoint folds the log back and leaves it empty.

So while a run writes, the log stays under twice the threshold plus one batch (the writer's
largest transaction; a few MB with essays), whatever the run's length — unless a reader keeps one
snapshot open for longer than the busy timeout. After a disk-full stop, freeing that much plus the
ledger's own growth is enough to resume.

Why the bound grows with the database: a checkpoint writes every page the log holds once, and
most pages a run's commits touch at random (the texts' hash index) are different in each log
while the log is small against the database, so each is copied back at nearly every checkpoint.
A log an eighth of the database's size lets the same pages meet in one log, and keeps the bytes
copied back per generation about flat as a ledger grows (bench/run_stub.py --scale: 0.8x the
copies at 100,000 generations with 64 MiB against 16 MiB; the same at 10,000). SQLite's own
automatic checkpoint (``daydream.ledger.backend``) waits for more log than twice the largest bound,
so the runner's passes, off the writer's thread, are the ones that run.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from daydream.ledger.db import WAL_SIZE_LIMIT_BYTES
from daydream.ledger.store import Ledger

WAL_CHECKPOINT_BYTES = int(os.environ.get("DAYDREAM_WAL_CHECKPOINT_BYTES", 16 * 2**20))
# The bound grows to an eighth of the database, up to this (never below the threshold given).
WAL_CHECKPOINT_MAX_BYTES = 64 * 2**20


class WalKeeper:
    """Checkpoints one ledger's log at a bounded size; cheap to call after every commit."""

    def __init__(self, ledger: Ledger, threshold: int = WAL_CHECKPOINT_BYTES) -> None:
        self.ledger = ledger
        # The log file is trimmed back only to WAL_SIZE_LIMIT_BYTES when it starts over, so the
        # file's size measures the log only above that: a threshold below it would checkpoint
        # after every commit.
        self.floor = max(int(threshold), 2 * WAL_SIZE_LIMIT_BYTES)
        self.wal = Path(f"{ledger.path}-wal")
        self.threshold = self.floor
        self._grow()
        self.checkpoints = 0
        self.peak = 0
        self._running = threading.Lock()  # held while a background pass copies
        self._copied = threading.Event()  # a background pass is done: the writer finishes it

    def size(self) -> int:
        """Bytes in the log file now (0 when there is none)."""
        try:
            return self.wal.stat().st_size
        except OSError:
            return 0

    def _grow(self) -> None:
        """Set the bound from the database's size now (an eighth of it, between floor and cap)."""
        try:
            database = Path(self.ledger.path).stat().st_size
        except OSError:
            return
        self.threshold = max(self.floor, min(database // 8, WAL_CHECKPOINT_MAX_BYTES))

    def after_commit(self) -> None:
        """Checkpoint when the log passed its bound (call from the writer, outside a transaction).

        The copying (and its fsync) is done by a thread of its own while the writer goes on; the
        writer then finishes the pass itself between two of its commits, which is what lets the
        log start over (a checkpoint beside a busy writer never catches up), and by then only the
        last few pages are left to copy. Never raises: a checkpoint that cannot run now (readers,
        no space for the database to grow) is tried again later, and a full disk stops the next
        commit anyway.
        """
        size = self.size()
        self.peak = max(self.peak, size)
        if self._copied.is_set():
            self._copied.clear()
            self._finish(size)
        elif size >= 2 * self.threshold:  # the background passes fell behind: all of it here
            # A background pass may still be copying; SQLite runs one checkpoint at a time, so one
            # started beside it would fail at once and the log would grow on. Wait for it first.
            with self._running:
                self._copied.clear()
                self._finish(size)
        elif size >= self.threshold and self._running.acquire(blocking=False):
            threading.Thread(target=self._copy, name="daydream-wal-checkpoint", daemon=True).start()

    def _copy(self) -> None:
        try:
            self._checkpoint("PASSIVE")
        except sqlite3.Error:
            pass
        finally:
            self._running.release()
            self._copied.set()

    def _finish(self, size: int) -> None:
        try:
            busy, logged, copied = self._checkpoint("PASSIVE")
            if (busy or copied < logged) and size >= 2 * self.threshold:
                self._checkpoint("RESTART")
        except sqlite3.Error:
            pass
        self._grow()  # the database grew by what was copied back

    def truncate(self) -> None:
        """Fold the whole log into the database and empty it (end of a run); never raises."""
        if not self._running.acquire(timeout=60):
            return
        try:
            self._checkpoint("TRUNCATE")
        except sqlite3.Error:
            pass  # readers still busy, or no space: the next run's checkpoints catch up
        finally:
            self._running.release()

    def _checkpoint(self, mode: str) -> tuple[int, int, int]:
        # Outside any transaction (a checkpoint inside one could not copy past its own snapshot).
        row = self.ledger.backend.checkpoint(mode)
        self.checkpoints += 1
        return row
