"""The money a run may spend (``--budget``): a call goes out only while its worst case still fits."""

from __future__ import annotations

from typing import Any

from daydream.run.job import Job
from daydream.run.pacing import model_params
from daydream.run.stats import RunStats


class Budget:
    """Reservations against ``limit`` USD: spent so far plus what calls in flight may still cost."""

    def __init__(self, limit: float | None, stats: RunStats) -> None:
        self.limit = limit
        self.stats = stats
        self.reserved = 0.0

    def reserve(self, job: Job, model: dict[str, Any]) -> bool:
        """Reserve ``job``'s worst case; False when it would not fit."""
        if self.limit is None:
            return True
        price_in, price_out = model.get("price_in"), model.get("price_out")
        estimate = 0.0
        if price_in or price_out:
            _t, max_tokens = model_params(model, job.gen.stage)
            estimate = (2000 * (price_in or 0) + (max_tokens or 2000) * (price_out or 0)) / 1e6
        if self.stats.spent_usd + self.reserved + estimate > self.limit:
            return False
        self.reserved += estimate
        job.reserved_usd = estimate
        return True

    def release(self, job: Job) -> None:
        """``job``'s call is over: what it cost is in ``stats.spent_usd`` now."""
        self.reserved -= job.reserved_usd
        job.reserved_usd = 0.0
