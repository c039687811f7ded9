"""One generation in a run's hands (``Job``), and the record of a request whose answer never came.

A job tracks which tries of its call were announced (``LLMCallSent`` handed to the writer), handed
to the provider, and answered: from those, a release or a takeover knows which requests left
without an answer and records each as ``LLMCallLost`` (outcome unknown, cost estimated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from daydream.ledger.events import LLMCallLost, gen_stream
from daydream.run import claims
from daydream.run.pacing import model_params
from daydream.run.pending import PendingGeneration


@dataclass
class Job:
    """A generation this run is working on."""

    gen: PendingGeneration
    prompt: str | None = None
    prompt_hash: str | None = None
    attempt: int = 1
    call: int = 0
    local: bool = False      # the provider reaches no one (offline, replay): no LLMCallSent
    marked_try: int = 0      # the last try whose LLMCallSent was handed to the writer
    sent_try: int = 0        # the last try whose request was handed to the provider
    answered_try: int = 0    # the last try whose outcome was handed to the writer
    reserved_usd: float = 0.0  # the budget this job holds while its call is in flight
    reserving: bool = False    # it holds a reservation (even of $0: a call in flight)
    # A local call's claim, not yet handed to the writer: it goes with the call's first outcome.
    deferred_claim: tuple[list[Any], list[str]] | None = None

    @property
    def stream(self) -> str:
        return gen_stream(self.gen.gen_id)


class LostCalls:
    """Builds ``LLMCallLost`` events, estimating each lost request's cost from the ledger."""

    def __init__(self, models: dict[str, dict[str, Any]], provider_name: Callable[[dict[str, Any] | None], str]) -> None:
        self.models = models
        self.provider_name = provider_name
        self._estimates: dict[tuple[str, str], tuple[int | None, int]] = {}

    def event(self, job: Job, try_: int, reason: str, *, sent: bool | None, worker: dict[str, Any],
              sent_seq: int | None, prompt_chars: int | None, query: Any) -> LLMCallLost:
        """``LLMCallLost``: a request that (maybe) left and whose outcome will never be known."""
        gen = job.gen
        model = self.models.get(gen.model_id or "") or {"id": gen.model_id}
        _t, max_tokens = model_params(model, gen.stage)
        estimate = claims.estimate_lost_cost(query, model, gen.stage, prompt_chars, max_tokens, self._estimates)
        return LLMCallLost(gen_id=gen.gen_id, attempt=job.attempt, call=job.call, try_=try_, model_id=gen.model_id,
                           provider=self.provider_name(model), sent=sent, sent_seq=sent_seq, worker=worker,
                           reason=reason, **estimate)
