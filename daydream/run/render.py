"""Rendering a generation's prompt from what the ledger recorded: its template, its combo's concepts
and its parent's parsed text.

The ledger is self-contained: ``Context`` reads the catalog snapshots, models and combos recorded
in it (never a catalog folder), and ``PromptRenderer`` renders the template in a sandboxed Jinja2
environment with strict undefined variables, so a template that names a missing variable fails its
generation instead of rendering half a prompt.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from daydream.contracts import StageInput
from daydream.design.catalog import recorded_models
from daydream.ledger.events import CATALOG_IMPORTED
from daydream.ledger.store import Ledger
from daydream.plugins import Registry
from daydream.run.pending import PendingGeneration

# Texts (templates, concepts, parents' outputs) kept in memory before the cache starts over.
_TEXT_CACHE = 20000


class GenFailure(Exception):
    """A generation that fails before any call: ``error_class`` names why (TemplateMissing …)."""

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


@dataclass
class Context:
    """Catalog knowledge the runner needs, read from the ledger (which is self-contained)."""

    models: dict[str, dict[str, Any]]
    concepts: dict[str, dict[str, Any]]
    combos: dict[str, dict[str, Any]]
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)  # by template hash (identity)

    @classmethod
    def load(cls, ledger: Ledger) -> "Context":
        # Models as planned: an id's identity is the one its first plan recorded, never what a
        # later catalog (another cohort's) says; prices and limits are the newest recorded.
        models = {mid: found.definition for mid, found in recorded_models(ledger).items()}
        concepts: dict[str, dict[str, Any]] = {}
        templates: dict[str, dict[str, Any]] = {}
        for event in ledger.events(type=CATALOG_IMPORTED):  # later snapshots win
            for concept in event.payload.get("concepts", []):
                concepts[concept["id"]] = concept
            templates.update((t["hash"], t) for t in event.payload.get("templates", []) if t.get("hash"))
        combos = {cid: {"concept_ids": json.loads(ids), "level": level, "k": k}
                  for cid, ids, level, k in ledger.query("SELECT combo_id, concept_ids, level, k FROM combos")}
        return cls(models, concepts, combos, templates)

    def template_text_hash(self, template_hash: str | None) -> str | None:
        """Where a template's text is in ``texts``: its hash, unless a rubric's scale is part of it."""
        return self.templates.get(template_hash or "", {}).get("text_hash") or template_hash

    def template_scale(self, template_hash: str | None) -> tuple[int, int] | None:
        """The scale a template's scores are on, as its catalog snapshot records it (None: default)."""
        scale = self.templates.get(template_hash or "", {}).get("scale")
        return (int(scale[0]), int(scale[1])) if scale else None

    def concept_texts(self, combo_id: str | None) -> list[tuple[str, dict[str, Any], str | None]] | None:
        """(id, concept, hash of the text to show) for each concept of a combo, at the combo's
        description level (falling back as catalogs do); None when the combo is unknown."""
        if not combo_id or combo_id not in self.combos:
            return None
        combo = self.combos[combo_id]
        level = combo.get("level") or "paragraph"
        order = {"article": ["article", "paragraph", "sentence"], "paragraph": ["paragraph", "sentence"],
                 "sentence": ["sentence"]}.get(level, [level, "paragraph", "sentence"])
        found = []
        for cid in combo["concept_ids"]:
            concept = self.concepts.get(cid, {"id": cid, "name": cid, "levels": {}})
            levels = concept.get("levels") or {}
            found.append((cid, concept, next((levels[lvl] for lvl in order if levels.get(lvl)), None)))
        return found

    def concept_list(self, ledger: Ledger, combo_id: str | None, cache: dict[str, str]) -> list[dict[str, str]] | None:
        """[{id, name, content}] of a combo at its description level (falling back as catalogs do)."""
        wanted = self.concept_texts(combo_id)
        if wanted is None:
            return None
        found = []
        for cid, concept, h in wanted:
            content = None
            if h:
                if h not in cache:
                    cache[h] = ledger.get_text(h) or ""
                content = cache[h]
            found.append({"id": cid, "name": concept.get("name") or cid, "content": content or concept.get("name") or cid})
        return found


class PromptRenderer:
    """Renders prompts for one run, caching compiled templates and the texts they read."""

    def __init__(self, ledger: Ledger, ctx: Context, stages: Registry) -> None:
        self.ledger = ledger
        self.ctx = ctx
        self.stages = stages
        self.env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
        self._templates: dict[str, Any] = {}
        self._texts: dict[str, str] = {}

    def text(self, h: str | None) -> str | None:
        """A stored text by its hash (None: no hash, or not in the ledger)."""
        if not h:
            return None
        if h not in self._texts:
            value = self.ledger.get_text(h)
            if value is None:
                return None
            if len(self._texts) > _TEXT_CACHE:
                self._texts.clear()
            self._texts[h] = value
        return self._texts[h]

    def prefetch(self, gens: list[PendingGeneration]) -> None:
        """Read the texts these generations' prompts need, all in one statement, into the cache:
        on a ledger across a network, one round trip for a page of work instead of one per prompt
        (called beside the feed's reads, off the event loop)."""
        wanted: set[str] = set()
        for gen in gens:
            wanted.add(self.ctx.template_text_hash(gen.template_hash) or "")
            if gen.parent_gen_id:
                wanted.add(gen.parent_parsed_hash or "")
            for _cid, _concept, h in self.ctx.concept_texts(gen.combo_id) or ():
                wanted.add(h or "")
        wanted = {h for h in wanted if h and h not in self._texts}
        if wanted:
            found = self.ledger.get_texts(wanted)
            if len(self._texts) + len(found) > _TEXT_CACHE:
                self._texts.clear()
            self._texts.update(found)

    def render(self, gen: PendingGeneration) -> str:
        """The prompt of ``gen``; raises ``GenFailure`` when its template is missing or fails."""
        stage = self.stages.get(gen.stage)
        template_text = self.text(self.ctx.template_text_hash(gen.template_hash))
        if template_text is None:
            raise GenFailure("TemplateMissing",
                             f"template {gen.template_id!r} (sha256 {str(gen.template_hash)[:12]}…) is not in the ledger")
        compiled = self._templates.get(gen.template_hash or "")
        if compiled is None:
            try:
                compiled = self.env.from_string(template_text)
            except JinjaTemplateError as exc:
                raise GenFailure("TemplateError", f"template {gen.template_id!r}: {exc}") from None
            self._templates[gen.template_hash or ""] = compiled
        parent_text = self.text(gen.parent_parsed_hash) if gen.parent_gen_id else None
        source = StageInput(gen_id=gen.gen_id,
                            combo_concepts=self.ctx.concept_list(self.ledger, gen.combo_id, self._texts),
                            parent_parsed=parent_text, parent_stage=stage.parent_stage)
        try:
            return compiled.render(**stage.variables(source))
        except JinjaTemplateError as exc:
            raise GenFailure("TemplateError", f"template {gen.template_id!r} failed to render: {exc}") from None
