"""What ``daydream run`` was asked to do: the options every part of a run reads."""

from __future__ import annotations

import os
from dataclasses import dataclass

from daydream.run import claims
from daydream.run.checkpoints import WAL_CHECKPOINT_BYTES

DEFAULT_CONCURRENCY = 16
DEFAULT_MAX_RESPONSE_BYTES = 1_000_000
# A model whose calls fail this many generations in a row (after their retries), with no success in
# between, is stopped for the run: its endpoint is down or refuses everything, and its remaining
# work stays pending instead of being failed one generation at a time.
DEFAULT_FAILURE_STREAK = 5


@dataclass
class RunOptions:
    """What ``daydream run`` was asked to do."""

    cohort: str | None = None
    stage: str | None = None
    limit: int | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    budget: float | None = None
    dry_run: bool = False
    replay_from: str | None = None
    timeout_s: float = float(os.environ.get("DAYDREAM_TIMEOUT_S", "300"))
    max_tries: int = 4
    retry_base_s: float = float(os.environ.get("DAYDREAM_RETRY_BASE_S", "1.0"))
    retry_cap_s: float = 60.0
    # The longest one call may take (it is cut off at 90%), and the lease of a claim whose worker
    # has no heartbeat row; a live worker's claims are kept by its heartbeat instead.
    lease_s: float = float(os.environ.get("DAYDREAM_LEASE_S", "900"))
    # Seconds without a heartbeat after which this worker's claims may be taken over.
    claim_grace_s: float = claims.DEFAULT_GRACE_S
    # Seconds between heartbeats (None: a fifth of the grace, at most 10 s).
    heartbeat_s: float | None = None
    max_response_bytes: int = int(os.environ.get("DAYDREAM_MAX_RESPONSE_BYTES", DEFAULT_MAX_RESPONSE_BYTES))
    failure_streak: int = DEFAULT_FAILURE_STREAK
    wal_checkpoint_bytes: int = WAL_CHECKPOINT_BYTES
    batch_size: int = 500

    def heartbeat_interval(self) -> float:
        """Seconds between two heartbeats of this run."""
        if self.heartbeat_s is not None:
            return self.heartbeat_s
        return max(0.05, min(self.claim_grace_s / 5, 10.0))
