"""Per-model call parameters and limits: temperature, max_tokens, concurrency, requests per minute."""

from __future__ import annotations

import asyncio
import time
from typing import Any

FREE_CONCURRENCY = 1
FREE_RPM = 20


def model_params(model: dict[str, Any], stage: str) -> tuple[float | None, int | None]:
    """Temperature and max_tokens for a stage: per-stage override, else the model's default."""
    override = (model.get("stages") or {}).get(stage) or {}
    temperature = override.get("temperature", model.get("temperature"))
    max_tokens = override.get("max_tokens", model.get("max_tokens"))
    return temperature, max_tokens


def model_limits(model: dict[str, Any], global_cap: int) -> tuple[int, int | None]:
    """(concurrency, requests per minute) for a model; ``:free`` models default to 1 and 20/min."""
    free = str(model.get("model") or "").endswith(":free")
    concurrency = model.get("concurrency") or (FREE_CONCURRENCY if free else global_cap)
    rpm = model.get("rpm") or (FREE_RPM if free else None)
    return max(1, min(int(concurrency), global_cap)), (int(rpm) if rpm else None)


class RateLimiter:
    """Requests-per-minute pacing: starts are spaced at least 60/rpm seconds apart."""

    def __init__(self, rpm: int | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self.lock:
            now = time.monotonic()
            delay = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)
