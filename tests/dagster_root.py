"""Build a small (or, for the benchmark, large) DayDreaming Dagster data root in a temporary folder.

The layout and id formulas follow the previous pipeline: ``1_raw/`` (copied from the seed data when
given), ``combo_mappings.csv``, ``gens/<stage>/<gen_id>/`` with prompt/raw/parsed texts and the three
metadata files, and ``cohorts/<id>/`` with a spec and ``membership.csv``. Everything is
deterministic, so tests can recompute the texts and scores they expect.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from daydream.design import ids

LEGACY_COMBO = "combo_v1_85128e4e5ef3"  # a combo id from the previous pipeline, kept verbatim
DEFAULT_CONCEPTS = ["default-mode-network", "mind-wandering", "combinatorial-search",
                    "generate-and-test", "data-flywheel", "economic-moat", "flywheel-effect",
                    "human-creativity-insight"]


@dataclass
class BuiltRoot:
    """What ``build_dagster_root`` wrote: ids per stage, scores, combos and cohort membership."""

    root: Path
    cohort_id: str
    drafts: list[str] = field(default_factory=list)
    essays: list[str] = field(default_factory=list)
    evaluations: list[str] = field(default_factory=list)
    scores: dict[str, int] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)
    combo_of: dict[str, str] = field(default_factory=dict)
    combos: dict[str, list[str]] = field(default_factory=dict)
    members: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def all_ids(self) -> list[str]:
        return self.drafts + self.essays + self.evaluations

    def folder(self, gen_id: str) -> Path:
        stage = {"d": "draft", "e": "essay", "v": "evaluation"}[gen_id[0]]
        return self.root / "gens" / stage / gen_id


def text_for(gen_id: str, kind: str, chars: int = 300) -> str:
    """The deterministic text a synthetic generation holds in ``<kind>.txt``."""
    seed = hashlib.sha256(f"{gen_id}:{kind}".encode()).hexdigest()
    filler = (f"{kind} of {gen_id}: " + " ".join(seed[i:i + 6] for i in range(0, 60, 6)) + ". ")
    return (filler * (chars // len(filler) + 1))[:chars]


def score_for(gen_id: str) -> int:
    """The deterministic 0–9 score of a synthetic evaluation."""
    return int(hashlib.sha256(gen_id.encode()).hexdigest(), 16) % 10


def _concept_sets(concepts: list[str], n: int) -> list[list[str]]:
    """``n`` distinct sorted concept sets: all pairs first, then triples, and so on."""
    found: list[list[str]] = []
    for k in range(2, len(concepts) + 1):
        for chosen in itertools.combinations(sorted(concepts), k):
            if len(found) == n:
                return found
            found.append(list(chosen))
    if len(found) < n:
        raise ValueError(f"{len(concepts)} concepts give only {len(found)} combos, {n} asked for")
    return found


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")


def _write_gen(root: Path, stage: str, gen_id: str, metadata: dict, chars: int, *,
               parsed: str | None = None, raw: str | None = None) -> None:
    folder = root / "gens" / stage / gen_id
    folder.mkdir(parents=True)
    (folder / "prompt.txt").write_text(text_for(gen_id, "prompt", chars), encoding="utf-8")
    (folder / "raw.txt").write_text(raw if raw is not None else text_for(gen_id, "raw", chars),
                                    encoding="utf-8")
    (folder / "parsed.txt").write_text(parsed if parsed is not None else text_for(gen_id, "parsed", chars),
                                       encoding="utf-8")
    _write_json(folder / "metadata.json", {"stage": stage, "gen_id": gen_id, **metadata})
    _write_json(folder / "raw_metadata.json", {
        "finish_reason": "stop", "truncated": False, "duration_s": 12.5,
        "usage": {"prompt_tokens": 1000 + chars, "completion_tokens": 2 * chars,
                  "total_tokens": 1000 + 3 * chars}})
    _write_json(folder / "parsed_metadata.json", {"parser_name": "identity" if stage != "evaluation"
                                                  else "in_last_line", "success": True})


def build_dagster_root(dest: Path, *, seed_raw: Path | None = None, n_combos: int = 2,
                       draft_templates: tuple[str, ...] = ("creative-synthesis-v10",),
                       draft_models: tuple[str, ...] = ("gemini_25_pro",),
                       essay_templates: tuple[str, ...] = ("creative-synthesis-v10",),
                       evaluation_templates: tuple[str, ...] = ("daydreaming-verification-v2",),
                       evaluation_models: tuple[str, ...] = ("sonnet-4",),
                       evaluation_replicates: int = 1, text_chars: int = 300,
                       cohort_id: str = "legacy-cohort",
                       concepts: list[str] | None = None) -> BuiltRoot:
    """Write a data root at ``dest`` and return what is in it.

    Drafts: combos × draft templates × draft models (replicate 1; the first combo is the legacy
    ``combo_v1_85128e4e5ef3``). One essay per draft and essay template (legacy essay ids have no
    model). Evaluations: essays × templates × models × replicates. Essays carry the combo only on
    every other one and evaluations never, as in the previous pipeline's metadata. ``concepts``
    (ids) replaces the default concept list when no seed catalog is given.
    """
    dest.mkdir(parents=True, exist_ok=True)
    built = BuiltRoot(root=dest, cohort_id=cohort_id)
    concepts = list(concepts or DEFAULT_CONCEPTS)
    if seed_raw is not None:
        shutil.copytree(seed_raw, dest / "1_raw")
        with (seed_raw / "concepts_metadata.csv").open(newline="", encoding="utf-8") as handle:
            concepts = [row["concept_id"] for row in csv.DictReader(handle)] or concepts

    with (dest / "combo_mappings.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["combo_id", "version", "concept_id", "description_level", "k_max", "created_at"])
        for i, chosen in enumerate(_concept_sets(concepts, n_combos)):
            combo = LEGACY_COMBO if i == 0 else ids.combo_id(chosen, "paragraph", len(chosen))
            built.combos[combo] = chosen
            for concept in chosen:
                writer.writerow([combo, "v1", concept, "paragraph", len(chosen), "2025-09-01T10:00:00Z"])

    gen_meta = {"origin_cohort_id": cohort_id, "replicate": 1, "mode": "llm"}
    for n, combo in enumerate(built.combos):
        for template in draft_templates:
            for model in draft_models:
                draft = ids.draft_gen_id(combo, template, model, 1)
                built.drafts.append(draft)
                built.combo_of[draft] = combo
                _write_gen(dest, "draft", draft, {**gen_meta, "template_id": template, "llm_model_id": model,
                                                  "parent_gen_id": None, "combo_id": combo}, text_chars)
                for e_index, essay_template in enumerate(essay_templates):
                    essay = ids.essay_gen_id(draft, essay_template, None, 1)
                    built.essays.append(essay)
                    built.parents[essay] = draft
                    built.combo_of[essay] = combo
                    meta = {**gen_meta, "template_id": essay_template, "llm_model_id": model,
                            "parent_gen_id": draft}
                    if (n + e_index) % 2 == 0:
                        meta["combo_id"] = combo
                    _write_gen(dest, "essay", essay, meta, text_chars)
                    for rubric in evaluation_templates:
                        for evaluator in evaluation_models:
                            for rep in range(1, evaluation_replicates + 1):
                                evaluation = ids.evaluation_gen_id(essay, rubric, evaluator, rep)
                                score = score_for(evaluation)
                                built.evaluations.append(evaluation)
                                built.scores[evaluation] = score
                                built.parents[evaluation] = essay
                                built.combo_of[evaluation] = combo
                                raw = text_for(evaluation, "raw", text_chars) + f"\nSCORE: {score}\n"
                                parsed = text_for(evaluation, "parsed", text_chars) + f"\n{score}\n"
                                _write_gen(dest, "evaluation", evaluation,
                                           {**gen_meta, "template_id": rubric, "llm_model_id": evaluator,
                                            "parent_gen_id": essay, "replicate": rep},
                                           text_chars, parsed=parsed, raw=raw)

    members = [("draft", g) for g in built.drafts] + [("essay", g) for g in built.essays] + \
        [("evaluation", g) for g in built.evaluations]
    write_cohort(dest, cohort_id, members, spec={
        "axes": {"combo_id": list(built.combos), "draft_template": list(draft_templates),
                 "draft_llm": list(draft_models), "essay_template": list(essay_templates),
                 "evaluation_template": list(evaluation_templates),
                 "evaluation_llm": list(evaluation_models)}})
    built.members[cohort_id] = members
    return built


def write_cohort(root: Path, cohort_id: str, members: list[tuple[str, str]], spec: dict) -> None:
    """Write ``cohorts/<cohort_id>/`` with a spec (and one items file) and its membership.csv."""
    folder = root / "cohorts" / cohort_id
    (folder / "spec" / "items").mkdir(parents=True, exist_ok=True)
    lines = ["axes:"]
    for axis, values in spec.get("axes", {}).items():
        lines.append(f"  {axis}: [{', '.join(values)}]")
    (folder / "spec" / "config.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with (folder / "spec" / "items" / "combos.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["combo_id"]] + [[c] for c in spec.get("axes", {}).get("combo_id", [])])
    with (folder / "membership.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stage", "gen_id"])
        writer.writerows(members)
