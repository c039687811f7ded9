"""What a run did, counted as it goes: per stage, calls, tokens, money, failures and lost requests.

``RunStats`` is also the snapshot the progress display and the end-of-run summary read; it is
updated only in the event loop (the writer reports commits back there).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from daydream.ledger.events import DomainEvent, GenerationFailed, LLMCallLost, ParseFailed, ResponseParsed
from daydream.read.failures import FailureGroup
from daydream.run.pending import STAGE_ORDER, PendingGeneration


@dataclass
class StageStats:
    """Live counters for one stage: this run's (``done``, ``failed``) and the ledger's, in scope."""

    done: int = 0            # completed by this run
    failed: int = 0          # failed in this run
    pending: int = 0         # in the ledger: waiting to run (ready or blocked by their parent)
    in_flight: int = 0       # in this run's hands (rendering, waiting for a call slot, calling, writing)
    calls_in_flight: int = 0  # requests sent and not answered yet (at most the models' concurrency)
    total: int = 0           # in the ledger: generations of the stage in scope
    finished: int = 0        # in the ledger: completed or failed, whoever did it
    done_before: int = 0     # finished before this run started


@dataclass
class RunStats:
    """What a run did; also the snapshot handed to the progress callback."""

    stages: dict[str, StageStats] = field(default_factory=lambda: defaultdict(StageStats))
    calls: int = 0
    failed_calls: int = 0
    calls_in_flight: int = 0  # requests sent and not answered yet, all stages
    tokens: int = 0
    spent_usd: float = 0.0
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    copied: int = 0
    lost_claims: int = 0
    stopped_reason: str | None = None
    fatal_models: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    planned: dict[str, dict[str, int]] = field(default_factory=dict)
    # The ledger's counts per stage when the run started (set by the progress display's first report).
    started_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    # Generations of this run that failed, by (reason, stage, model).
    failures: dict[tuple[str, str, str | None], FailureGroup] = field(default_factory=dict)
    # Requests recorded as lost by this run (taken-over claims of dead workers, interrupted calls).
    lost_calls: int = 0
    lost_estimated_usd: float = 0.0
    lost_unestimated: int = 0
    taken_over: int = 0
    truncated: int = 0
    replay_misses: int = 0
    replay_miss_example: str | None = None
    waited_s: float = 0.0
    # --budget: generations left pending because their call could not fit; the limit and what
    # calls in flight held when the run ended.
    budget_usd: float | None = None
    budget_left_pending: int = 0
    # Answers whose response reported no usage: their cost is estimated from the texts.
    estimated_calls: int = 0
    estimated_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {
            "stages": {k: vars(v) for k, v in sorted(self.stages.items(), key=lambda kv: STAGE_ORDER.get(kv[0], 9))},
            "calls": self.calls, "failed_calls": self.failed_calls, "tokens": self.tokens,
            "spent_usd": round(self.spent_usd, 6), "completed": self.completed, "failed": self.failed,
            "copied": self.copied, "stopped_reason": self.stopped_reason,
            "fatal_models": self.fatal_models, "elapsed_s": round(time.monotonic() - self.started, 3),
            "failures": [g.as_dict() for g in self.failure_groups()],
            "lost_calls": self.lost_calls, "lost_estimated_usd": round(self.lost_estimated_usd, 6),
            "lost_without_estimate": self.lost_unestimated,
            "taken_over": self.taken_over, "truncated_responses": self.truncated,
            "budget_usd": self.budget_usd, "budget_left_pending": self.budget_left_pending,
            "cost_estimated_calls": self.estimated_calls, "cost_estimated_usd": round(self.estimated_usd, 6),
            "replay_misses": self.replay_misses, "waited_for_other_workers_s": round(self.waited_s, 1),
        }

    def failure_groups(self) -> list[FailureGroup]:
        """This run's failures, largest group first."""
        return sorted(self.failures.values(), key=lambda g: (-g.count, g.stage, g.error_class))

    def record_failure(self, error_class: str, gen: PendingGeneration, reason: str, cohort: str | None) -> None:
        """Count one failed generation of this run under its reason, stage and model."""
        key = (error_class, gen.stage or "?", gen.model_id)
        self.failures.setdefault(key, FailureGroup(*key)).add(gen.gen_id or "?", reason, cohort)

    def count_committed(self, events: list[DomainEvent], gen: PendingGeneration | None, outcome: bool,
                        cohort: str | None) -> None:
        """Count what a committed write recorded: lost requests, and (``outcome``: the write was a
        generation's result) what came of the generation."""
        for event in events:
            if isinstance(event, LLMCallLost):
                self.lost_calls += 1
                self.lost_estimated_usd += event.estimated_cost_usd or 0.0
                self.lost_unestimated += event.estimated_cost_usd is None
        if not outcome or gen is None:
            return
        stage = self.stages[gen.stage]
        for event in events:
            if isinstance(event, ResponseParsed):
                stage.done += 1
                self.completed += 1
                if gen.generator == "copy":
                    self.copied += 1
                break
            if isinstance(event, (GenerationFailed, ParseFailed)):
                stage.failed += 1
                self.failed += 1
                # A parse failure's reason class is the event's own name.
                error_class = event.TYPE if isinstance(event, ParseFailed) else (event.error_class or "Unknown")
                self.record_failure(error_class, gen, event.reason or "", cohort)
                break
