"""Failed generations grouped by reason, with the next step for each group.

Used by ``daydream run`` (the failures of this run) and ``daydream failures`` (the ``failures``
view, i.e. every generation whose current attempt failed). A reason is the failure's error class
(``ServerError``, ``ParseFailed``, ``ValidationFailed`` …); a group is one reason at one stage on
one model, with a count, one example and what to do about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daydream.ledger.backend import column_names
from daydream.ledger.events import PARSE_FAILED
from daydream.ledger.store import Ledger

# Error classes of call failures that say the endpoint (not the answer) was the problem.
_ENDPOINT = {"ServerError", "Timeout", "ConnectionError", "RateLimited", "RequestTimeout",
             "MalformedResponse", "UpstreamError", "ResponseTooLarge"}
_REQUEST = {"ClientError", "RequestError", "InvalidResponse"}
_ANSWER = {PARSE_FAILED, "ValidationFailed", "UnknownParser"}  # a ParseFailed event's class is its type
_CATALOG = {"TemplateError", "TemplateMissing", "UnknownModel", "ParentMissing"}


@dataclass
class FailureGroup:
    """Failed generations sharing a reason, stage and model."""

    error_class: str
    stage: str
    model_id: str | None
    count: int = 0
    example_gen_id: str = ""
    example_reason: str = ""
    cohorts: set[str] = field(default_factory=set)

    def add(self, gen_id: str, reason: str, cohort: str | None = None) -> None:
        """Count one more failure (the first one seen is the example)."""
        self.count += 1
        if not self.example_gen_id:
            self.example_gen_id, self.example_reason = gen_id, reason
        if cohort:
            self.cohorts.add(cohort)

    def as_dict(self, cohort: str | None = None) -> dict[str, Any]:
        """JSON-able, with the next step."""
        return {"reason": self.error_class, "stage": self.stage, "model_id": self.model_id,
                "count": self.count, "example_gen_id": self.example_gen_id,
                "example": self.example_reason, "next_step": next_step(self, cohort)}


def next_step(group: FailureGroup, cohort: str | None = None) -> str:
    """What to do about a group of failures, as a command or a fix."""
    cohorts = sorted({cohort} if cohort else group.cohorts)
    target = f"--cohort {cohorts[0]}" if len(cohorts) == 1 else "--cohort ID"
    rerun = f"daydream rerun {target} --failed, then daydream run {target}"
    reason = group.error_class
    if reason in _ENDPOINT:
        return f"the endpoint kept failing; once it answers again: {rerun}"
    if reason in _REQUEST:
        return (f"the endpoint refused the request: check model {group.model_id}'s name, base_url and "
                f"parameters in the catalog, then {rerun}")
    if reason in _ANSWER:
        return (f"the answers did not parse or validate: look at one (daydream show {group.example_gen_id}); "
                f"fix the template, parser or max_tokens, then {rerun}")
    if reason in _CATALOG:
        return f"fix the catalog (template or model), plan again, then {rerun}"
    if reason == "Imported":
        return f"failed in the pipeline it was imported from: {rerun} to run it here"
    return f"see daydream show {group.example_gen_id}, then {rerun}"


def group_rows(rows: list[dict[str, Any]]) -> list[FailureGroup]:
    """Group ``failures`` view rows (with a ``cohort_id`` column) by reason, stage and model."""
    groups: dict[tuple[str, str, str | None], FailureGroup] = {}
    for r in rows:
        key = (r["error_class"] or "Unknown", r["stage"], r["model_id"])
        groups.setdefault(key, FailureGroup(*key)).add(r["gen_id"], r["reason"] or "", r.get("cohort_id"))
    return sorted(groups.values(), key=lambda g: (-g.count, g.stage, g.error_class, g.model_id or ""))


def list_failures(ledger: Ledger, cohort: str | None = None) -> list[dict[str, Any]]:
    """Rows of the ``failures`` view (of one cohort, or all), newest failure first."""
    sql = ("SELECT f.gen_id, f.stage, f.model_id, f.template_id, f.attempt, f.error_class, f.reason, "
           "f.calls, f.failed_calls, f.blocked_children, f.failed_seq, {cohort} AS cohort_id "
           "FROM failures f {where} ORDER BY f.failed_seq DESC, f.gen_id")
    if cohort:
        sql = sql.format(cohort="?", where="JOIN cohort_members m ON m.gen_id = f.gen_id AND m.cohort_id = ?")
        params: tuple[Any, ...] = (cohort, cohort)
    else:
        sql = sql.format(cohort="f.origin_cohort_id", where="")
        params = ()
    with ledger.backend.read() as conn:
        cursor = conn.execute(sql, params)
        names = column_names(cursor)
        return [dict(zip(names, row)) for row in cursor.fetchall()]
