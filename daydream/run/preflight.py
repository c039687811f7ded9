"""Checks made before a run claims anything: can every model the pending work needs be called?

``check_run`` looks at the models of the unfinished work in scope (``daydream.run.pending``), as the
ledger records them (``recorded_models``: a model's identity is fixed by its first plan, its
settings are the newest recorded), and finds, for each: its key variable set (and usable as a
header), its base URL well formed, its provider registered, and its price known (``price_in`` and
``price_out``) or deliberately unknown (``price: unknown``); with a budget, a model of unknown price
is refused unless the run allows unpriced models. ``require_ready`` turns the problems into one
``PreflightFailed`` line naming the models and what to fix, so a run that cannot work stops before
recording anything: a missing key never shows up as a failed call.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from daydream.errors import DaydreamError, NotFound
from daydream.ledger.store import Ledger

# The endpoint an ``openai`` model without a base_url calls (as the catalog and provider default).
DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
# Providers that never send a request anywhere, so need neither key, URL nor price.
NO_NETWORK_PROVIDERS = ("offline",)


class PreflightFailed(DaydreamError):
    """A run would fail for reasons known before any call: missing keys, bad URLs, unknown prices."""


@dataclass
class ModelCheck:
    """What was checked for one model the pending work needs."""

    model_id: str | None
    calls: int
    provider: str | None = None
    base_url: str | None = None
    key_env: str | None = None
    key: str = "not needed"  # "set", "missing", "unusable" or "not needed"
    price: str = "known"     # "known", "unknown" (price: unknown), "missing", or "free to replay"
    price_in: float | None = None
    price_out: float | None = None
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for ``--verbose``."""
        where = f"{self.provider or '?'}{', ' + self.base_url if self.base_url else ''}"
        key = f"key ${self.key_env} {self.key}" if self.key_env else "no key"
        if self.price == "known":
            price = f"${self.price_in:g} / ${self.price_out:g} per 1M tokens in / out"
        else:
            price = f"price {self.price}"
        verdict = "; ".join(self.problems) if self.problems else "ok"
        return f"model {self.model_id} ({where}): {self.calls:,} pending calls, {key}, {price}: {verdict}"


@dataclass
class Preflight:
    """The checks of one run: per model, and the problems that stop it (empty: it may start)."""

    models: list[ModelCheck]
    problems: list[str]

    @property
    def ok(self) -> bool:
        """True when nothing stops the run."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``--json``)."""
        return {"ok": self.ok, "problems": self.problems, "models": [asdict(m) for m in self.models]}


def require_cohort(ledger: Ledger, cohort: str) -> None:
    """``NotFound`` (exit 1) naming the known cohorts when ``cohort`` has no generations."""
    if ledger.query("SELECT 1 FROM cohort_members WHERE cohort_id = ? LIMIT 1", (cohort,)):
        return
    known = [r[0] for r in ledger.query("SELECT DISTINCT cohort_id FROM cohort_members ORDER BY 1")]
    raise NotFound(f"cohort {cohort!r} has no generations in ledger {ledger.path} "
                   f"(cohorts: {', '.join(known) or 'none'}; see 'daydream cohort list')")


def base_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be called (None when it can). The URL itself is never repeated: a
    malformed one may hold a secret."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return "base_url does not parse as a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "base_url is not an http(s) URL with a host"
    if "@" in parts.netloc or parts.query or parts.fragment:
        return "base_url holds credentials or a query string"
    return None


def key_state(env: str, environ: Mapping[str, str]) -> str:
    """``set``, ``missing`` (unset or blank) or ``unusable`` (not sendable as an HTTP header), by
    the provider's own rule; the value is never returned or shown."""
    value = (environ.get(env) or "").strip()
    if not value:
        return "missing"
    return "set" if all("!" <= char <= "~" for char in value) else "unusable"


def check_run(ledger: Ledger, *, cohort: str | None = None, stage: str | None = None,
              budget: float | None = None, allow_unpriced: bool = False, replay: bool = False,
              environ: Mapping[str, str] | None = None) -> Preflight:
    """Check every model the unfinished work in scope needs (see the module docstring).

    ``replay`` (``--replay-from``) answers every call from another ledger: no key, URL or price is
    needed then. Reads the ledger only.
    """
    from daydream import plugins
    from daydream.design.catalog import price_status, recorded_models
    from daydream.errors import PluginError
    from daydream.run.pending import pending_calls_by_model

    environ = os.environ if environ is None else environ
    needed = pending_calls_by_model(ledger, cohort, stage)
    recorded = recorded_models(ledger) if needed else {}
    providers = plugins.providers() if needed and not replay else None
    checks: list[ModelCheck] = []
    for model_id, calls in needed.items():
        check = ModelCheck(model_id, calls)
        checks.append(check)
        found = recorded.get(model_id or "")
        if found is None:
            check.problems.append(f"model {model_id!r} is in no catalog snapshot of this ledger"
                                  if model_id else "no model named (an llm-mode generation without a model)")
            continue
        definition = found.definition
        check.provider = "replay" if replay else str(definition.get("provider") or "openai")
        check.price_in, check.price_out = definition.get("price_in"), definition.get("price_out")
        if replay:
            check.price = "free to replay"
            continue
        if providers is not None:
            try:
                providers.get(check.provider)
            except PluginError as exc:
                check.problems.append(str(exc))
        if check.provider in NO_NETWORK_PROVIDERS:
            check.price = "known" if price_status(definition) == "known" else "free (offline)"
            continue
        check.key_env = definition.get("api_key_env") or None
        if check.key_env:
            check.key = key_state(check.key_env, environ)
        url = definition.get("base_url") or (DEFAULT_BASE_URL if check.provider == "openai" else None)
        if url:
            problem = base_url_problem(str(url))
            check.base_url = None if problem else str(url)
            if problem:
                check.problems.append(problem)
        check.price = price_status(definition)
        if check.price == "missing":
            check.problems.append("no price in the catalog: add price_in and price_out (USD per 1M tokens), or "
                                  "'price: unknown', and plan again")
        elif check.price == "unknown" and budget is not None and not allow_unpriced:
            check.problems.append(f"price unknown, so --budget {budget:g} cannot hold: add price_in and price_out "
                                  "to the catalog and plan again, or give --allow-unpriced")
        if check.key == "missing":
            check.problems.append(f"${check.key_env} is not set")
        elif check.key == "unusable":
            check.problems.append(f"${check.key_env} is not a usable key (spaces, control or non-ASCII characters)")
    return Preflight(checks, _summarise(checks))


def _summarise(checks: list[ModelCheck]) -> list[str]:
    """Problems as short clauses, the models that share one named together."""
    models_of: dict[str, list[str]] = {}
    for check in checks:
        for problem in check.problems:
            models_of.setdefault(problem, []).append(str(check.model_id))
    return [f"{'model' if len(models) == 1 else 'models'} {', '.join(models)}: {problem}"
            for problem, models in models_of.items()]


def require_ready(preflight: Preflight) -> None:
    """``PreflightFailed`` (exit 1), one line naming every model and what to fix, unless all is well."""
    if preflight.ok:
        return
    raise PreflightFailed("cannot start the run: " + "; ".join(preflight.problems)
                          + " (nothing was claimed or recorded)")
