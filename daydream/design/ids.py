"""Deterministic identifiers for concept combinations and generations.

A generation id is a stage prefix plus a base-36 hash of the stage's signature, so the same work
planned by two cohorts is the same generation and is paid for once. The pipeline has three fixed
stages (``daydream.contracts.PIPELINE_STAGES``), so their prefixes and signatures are spelled out
here, not asked of the stage plugins. Draft and evaluation ids (and copy-mode essay ids) match the
previous DayDreaming pipeline exactly; ``llm``-mode essay ids also include the essay model, which
that pipeline left out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
PREFIXES = {"draft": "d_", "essay": "e_", "evaluation": "v_"}  # one per stage of PIPELINE_STAGES


def _base36(number: int) -> str:
    if number == 0:
        return "0"
    digits = []
    while number:
        number, rem = divmod(number, 36)
        digits.append(_ALPHABET[rem])
    return "".join(reversed(digits))


def _normalise(part: object) -> str:
    return "" if part is None else str(part).strip().lower()


def signature_hash(parts: Iterable[object]) -> str:
    """base36(blake2b-80 of the parts, stripped, lower-cased and joined with '|')."""
    joined = "|".join(_normalise(p) for p in parts)
    digest = hashlib.blake2b(joined.encode("utf-8"), digest_size=10).digest()
    return _base36(int.from_bytes(digest, "big"))


def combo_id(concept_ids: Iterable[str], level: str, k: int) -> str:
    """``combo_v1_`` + 12 hex of sha256 of the sorted concept ids, the description level and k."""
    key = "|".join(sorted(concept_ids)) + "|" + str(level) + "|" + str(int(k))
    return "combo_v1_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def draft_gen_id(combo_id: str, template: str, model: str, replicate: int) -> str:
    """Id of a draft: signature (combo_id, draft template, model, replicate)."""
    return PREFIXES["draft"] + signature_hash([combo_id, template, model, int(replicate)])


def essay_gen_id(parent_id: str, template: str, model: str | None, replicate: int) -> str:
    """Id of an essay: (draft gen_id or combo_id, template, model, replicate).

    Copy-mode essays have no model (``model=None``): their signature is (parent, template,
    replicate), as in the previous pipeline.
    """
    parts: list[object] = [parent_id, template]
    if model is not None:
        parts.append(model)
    parts.append(int(replicate))
    return PREFIXES["essay"] + signature_hash(parts)


def evaluation_gen_id(essay_gen_id: str, template: str, model: str, replicate: int) -> str:
    """Id of an evaluation: signature (essay gen_id, rubric template, evaluator model, replicate)."""
    return PREFIXES["evaluation"] + signature_hash([essay_gen_id, template, model, int(replicate)])


def gen_id_for(stage: str, parent_or_combo: str, template: str, model: str | None, replicate: int) -> str:
    """The gen_id of a generation of one of the pipeline's stages."""
    if stage == "draft":
        return draft_gen_id(parent_or_combo, template, model or "", replicate)
    if stage == "essay":
        return essay_gen_id(parent_or_combo, template, model, replicate)
    if stage == "evaluation":
        return evaluation_gen_id(parent_or_combo, template, model or "", replicate)
    raise ValueError(f"{stage!r} is not a stage of the pipeline (draft, essay, evaluation)")
