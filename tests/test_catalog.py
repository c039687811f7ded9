"""Catalogs: our starter catalog, the previous pipeline's 1_raw layout, snapshots and rebuilds."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from daydream.ledger import events as ev
from daydream.design.catalog import (Catalog, Concept, catalog_from_ledger, load_catalog, make_model,
                              repo_catalog_dir)
from daydream.errors import CatalogError
from daydream.ledger.store import Ledger, NewEvent, text_hash

ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined)
STARTER = load_catalog()


def concepts_vars(catalog: Catalog, n: int = 3, level: str = "paragraph") -> list[dict]:
    chosen = sorted(catalog.concepts.values(), key=lambda c: c.id)[:n]
    return [{"id": c.id, "name": c.name, "content": c.content(level)} for c in chosen]


def test_starter_catalog_has_enough_neutral_concepts_with_two_levels() -> None:
    assert len(STARTER.concepts) >= 12
    for c in STARTER.concepts.values():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", c.id), c.id
        assert len(c.descriptions["sentence"]) > 40
        assert len(c.descriptions["paragraph"]) > len(c.descriptions["sentence"])


def test_starter_templates_cover_the_parsers_and_modes_the_brief_asks_for() -> None:
    drafts = STARTER.templates["draft"]
    assert {t.parser for t in drafts.values()} >= {"essay_block", "essay_idea_last", "identity"}
    essays = STARTER.templates["essay"]
    assert sum(t.generator == "llm" for t in essays.values()) >= 2
    copies = [t for t in essays.values() if t.generator == "copy"]
    assert copies and all(t.text is None and t.hash is None for t in copies)
    rubrics = STARTER.templates["evaluation"]
    assert len(rubrics) >= 4 and all(t.parser == "score" for t in rubrics.values())


@pytest.mark.parametrize("stage,tid", [(s, t) for s, ts in STARTER.templates.items() for t in ts
                                       if ts[t].text is not None])
def test_every_starter_template_compiles_and_renders_with_its_stage_variables(stage: str, tid: str) -> None:
    t = STARTER.template(stage, tid)
    compiled = ENV.from_string(t.text)
    assert t.hash == text_hash(t.text)
    if stage == "draft" or "{{ concept" in t.text:
        out = compiled.render(concepts=concepts_vars(STARTER))
        assert all(c["name"] in out for c in concepts_vars(STARTER))
    elif stage == "essay":
        out = compiled.render(draft_block="NOTES-XYZ", links_block="NOTES-XYZ")
        assert "NOTES-XYZ" in out
    else:
        out = compiled.render(response="ESSAY-XYZ")
        assert "ESSAY-XYZ" in out
        assert out.rstrip().splitlines()[-1] == "SCORE: X"
    if t.parser == "essay_block":
        assert "<essay>" in out and "</essay>" in out
    if t.parser == "essay_idea_last":
        assert '<essay-idea stage="1">' in out and "</essay-idea>" in out
    with pytest.raises(jinja2.UndefinedError):
        compiled.render()


def test_model_defaults_for_offline_paid_and_free_models() -> None:
    offline = STARTER.model("offline")
    assert (offline.provider, offline.model, offline.base_url, offline.api_key_env) == \
        ("offline", "daydream-offline-v1", None, None)
    r1 = STARTER.model("deepseek_r1_p")
    assert (r1.model, r1.base_url, r1.api_key_env) == \
        ("deepseek/deepseek-r1", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY")
    assert (r1.concurrency, r1.rpm) == (10, None) and r1.price_in and r1.release_date
    free = STARTER.model("deepseek_r1_f")
    assert free.model.endswith(":free") and (free.concurrency, free.rpm) == (1, 20)
    for mid in ("gemini_25_pro", "sonnet-4"):
        assert STARTER.model(mid).price_out and STARTER.model(mid).release_date
    custom = make_model({"id": "local", "model": "llama3", "base_url": "http://127.0.0.1:9/v1",
                         "api_key_env": "LOCAL_KEY", "concurrency": 2, "rpm": 30}, "test")
    assert (custom.provider, custom.base_url, custom.concurrency, custom.rpm) == \
        ("openai", "http://127.0.0.1:9/v1", 2, 30)
    assert custom.as_dict()["stages"] == {}


def test_concept_content_falls_back_to_shorter_levels_then_name() -> None:
    c = Concept("x", "X name", {"sentence": "short"})
    assert c.content("sentence") == "short"
    assert c.content("paragraph") == "short"
    assert c.content("article") == "short"
    assert Concept("y", "Y name", {}).content("paragraph") == "Y name"
    assert Concept("z", "Z", {"paragraph": "P", "article": "A"}).content("article") == "A"


def test_unknown_template_and_model_name_the_missing_entry() -> None:
    with pytest.raises(CatalogError, match="unknown draft template 'nope'"):
        STARTER.template("draft", "nope")
    with pytest.raises(CatalogError, match="unknown model 'gpt-0'"):
        STARTER.model("gpt-0")


def test_catalog_hash_ignores_location_but_sees_edits(tmp_path: Path) -> None:
    copy = tmp_path / "catalog"
    shutil.copytree(repo_catalog_dir(), copy)
    assert load_catalog(copy).catalog_hash == STARTER.catalog_hash
    target = copy / "templates" / "essay" / "focused-essay.j2"
    target.write_text(target.read_text() + "\nBe brief.\n")
    edited = load_catalog(copy)
    assert edited.catalog_hash != STARTER.catalog_hash
    assert edited.template("essay", "focused-essay").hash != STARTER.template("essay", "focused-essay").hash


def test_snapshot_round_trips_through_the_ledger(ledger: Ledger) -> None:
    payload, texts = STARTER.snapshot()
    assert payload["catalog_hash"] == STARTER.catalog_hash
    assert {"catalog_hash", "source", "concepts", "templates", "models"} <= set(payload)
    ledger.append([NewEvent(ev.catalog_stream(payload["catalog_hash"]), ev.CATALOG_IMPORTED, payload,
                            expected_version=0)], texts=texts)
    rebuilt = catalog_from_ledger(ledger, STARTER.catalog_hash)
    assert rebuilt.catalog_hash == STARTER.catalog_hash
    assert rebuilt.concepts == STARTER.concepts
    assert rebuilt.models == STARTER.models
    for stage, templates in STARTER.templates.items():
        for tid, t in templates.items():
            r = rebuilt.template(stage, tid)
            assert (r.text, r.parser, r.generator, r.hash) == (t.text, t.parser, t.generator, t.hash)
    with pytest.raises(CatalogError, match="no CatalogImported event"):
        catalog_from_ledger(ledger, "0" * 64)


def test_legacy_1_raw_catalog_loads_with_parser_aliases(seed_data: Path) -> None:
    legacy = load_catalog(seed_data / "1_raw")
    assert load_catalog(seed_data).catalog_hash == legacy.catalog_hash  # data root accepted too
    assert len(legacy.concepts) == 18
    dmn = legacy.concepts["default-mode-network"]
    assert dmn.name == "Default Mode Network" and dmn.descriptions.keys() == {"sentence", "paragraph", "article"}
    # Blank parser -> identity for drafts and essays; in_last_line -> score for evaluations.
    assert legacy.template("draft", "creative-synthesis-v10").parser == "identity"
    assert legacy.template("draft", "deliberate-rolling-thread-v3").parser == "essay_idea_last"
    assert legacy.template("essay", "synthesis-theme-narrative-v19").parser == "identity"
    assert {t.parser for t in legacy.templates["evaluation"].values()} == {"score"}
    copy = legacy.template("essay", "parsed-from-links-v1")
    assert (copy.generator, copy.text) == ("copy", None)
    # Template files the CSV does not list are still available (e.g. to rescore old essays).
    assert legacy.template("evaluation", "creativity-metrics").text
    r1 = legacy.model("deepseek_r1_p")
    assert (r1.provider, r1.model, r1.base_url) == ("openai", "deepseek/deepseek-r1", "https://openrouter.ai/api/v1")
    free = legacy.model("deepseek_r1_f")
    assert (free.concurrency, free.rpm, free.release_date) == (1, 20, "2025-01-20")
    assert legacy.combos == {}


def test_every_seed_data_template_compiles(seed_data: Path) -> None:
    legacy = load_catalog(seed_data / "1_raw")
    compiled = 0
    for templates in legacy.templates.values():
        for t in templates.values():
            if t.text is not None:
                ENV.from_string(t.text)
                compiled += 1
    assert compiled == len(list((seed_data / "1_raw" / "templates").glob("*/*.txt")))


def test_legacy_combo_mappings_are_read(tmp_path: Path, seed_data: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(seed_data / "1_raw", root / "1_raw")
    (root / "combo_mappings.csv").write_text(
        "combo_id,concept_id,description_level,k_max\n"
        "combo_v1_85128e4e5ef3,dearth-ai-discoveries,paragraph,5\n"
        "combo_v1_85128e4e5ef3,default-mode-network,paragraph,5\n"
        "combo_v1_85128e4e5ef3,economic-innovation-models,paragraph,5\n"
        "combo_v1_85128e4e5ef3,economic-moat,paragraph,5\n"
        "combo_v1_85128e4e5ef3,generator-verifier-gap,paragraph,5\n")
    legacy = load_catalog(root / "1_raw")
    assert legacy.combos == {"combo_v1_85128e4e5ef3": {
        "concept_ids": ["dearth-ai-discoveries", "default-mode-network", "economic-innovation-models",
                        "economic-moat", "generator-verifier-gap"], "level": "paragraph", "k": 5}}
    payload, _ = legacy.snapshot()
    assert payload["combos"][0]["combo_id"] == "combo_v1_85128e4e5ef3"


@pytest.mark.parametrize("mutate,message", [
    (lambda d: (d / "models.yaml").write_text("- id: x\n  provider: azure\n  model: m\n"), "provider 'azure'"),
    (lambda d: (d / "templates" / "draft" / "link-brainstorm.j2").unlink(), "link-brainstorm.j2"),
    (lambda d: (d / "concepts.yaml").write_text("- id: a\n  name: [unclosed\n"), "malformed YAML"),
    (lambda d: (d / "models.yaml").write_text("- id: x\n  model: m\n  rpm: lots\n"), "non-numeric"),
    # Found by review: these were accepted (the later entry silently won) or crashed.
    (lambda d: (d / "models.yaml").write_text("- id: x\n  model: m\n- id: x\n  model: n\n"),
     "model 'x' is defined twice"),
    (lambda d: (d / "models.yaml").write_text("- id: x\n  model: m\n  concurrency: 0\n"),
     "model 'x' has concurrency 0; expected an integer >= 1"),
    (lambda d: (d / "models.yaml").write_text("- id: x\n  model: m\n  rpm: -5\n"),
     "model 'x' has rpm -5; expected an integer >= 1"),
    (lambda d: (d / "models.yaml").write_text("- id: x\n  model: m\n  price_in: -1\n"),
     "model 'x' has price_in -1.0; expected a number >= 0"),
    (lambda d: (d / "templates.yaml").write_text((d / "templates.yaml").read_text().replace(
        "id: staged-idea-thread", "id: bridge-essay-draft")), "draft template 'bridge-essay-draft' is defined twice"),
    (lambda d: (d / "templates.yaml").write_text((d / "templates.yaml").read_text() + "drafts:\n  - id: x\n"),
     "unknown stage 'drafts'"),
    (lambda d: (d / "templates" / "draft" / "link-brainstorm.j2").write_bytes(b"\xff\xfebad"),
     "link-brainstorm.j2: cannot read template: not UTF-8"),
])
def test_broken_catalog_files_are_one_line_catalog_errors(tmp_path: Path, mutate, message: str) -> None:
    copy = tmp_path / "catalog"
    shutil.copytree(repo_catalog_dir(), copy)
    mutate(copy)
    with pytest.raises(CatalogError, match=re.escape(message)) as info:
        load_catalog(copy)
    assert "\n" not in str(info.value)


def test_folder_without_a_catalog_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="neither concepts.yaml"):
        load_catalog(tmp_path)


def test_legacy_lenient_parser_keeps_its_lenient_behaviour(seed_data) -> None:
    from daydream import plugins
    from daydream.design.catalog import load_catalog

    catalog = load_catalog(seed_data / "1_raw")
    lenient = [t for t in catalog.templates["draft"].values() if t.parser == "essay_block_lenient"]
    assert lenient, "the seed catalog has drafts parsed by essay_block_lenient"
    parse = plugins.parsers().get(lenient[0].parser)
    assert parse("<thinking>plan</thinking>\nno essay tags at all").text == "no essay tags at all"


@pytest.mark.parametrize("target", ["llm_models.csv", "concepts/descriptions-paragraph", "templates/draft"])
def test_legacy_files_that_are_not_utf8_are_one_line_catalog_errors(tmp_path: Path, seed_data: Path,
                                                                    target: str) -> None:
    copy = tmp_path / "1_raw"
    shutil.copytree(seed_data / "1_raw", copy)
    path = copy / target
    if path.is_dir():
        path = sorted(path.glob("*.txt"))[0]
    path.write_bytes(path.read_bytes() + b"\n\xe9\xff\n")
    with pytest.raises(CatalogError, match=re.escape(f"{path}: cannot read") + ".*not UTF-8") as info:
        load_catalog(copy)
    assert "\n" not in str(info.value)


def test_our_yaml_files_that_are_not_utf8_are_one_line_catalog_errors(tmp_path: Path) -> None:
    copy = tmp_path / "catalog"
    shutil.copytree(repo_catalog_dir(), copy)
    (copy / "models.yaml").write_bytes(b"- id: caf\xe9\n")
    with pytest.raises(CatalogError, match=re.escape(f"{copy / 'models.yaml'}: cannot read") + ".*not UTF-8"):
        load_catalog(copy)


def test_legacy_csv_row_with_more_cells_than_its_header(tmp_path: Path, seed_data: Path) -> None:
    copy = tmp_path / "1_raw"
    shutil.copytree(seed_data / "1_raw", copy)
    models = copy / "llm_models.csv"
    lines = models.read_text().splitlines()
    models.write_text("\n".join(lines + ["x,y,z,w,v,extra1,extra2"]) + "\n")
    with pytest.raises(CatalogError, match=re.escape(f"{models}: row {len(lines) + 1}: 7 cells") +
                       ".*header has 5") as info:
        load_catalog(copy)
    assert "\n" not in str(info.value)


def test_legacy_csv_saved_with_a_byte_order_mark(tmp_path: Path, seed_data: Path) -> None:
    copy = tmp_path / "1_raw"
    shutil.copytree(seed_data / "1_raw", copy)
    models = copy / "llm_models.csv"
    models.write_bytes(b"\xef\xbb\xbf" + models.read_bytes())
    expected = {m.id: m.model for m in load_catalog(seed_data / "1_raw").models.values()}
    assert {m.id: m.model for m in load_catalog(copy).models.values()} == expected
