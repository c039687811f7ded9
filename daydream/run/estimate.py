"""What unfinished work will cost before it runs: calls, tokens and money per stage and model.

``estimate_pending`` looks at the unfinished LLM work in scope (planned, or claimed and not answered;
copy-mode work costs nothing) and gives, per stage and model, the number of calls and an expected
and a worst-case token count and cost:

- **Prompt tokens** come from the prompts themselves, rendered as the runner renders them (same
  templates from the ledger, same stage variables, same sandbox), divided by the characters per
  token observed for the model in this ledger (its finished calls' reported prompt tokens against
  their prompts' lengths), else by 4. Groups of more than ``SAMPLE`` generations (same stage,
  template, model and kind of parent) are measured on a fixed pseudo-random sample of them (the
  first ``SAMPLE`` by gen_id, which is a hash).
- **A child whose parent is not written yet** (an essay of a pending draft, an evaluation of a
  pending essay, through copy-mode essays to their draft) cannot be rendered for real: it is
  rendered with a stand-in for the parent's text, whose length is then replaced by an estimate of
  that text: expected, the median parsed length of the finished generations of the parent's
  template × model, else the parent's expected output; worst case, the parent model's
  ``max_tokens`` (for each place the template uses the text).
- **Output tokens**: worst case, the model's ``max_tokens`` for the stage; expected, the median
  completion tokens of the ledger's completed calls of the same template × model, else
  ``max_tokens``. A model without ``max_tokens`` has no worst case (unbounded: shown as unknown).
- **Cost**: tokens × the model's ``price_in`` / ``price_out`` (USD per 1M tokens); unknown for a
  model whose price is unknown. Retries and reruns are not counted.

Everything here reads the ledger; ``scratch_copy`` gives a throw-away copy for estimating a plan
that is not recorded (``cohort plan --dry-run``).
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from daydream.ledger.store import Ledger

CHARS_PER_TOKEN = 4.0
# Prompts rendered per group (stage, template, model, kind of parent); larger groups are sampled.
SAMPLE = 400
# Finished calls per model used to measure its characters per token (the newest are enough).
RATIO_CALLS = 2000
# Stands in for a parent's text that does not exist yet; its length is replaced by an estimate.
STAND_IN = "\x00daydream-parent-text\x00"

_FROM = """FROM gen_state g
LEFT JOIN gen_state p ON p.gen_id = g.parent_gen_id
LEFT JOIN gen_state gp ON gp.gen_id = p.parent_gen_id"""
# Where a generation's parent text stands: none needed, written (its hash known), not written yet.
_PARENT_KIND = """CASE WHEN g.parent_gen_id IS NULL THEN 'none'
     WHEN p.status = 'completed' THEN 'text'
     WHEN p.generator = 'copy' AND gp.status = 'completed' THEN 'text'
     WHEN p.gen_id IS NULL THEN 'missing'
     ELSE 'pending' END"""
# The generation whose output will be the parent's text: the parent, or for a copy its own parent.
_SOURCE = "CASE WHEN p.generator = 'copy' THEN gp.{col} ELSE p.{col} END"
_PARENT_HASH = """CASE WHEN p.status = 'completed' THEN p.parsed_hash
     WHEN p.generator = 'copy' AND gp.status = 'completed' THEN gp.parsed_hash END"""


@dataclass
class EstimateRow:
    """One stage × model: pending calls, tokens and cost (None: cannot be known, see the notes)."""

    stage: str
    model_id: str | None
    calls: int
    prompt_tokens: int | None
    prompt_tokens_max: int | None
    output_tokens: int | None
    output_tokens_max: int | None
    cost_usd: float | None
    cost_usd_max: float | None
    price: str  # "known", "unknown" (price: unknown), "missing", or "unknown model"
    observed_calls: int = 0  # completed calls of the same template × model the expected output comes from


@dataclass
class Estimate:
    """The estimate of a scope's unfinished work; ``notes`` say how it was made and what is unknown."""

    rows: list[EstimateRow]
    notes: list[str] = field(default_factory=list)
    chars_per_token: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> dict[str, Any]:
        """The rows summed (a sum with an unknown part is unknown)."""
        keys = ("prompt_tokens", "prompt_tokens_max", "output_tokens", "output_tokens_max",
                "cost_usd", "cost_usd_max")
        found: dict[str, Any] = {"calls": sum(r.calls for r in self.rows)}
        for key in keys:
            found[key] = _sum([getattr(r, key) for r in self.rows])
        return found

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``--json``)."""
        return {"rows": [asdict(r) for r in self.rows], "total": self.total, "notes": self.notes,
                "chars_per_token": self.chars_per_token}


def _sum(values: list[Any]) -> Any:
    return None if any(v is None for v in values) else sum(values)


@dataclass
class _Group:
    stage: str
    model_id: str | None
    template_id: str | None
    template_hash: str | None
    parent: str  # none / text / pending / missing
    source: tuple[str | None, str | None, str | None]  # (stage, template_id, model_id) of a pending parent
    calls: int = 0


@contextmanager
def scratch_copy(ledger: Ledger) -> Iterator[Ledger]:
    """A throw-away copy of ``ledger`` (to plan into and estimate, leaving the ledger untouched)."""
    with tempfile.TemporaryDirectory(prefix="daydream-estimate-") as folder:
        copy = Ledger.open(ledger.backup(Path(folder) / "ledger.db"))
        try:
            yield copy
        finally:
            copy.close()


def estimate_pending(ledger: Ledger, *, cohort: str | None = None, stage: str | None = None) -> Estimate:
    """Calls, tokens and cost of the unfinished LLM work in scope, per stage and model."""
    from daydream.run.pending import STAGE_ORDER, unfinished_scope
    from daydream.run.render import Context

    where, params = unfinished_scope(cohort, stage)
    groups = _groups(ledger, where, params)
    estimate = Estimate([])
    if not groups:
        return estimate
    ctx = Context.load(ledger)
    models = ctx.models
    work = _Work(ledger, ctx, where, params)
    per_row: dict[tuple[str, str | None], EstimateRow] = {}
    for group in groups:
        model = models.get(group.model_id or "")
        key = (group.stage, group.model_id)
        row = per_row.get(key)
        if row is None:
            row = per_row[key] = EstimateRow(group.stage, group.model_id, 0, 0, 0, 0, 0, 0.0, 0.0,
                                             _price_status(model))
        prompt, prompt_max = work.prompt_tokens(group)
        out, out_max, observed = work.output_tokens(group.stage, group.template_id, group.model_id)
        cost, cost_max = _cost(model, prompt, out), _cost(model, prompt_max, out_max)
        row.calls += group.calls
        row.observed_calls += observed
        row.prompt_tokens = _add(row.prompt_tokens, prompt, group.calls)
        row.prompt_tokens_max = _add(row.prompt_tokens_max, prompt_max, group.calls)
        row.output_tokens = _add(row.output_tokens, out, group.calls)
        row.output_tokens_max = _add(row.output_tokens_max, out_max, group.calls)
        row.cost_usd = _add(row.cost_usd, cost, group.calls, integer=False)
        row.cost_usd_max = _add(row.cost_usd_max, cost_max, group.calls, integer=False)
    estimate.rows = sorted(per_row.values(), key=lambda r: (STAGE_ORDER.get(r.stage, 9), r.stage, r.model_id or ""))
    estimate.chars_per_token = {m: round(r, 3) for m, r in sorted(work.ratios.items()) if m}
    estimate.notes = work.notes(estimate.rows)
    return estimate


def _add(total: Any, per_call: float | None, calls: int, *, integer: bool = True) -> Any:
    if total is None or per_call is None:
        return None
    return total + (round(per_call * calls) if integer else per_call * calls)


def _price_status(model: dict[str, Any] | None) -> str:
    from daydream.design.catalog import price_status

    return "unknown model" if model is None else price_status(model)


def _cost(model: dict[str, Any] | None, prompt: float | None, output: float | None) -> float | None:
    """USD per call, or None when the price or a token count is unknown (a free model costs 0 anyway)."""
    if model is None or _price_status(model) != "known":
        return None
    price_in, price_out = float(model["price_in"]), float(model["price_out"])
    if (prompt is None and price_in) or (output is None and price_out):
        return None
    return ((prompt or 0) * price_in + (output or 0) * price_out) / 1_000_000


def _groups(ledger: Ledger, where: str, params: list[str]) -> list[_Group]:
    sql = f"""SELECT g.stage, g.model_id, g.template_id, g.template_hash, {_PARENT_KIND},
                     {_SOURCE.format(col='stage')}, {_SOURCE.format(col='template_id')},
                     {_SOURCE.format(col='model_id')}, COUNT(*)
              {_FROM}
              WHERE {where} AND COALESCE(g.generator, 'llm') != 'copy'
              GROUP BY 1, 2, 3, 4, 5, 6, 7, 8"""
    merged: dict[tuple, _Group] = {}
    for stage, model_id, template_id, template_hash, parent, s_stage, s_template, s_model, n in ledger.query(sql, params):
        source = (s_stage, s_template, s_model) if parent == "pending" else (None, None, None)
        key = (stage, model_id, template_id, template_hash, parent, source)
        if key not in merged:
            merged[key] = _Group(stage, model_id, template_id, template_hash, parent, source)
        merged[key].calls += n
    return list(merged.values())


class _Work:
    """Measurements shared by the groups: rendered prompt lengths, observed outputs, token ratios."""

    def __init__(self, ledger: Ledger, ctx: Any, where: str, params: list[str]) -> None:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        from daydream import plugins

        self.ledger, self.ctx, self.where, self.params = ledger, ctx, where, params
        # As the runner renders (daydream.run.runner.Runner.env).
        self.env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
        self.stages = plugins.stages()
        self.ratios: dict[str | None, float] = {}
        self.ratio_calls: dict[str | None, int] = {}
        self._outputs: dict[tuple, tuple[float | None, float | None, int]] = {}
        self._parsed: dict[tuple, float | None] = {}
        self._texts: dict[str, str] = {}
        self._compiled: dict[str | None, Any] = {}
        self.sampled: dict[tuple, list[int]] = {}  # (stage, template, model) -> [measured, of]
        self.render_failures: list[str] = []
        self.stand_ins = False
        self.unbounded: set[str] = set()

    # ------------------------------------------------------------------ characters per token
    def ratio(self, model_id: str | None) -> float:
        """Characters per prompt token for ``model_id``: observed in its finished calls, else 4."""
        if model_id not in self.ratios:
            chars, tokens, calls = self.ledger.query(
                """SELECT SUM(t.chars), SUM(c.prompt_tokens), COUNT(*)
                   FROM (SELECT prompt_hash, prompt_tokens FROM gen_state
                         WHERE model_id IS NOT DISTINCT FROM ? AND prompt_tokens > 0 AND prompt_hash IS NOT NULL
                         ORDER BY updated_seq DESC LIMIT ?) c
                   JOIN texts t ON t.sha256 = c.prompt_hash""", (model_id, RATIO_CALLS))[0]
            observed = chars / tokens if chars and tokens else None
            # Keep to plausible values: a server that reports nonsense must not make prompts free.
            self.ratios[model_id] = min(max(observed, 1.0), 8.0) if observed else CHARS_PER_TOKEN
            self.ratio_calls[model_id] = calls if observed else 0
        return self.ratios[model_id]

    # ------------------------------------------------------------------ outputs
    def output_tokens(self, stage: str | None, template_id: str | None,
                      model_id: str | None) -> tuple[float | None, float | None, int]:
        """(expected, worst, completed calls observed) output tokens per call of template × model."""
        from daydream.run.pacing import model_params

        key = (stage, template_id, model_id)
        if key not in self._outputs:
            model = self.ctx.models.get(model_id or "")
            max_tokens = model_params(model, stage or "")[1] if model else None
            values = [r[0] for r in self.ledger.query(
                "SELECT completion_tokens FROM gen_state WHERE template_id IS NOT DISTINCT FROM ? AND model_id IS NOT DISTINCT FROM ? "
                "AND completion_tokens IS NOT NULL", (template_id, model_id))]
            expected = float(statistics.median(values)) if values else max_tokens
            if max_tokens is None and model_id:
                self.unbounded.add(model_id)
            self._outputs[key] = (expected, max_tokens, len(values))
        return self._outputs[key]

    def parent_text_tokens(self, source: tuple[str | None, str | None, str | None],
                           model_id: str | None) -> tuple[float | None, float | None]:
        """(expected, worst) tokens, in the child model's count, of a parent text not written yet."""
        s_stage, s_template, s_model = source
        expected, worst, _observed = self.output_tokens(s_stage, s_template, s_model)
        if source not in self._parsed:
            chars = [r[0] for r in self.ledger.query(
                "SELECT t.chars FROM gen_state g JOIN texts t ON t.sha256 = g.parsed_hash "
                "WHERE g.template_id IS NOT DISTINCT FROM ? AND g.model_id IS NOT DISTINCT FROM ? AND g.status = 'completed'", (s_template, s_model))]
            self._parsed[source] = float(statistics.median(chars)) if chars else None
        parsed_chars = self._parsed[source]
        if parsed_chars is not None:
            expected = parsed_chars / self.ratio(model_id)
        return expected, worst

    # ------------------------------------------------------------------ prompts
    def prompt_tokens(self, group: _Group) -> tuple[float | None, float | None]:
        """(expected, worst) prompt tokens per call of a group, from its rendered prompts."""
        from daydream.contracts import StageInput

        sample = self._sample(group)
        if group.calls > len(sample):
            seen = self.sampled.setdefault((group.stage, group.template_id, group.model_id), [0, 0])
            seen[0] += len(sample)
            seen[1] += group.calls
        stage = self.stages.items.get(group.stage)
        template = self._template(group.template_hash)
        fixed: list[int] = []
        uses: list[int] = []
        cache: dict[str, str] = {}
        for gen_id, combo_id, parent_hash in sample:
            if stage is None or template is None:
                self._failed(group, "its template or stage is not available")
                break
            parent = None
            if group.parent == "text":
                parent = self._text(parent_hash)
            elif group.parent == "pending":
                parent = STAND_IN
            source = StageInput(gen_id=gen_id, combo_concepts=self.ctx.concept_list(self.ledger, combo_id, cache),
                                parent_parsed=parent, parent_stage=stage.parent_stage)
            try:
                rendered = template.render(**stage.variables(source))
            except Exception as exc:  # a template that cannot render fails its generation, no call made
                self._failed(group, f"{type(exc).__name__}: {exc}")
                continue
            n = rendered.count(STAND_IN)
            fixed.append(len(rendered) - n * len(STAND_IN))
            uses.append(n)
        if not fixed:
            return None, None
        ratio = self.ratio(group.model_id)
        fixed_tokens = statistics.fmean(fixed) / ratio
        mean_uses = statistics.fmean(uses)
        if group.parent != "pending" or mean_uses == 0:
            return fixed_tokens, fixed_tokens
        self.stand_ins = True
        expected, worst = self.parent_text_tokens(group.source, group.model_id)
        return (None if expected is None else fixed_tokens + mean_uses * expected,
                None if worst is None else fixed_tokens + mean_uses * worst)

    def _sample(self, group: _Group) -> list[tuple]:
        conditions = ["g.stage IS NOT DISTINCT FROM ?", "g.model_id IS NOT DISTINCT FROM ?", "g.template_hash IS NOT DISTINCT FROM ?", f"({_PARENT_KIND}) = ?"]
        values: list[Any] = [group.stage, group.model_id, group.template_hash, group.parent]
        if group.parent == "pending":
            for col, value in zip(("stage", "template_id", "model_id"), group.source):
                conditions.append(f"{_SOURCE.format(col=col)} IS NOT DISTINCT FROM ?")
                values.append(value)
        return self.ledger.query(
            f"""SELECT g.gen_id, g.combo_id, {_PARENT_HASH} {_FROM}
                WHERE {self.where} AND COALESCE(g.generator, 'llm') != 'copy' AND {' AND '.join(conditions)}
                ORDER BY g.gen_id LIMIT ?""", [*self.params, *values, SAMPLE])

    def _template(self, template_hash: str | None) -> Any:
        """The compiled template, or None when its text is missing or does not compile."""
        if template_hash not in self._compiled:
            text = self.ledger.get_text(self.ctx.template_text_hash(template_hash))
            try:
                self._compiled[template_hash] = self.env.from_string(text) if text is not None else None
            except Exception:  # a syntax error: the runner fails these generations without a call
                self._compiled[template_hash] = None
        return self._compiled[template_hash]

    def _text(self, text_hash: str | None) -> str | None:
        if not text_hash:
            return None
        if text_hash not in self._texts:
            self._texts[text_hash] = self.ledger.get_text(text_hash) or ""
        return self._texts[text_hash]

    def _failed(self, group: _Group, reason: str) -> None:
        line = f"{group.stage} template {group.template_id}: {reason}"
        if line not in self.render_failures:
            self.render_failures.append(line)

    # ------------------------------------------------------------------ notes
    def notes(self, rows: list[EstimateRow]) -> list[str]:
        """How the estimate was made, limited to what applies to this one."""
        found = []
        observed = {m: f"{r:.2f} ({self.ratio_calls[m]:,} calls)" for m, r in sorted(self.ratios.items(),
                                                                                      key=lambda kv: str(kv[0]))
                    if m and self.ratio_calls.get(m)}
        ratio_text = ("; observed here: " + ", ".join(f"{m} {v}" for m, v in observed.items())) if observed else ""
        found.append(f"prompt tokens: the rendered prompts' characters / characters per token "
                     f"({CHARS_PER_TOKEN:g} unless observed in this ledger's finished calls{ratio_text})")
        if self.stand_ins:
            found.append("prompts of children whose parent is not written yet: the parent's text counted as the "
                         "median parsed length of finished generations of its template × model (else its expected "
                         "output); worst case as its model's max_tokens")
        found.append("output tokens: worst case max_tokens; expected the median of completed calls of the same "
                     "template × model (observed_calls), else max_tokens. Retries and reruns are not included")
        if self.sampled:
            found.append("prompt lengths measured on a sample: " + "; ".join(
                f"{stage} {template} × {model} {measured:,} of {of:,}"
                for (stage, template, model), (measured, of) in self.sampled.items()))
        for model_id in sorted(self.unbounded):
            found.append(f"model {model_id} sets no max_tokens: its worst case is unbounded (unknown)")
        for row in rows:
            if row.price == "unknown":
                found.append(f"model {row.model_id} has 'price: unknown': its cost is unknown")
            elif row.price == "missing":
                found.append(f"model {row.model_id} has no price in the catalog: add price_in and price_out, "
                             "or 'price: unknown' ('daydream run' refuses it until then)")
            elif row.price == "unknown model":
                found.append(f"model {row.model_id} is in no catalog snapshot of this ledger")
        for line in self.render_failures:
            found.append(f"cannot render {line} (those generations will fail without a call)")
        return list(dict.fromkeys(found))
