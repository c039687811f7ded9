"""Built-in daydream plugin: the ``offline`` provider, a deterministic stand-in for an LLM.

It makes no network call. Its answer depends only on (gen_id, prompt) and is written by
``daydream.offline_text``. Every answer is labelled as coming from ``daydream-offline-v1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from daydream.contracts import CallRequest, CallResult
from daydream.hookspecs import hookimpl
from daydream.offline_text import OFFLINE_MODEL, estimate_tokens, extract_terms, offline_answer

__all__ = ["OFFLINE_MODEL", "PROVIDER_NAME", "OfflineProvider", "estimate_tokens", "extract_terms", "offline_answer"]

PROVIDER_NAME = "offline"


class OfflineProvider:
    """A provider that answers instantly with ``offline_answer``; never fails, costs nothing."""

    name = PROVIDER_NAME
    # Nothing leaves the machine and nothing is paid: the runner records no LLMCallSent for it.
    local = True

    def __init__(self, model: dict[str, Any]) -> None:
        self.model = model

    async def complete(self, request: CallRequest) -> CallResult:
        started = time.perf_counter()
        text = offline_answer(request.gen_id, request.prompt)
        return CallResult(
            text=text, finish_reason="stop", prompt_tokens=estimate_tokens(request.prompt),
            completion_tokens=estimate_tokens(text), cost_usd=0.0,
            latency_s=time.perf_counter() - started, requested_model=request.provider_model,
            resolved_model=OFFLINE_MODEL, request_id=None, provider=PROVIDER_NAME,
            extra={"offline": True},
        )

    async def aclose(self) -> None:
        return None


def create_offline_provider(model: dict[str, Any], **options: Any) -> OfflineProvider:
    """Factory for the ``offline`` provider (options such as ``timeout_s`` are irrelevant here)."""
    return OfflineProvider(model)


@hookimpl
def register_providers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``offline`` provider."""
    register(PROVIDER_NAME, create_offline_provider)
