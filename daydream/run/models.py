"""The models a run calls: one provider per model, its call slots and rate limit, the cut-off of a
call at its claim's lease, backoff between retries, and stopping a model whose calls keep failing.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

from daydream import plugins
from daydream.contracts import CallFailed, CallRequest, CallResult
from daydream.run.options import RunOptions
from daydream.run.pacing import RateLimiter, model_limits
from daydream.run.stats import RunStats


class ModelPool:
    """Providers, concurrency and pacing per model for one run."""

    def __init__(self, models: dict[str, dict[str, Any]], options: RunOptions, stats: RunStats) -> None:
        self.models = models
        self.options = options
        self.stats = stats
        self._providers: dict[str, Any] = {}
        self._sems: dict[str, asyncio.Semaphore] = {}
        self._limiters: dict[str, RateLimiter] = {}
        self._streak: dict[str, int] = defaultdict(int)  # model -> generations failed in a row

    def provider_name(self, model: dict[str, Any] | None) -> str:
        """The provider that answers ``model``'s calls in this run."""
        if self.options.replay_from:
            return "replay"
        return (model or {}).get("provider") or "openai"

    def provider(self, model_id: str) -> Any:
        """The provider of ``model_id`` (made on first use; raises DaydreamError for a bad URL …)."""
        if model_id not in self._providers:
            model = self.models[model_id]
            factory = plugins.providers().get(self.provider_name(model))
            options: dict[str, Any] = {"timeout_s": self.options.timeout_s,
                                       "max_response_bytes": self.options.max_response_bytes}
            if self.options.replay_from:
                options["replay_from"] = self.options.replay_from
            self._providers[model_id] = factory(model, **options)
        return self._providers[model_id]

    def limits(self, model_id: str) -> tuple[asyncio.Semaphore, RateLimiter]:
        """The call slots and the rate limiter of ``model_id``."""
        if model_id not in self._sems:
            concurrency, rpm = model_limits(self.models.get(model_id, {}), self.options.concurrency)
            self._sems[model_id] = asyncio.Semaphore(concurrency)
            self._limiters[model_id] = RateLimiter(rpm)
        return self._sems[model_id], self._limiters[model_id]

    def concurrency(self, model_id: str) -> int:
        """How many calls of ``model_id`` may be in flight at once."""
        return model_limits(self.models.get(model_id, {}), self.options.concurrency)[0]

    async def complete(self, provider: Any, request: CallRequest) -> CallResult:
        """One provider attempt, cut off before the claim's lease runs out.

        Providers time out per read, so a server that trickles bytes could hold a call for ever;
        no call may outlive the lease its claim was given.
        """
        deadline = max(1.0, self.options.lease_s * 0.9)
        try:
            return await asyncio.wait_for(provider.complete(request), timeout=deadline)
        except asyncio.TimeoutError:
            raise CallFailed("Timeout", f"no complete answer within {deadline:g}s (90% of the claim's lease)",
                             retryable=True, latency_s=deadline) from None

    def backoff(self, tries: int, retry_after: float | None) -> float:
        """Seconds to wait before try ``tries + 1``: the server's Retry-After, else jittered doubling."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), 600.0) + random.uniform(0, 0.05)
        base = self.options.retry_base_s * (2 ** (tries - 1))
        return min(base, self.options.retry_cap_s) * random.uniform(0.5, 1.0)

    def succeeded(self, model_id: str) -> None:
        """A call of ``model_id`` was answered: its failure streak starts over."""
        self._streak[model_id] = 0

    def gave_up(self, model_id: str, failure: CallFailed, tries: int) -> None:
        """Count a generation whose call failed for good; stop the model after a streak of them."""
        self._streak[model_id] += 1
        streak = self._streak[model_id]
        if streak >= self.options.failure_streak and model_id not in self.stats.fatal_models:
            after = f" after {tries} tries each" if failure.retryable else ""
            self.stats.fatal_models[model_id] = (
                f"{streak} generations in a row failed{after} with no success in between (last: "
                f"{failure.error_class}: {failure.message[:200]}); the endpoint looks down or refuses "
                "every request")

    async def aclose(self) -> None:
        """Close every provider's connections (errors ignored: the run is over)."""
        for provider in self._providers.values():
            closer = getattr(provider, "aclose", None)
            if closer:
                try:
                    await closer()
                except Exception:
                    pass
