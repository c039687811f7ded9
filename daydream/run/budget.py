"""The money a run may spend (``--budget``): a hard ceiling on what its calls can commit.

A call is sent only if what the run has spent, plus the worst case of every call in flight, plus
this call's worst case fits in the budget. The worst case of a call is its rendered prompt's token
count (estimated from its length) times ``price_in`` plus the stage's ``max_tokens`` times
``price_out`` (USD per million tokens). A call that does not fit waits while calls in flight may
still free part of their reservation; once nothing is in flight and it still does not fit, it is
left pending (never claimed, so nothing is released or failed) and cheaper calls go on.

The estimate learns from the answers: a model that reports more prompt tokens per character than
assumed raises the estimate of its later prompts, and a call is never assumed to cost less than the
dearest call of the same model and stage did in this run (a provider's reported cost may exceed
what the catalog's prices say). Calls already in flight when an answer shows the estimate was low
can still overshoot; with concurrency 1 spending stays within the budget whenever a model's calls
cost no more than its dearest so far.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from daydream.run.job import Job
from daydream.run.pacing import model_params
from daydream.run.stats import RunStats

# Prompt characters per token assumed before a model's answers say otherwise (as ``run.estimate``).
CHARS_PER_TOKEN = 4.0
# Output tokens assumed for a model with no ``max_tokens`` (its output is unbounded otherwise).
UNBOUNDED_OUTPUT_TOKENS = 4096
# Floating-point slack when adding many reservations (a millionth of a cent).
_EPSILON = 1e-8


def usd(amount: float) -> str:
    """Dollars with enough decimals that a small budget does not print as $0.00."""
    if amount == 0:
        return "$0"
    return f"${amount:.4f}" if abs(amount) >= 0.01 else f"${amount:.6f}"


@dataclass
class Refusal:
    """The first call that could not fit: what it needed and how the budget stood then."""

    gen_id: str
    model_id: str
    worst_case: float
    spent: float
    reserved: float
    left: float


class Budget:
    """Reservations against ``limit`` USD: spent so far plus what calls in flight may still cost."""

    def __init__(self, limit: float | None, stats: RunStats) -> None:
        self.limit = limit
        self.stats = stats
        self.reserved = 0.0
        self.in_flight = 0
        self.refused = 0  # calls left pending because they could not fit
        self.first_refusal: Refusal | None = None
        self._tokens_per_char: dict[str, float] = {}
        self._dearest: dict[tuple[str, str], float] = {}
        self._released = asyncio.Event()

    # ------------------------------------------------------------------ estimates
    def tokens_per_char(self, model_id: str) -> float:
        """Prompt tokens per character for ``model_id``: the most its answers reported, else 1/4."""
        return self._tokens_per_char.get(model_id, 1 / CHARS_PER_TOKEN)

    def prompt_tokens(self, model_id: str, prompt: str) -> int:
        """An estimate of ``prompt``'s token count for ``model_id``."""
        return math.ceil(len(prompt) * self.tokens_per_char(model_id))

    def worst_case(self, job: Job, model: dict[str, Any]) -> float:
        """USD the call of ``job`` may cost at most (0 for a model whose price is not known)."""
        model_id, stage = job.gen.model_id or "", job.gen.stage
        price_in, price_out = _price(model.get("price_in")), _price(model.get("price_out"))
        cost = 0.0
        if price_in or price_out:
            _t, max_tokens = model_params(model, stage)
            output = int(max_tokens) if max_tokens else UNBOUNDED_OUTPUT_TOKENS
            cost = (self.prompt_tokens(model_id, job.prompt or "") * price_in + output * price_out) / 1e6
        return max(cost, self._dearest.get((model_id, stage), 0.0))

    def estimate_cost(self, model: dict[str, Any], prompt: str, answer: str) -> tuple[float, int, int] | None:
        """(USD, prompt tokens, completion tokens) of an answer whose response reported no usage,
        estimated from the texts' lengths; None when the model's price is not known."""
        price_in, price_out = model.get("price_in"), model.get("price_out")
        if price_in is None or price_out is None:
            return None
        per_char = self.tokens_per_char(str(model.get("id") or ""))
        prompt_tokens, completion_tokens = math.ceil(len(prompt) * per_char), math.ceil(len(answer) * per_char)
        cost = (prompt_tokens * float(price_in) + completion_tokens * float(price_out)) / 1e6
        return round(cost, 10), prompt_tokens, completion_tokens

    def observe(self, job: Job, cost: float | None, prompt_tokens: int | None) -> None:
        """Learn from an answer: its prompt's reported token count and what it cost."""
        model_id, stage = job.gen.model_id or "", job.gen.stage
        if prompt_tokens and job.prompt:
            ratio = prompt_tokens / len(job.prompt)
            if ratio > self.tokens_per_char(model_id):
                self._tokens_per_char[model_id] = ratio
        if cost is not None and cost > self._dearest.get((model_id, stage), 0.0):
            self._dearest[(model_id, stage)] = cost

    # ------------------------------------------------------------------ reservations
    @property
    def left(self) -> float:
        """What is neither spent nor reserved (None budget: infinite)."""
        if self.limit is None:
            return math.inf
        return self.limit - self.stats.spent_usd - self.reserved

    async def admit(self, job: Job, model: dict[str, Any]) -> bool:
        """Reserve ``job``'s worst case, waiting while calls in flight may still free enough.
        False when it cannot fit even with nothing in flight: the call is not to be sent."""
        if self.limit is None:
            return True
        while True:
            need = self.worst_case(job, model)
            if self.stats.spent_usd + self.reserved + need <= self.limit + _EPSILON:
                self.reserved += need
                self.in_flight += 1
                job.reserved_usd = need
                job.reserving = True
                return True
            if self.in_flight == 0:
                self.refused += 1
                if self.first_refusal is None:
                    self.first_refusal = Refusal(job.gen.gen_id, job.gen.model_id or "", need,
                                                 self.stats.spent_usd, self.reserved, self.left)
                return False
            released = self._released
            await released.wait()

    def release(self, job: Job) -> None:
        """``job``'s call is over: what it cost is in ``stats.spent_usd`` now."""
        if not job.reserving:
            return
        self.in_flight -= 1
        # Nothing in flight reserves nothing (no float residue from many additions and subtractions).
        self.reserved = max(0.0, self.reserved - job.reserved_usd) if self.in_flight else 0.0
        job.reserved_usd, job.reserving = 0.0, False
        # Wake every call waiting for room; each checks again (a fresh event for the next wait).
        self._released.set()
        self._released = asyncio.Event()

    def stop_line(self) -> str | None:
        """Why calls were left pending, with the money: spent, reserved and left; None if none were."""
        refusal = self.first_refusal
        if refusal is None or self.limit is None:
            return None
        spent = self.stats.spent_usd
        return (f"budget {usd(self.limit)} reached: {usd(spent)} spent, {usd(self.reserved)} reserved, "
                f"{usd(max(0.0, self.limit - spent - self.reserved))} left; a call of {refusal.model_id} needs up to "
                f"{usd(refusal.worst_case)}, so {self.refused} call(s) were left pending")


def _price(value: Any) -> float:
    try:
        return float(value) if value is not None else 0.0
    except (TypeError, ValueError):  # 'unknown': the provider's reported cost is all there is
        return 0.0
