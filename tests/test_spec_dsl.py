"""The spec DSL: fixture counts, includes, combos, rules in order, replicates, ordering and seeds."""

from __future__ import annotations

import itertools
import json
import math
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from daydream.design import ids
from daydream.design.spec_compile import compile_spec
from daydream.design.spec_dsl import load_spec

FIXTURE_COUNTS = {
    "baseline_cartesian": 12,
    "dual_llm_cartesian": 4,
    "paired_copy_mix": 2,
    "full_two_phase_cartesian": 64,
    "curated_essays": 2,
    "creative_alignment_tuple": 528,
}


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder / "spec.yaml"


def rows_of(folder: Path, spec: str, **files: str) -> list[dict]:
    return compile_spec(load_spec(write(folder, {"spec.yaml": spec, **files})))


@pytest.mark.parametrize("name,count", sorted(FIXTURE_COUNTS.items()))
def test_seed_fixture_compiles_to_expected_row_count(seed_data: Path, name: str, count: int) -> None:
    spec = load_spec(seed_data / "spec_fixtures" / name / "config.yaml")
    rows = compile_spec(spec)
    assert len(rows) == count
    assert len({tuple(sorted(r.items())) for r in rows}) == count  # no duplicate rows
    order = spec.field_order
    assert list(rows[0])[:len(order)] == order


def test_fixture_rows_honour_their_couplings(seed_data: Path) -> None:
    rows = compile_spec(load_spec(seed_data / "spec_fixtures" / "dual_llm_cartesian" / "config.yaml"))
    assert {(r["draft_template"], r["essay_template"], r["essay_llm"]) for r in rows} == {
        ("creative-synthesis-v2", "essay-llm-v1", "sonnet-4"),
        ("application-implementation-v2", "essay-copy-v1", "sonnet-4")}
    assert sorted(r["draft_replicate"] for r in rows) == [1, 1, 2, 2]  # alias draft_template_replicate
    rows = compile_spec(load_spec(seed_data / "spec_fixtures" / "creative_alignment_tuple" / "config.yaml"))
    assert all((r["draft_llm"] == r["essay_llm"]) for r in rows)
    assert Counter(r["combo_id"] for r in rows) == {"combo_v1_a": 176, "combo_v1_b": 176, "combo_v1_c": 176}


def test_config_yaml_cohort_id_defaults_to_its_folder(seed_data: Path) -> None:
    assert load_spec(seed_data / "spec_fixtures" / "paired_copy_mix" / "config.yaml").default_cohort_id == \
        "paired_copy_mix"
    assert load_spec(seed_data / "spec_fixtures" / "paired_copy_mix").default_cohort_id == "paired_copy_mix"


def test_ids_match_the_previous_pipeline() -> None:
    combo = ids.combo_id(["generator-verifier-gap", "dearth-ai-discoveries", "default-mode-network",
                          "economic-innovation-models", "economic-moat"], "paragraph", 5)
    assert combo == "combo_v1_85128e4e5ef3"
    draft = ids.draft_gen_id(combo, "creative-synthesis-v10", "gemini_25_pro", 1)
    assert draft == "d_5ezrffv9uf3lr37d"
    assert ids.essay_gen_id(draft, "creative-synthesis-v10", None, 1) == "e_sq5klak2lljyyom"
    assert ids.essay_gen_id(draft, "creative-synthesis-v10", "sonnet-4", 1) != "e_sq5klak2lljyyom"


def test_combo_generator_yields_every_k_of_n_combination(tmp_path: Path) -> None:
    concepts = ["a-1", "b-2", "c-3", "d-4", "e-5"]
    spec = load_spec(write(tmp_path, {"spec.yaml": f"""\
        combos: {{concepts: {json.dumps(concepts)}, k: 3, level: sentence}}
        axes:
          draft_template: [t]
        """}))
    rows = compile_spec(spec)
    assert len(rows) == math.comb(5, 3)
    expected = {ids.combo_id(g, "sentence", 3) for g in itertools.combinations(concepts, 3)}
    assert {r["combo_id"] for r in rows} == expected == set(spec.combos)
    assert all(d["level"] == "sentence" and d["k"] == 3 and len(d["concept_ids"]) == 3
               for d in spec.combos.values())


def test_combo_axis_accepts_explicit_combos_generators_and_ids(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, {
        "spec.yaml": """\
            axes:
              combo:
                - {concepts: [x, y], level: paragraph}
                - combo_v1_85128e4e5ef3
                - {concepts: '@file:concepts.txt', k: 2, level: article}
            """,
        "concepts.txt": "# three concepts\np\nq\n\nr\n"}))
    rows = compile_spec(spec)
    xy = ids.combo_id(["x", "y"], "paragraph", 2)
    assert [r["combo_id"] for r in rows][:2] == [xy, "combo_v1_85128e4e5ef3"]
    assert len(rows) == 2 + 3
    assert spec.combos[xy] == {"concept_ids": ["x", "y"], "level": "paragraph", "k": 2}
    assert "combo_v1_85128e4e5ef3" not in spec.combos  # an existing id, defined elsewhere


@pytest.mark.parametrize("name,text", [
    ("t.csv", "draft_template\nalpha\nbeta\n"),
    ("t.csv", "id,notes\nalpha,first\nbeta,second\n"),
    ("t.yaml", "- alpha\n- beta\n"),
    ("t.yml", "[alpha, beta]\n"),
    ("t.json", '["alpha", "beta"]'),
    ("t.txt", "alpha\n\n# comment\nbeta\n"),
])
def test_axis_levels_from_each_include_type(tmp_path: Path, name: str, text: str) -> None:
    rows = rows_of(tmp_path, f"axes:\n  draft_template: '@file:items/{name}'\n", **{f"items/{name}": text})
    assert [r["draft_template"] for r in rows] == ["alpha", "beta"]


def test_includes_are_recorded_for_change_detection(tmp_path: Path) -> None:
    path = write(tmp_path, {"spec.yaml": "axes:\n  draft_template: '@file:t.txt'\n", "t.txt": "a\n"})
    first = load_spec(path)
    assert first.includes == {"t.txt": "a\n"}
    (tmp_path / "t.txt").write_text("a\nb\n")
    second = load_spec(path)
    assert second.spec_hash == first.spec_hash and second.includes_hash != first.includes_hash


def test_replicates_accept_counts_lists_strings_and_aliases(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, """\
        axes:
          draft_template: [t]
          draft_template_replicate: 3
          essay_template: [e]
          essay_replicate: ['1', 2]
          evaluation_template: [v]
          evaluation_template_replicate: [2]
        """)
    assert len(rows) == 6
    assert {r["draft_replicate"] for r in rows} == {1, 2, 3}
    assert {r["essay_replicate"] for r in rows} == {1, 2}
    assert {r["evaluation_replicate"] for r in rows} == {2}
    assert all(isinstance(r["essay_replicate"], int) for r in rows)


def test_seed_shuffles_deterministically(tmp_path: Path) -> None:
    base = "axes:\n  draft_template: [a, b, c, d, e, f]\n  draft_llm: [m1, m2, m3]\n"
    plain = rows_of(tmp_path, base)
    seeded = [rows_of(tmp_path, base + f"output:\n  seed: {s}\n") for s in (7, 7, 8)]
    assert seeded[0] == seeded[1]
    assert seeded[0] != seeded[2] and seeded[0] != plain
    key = lambda r: (r["draft_template"], r["draft_llm"])  # noqa: E731
    assert sorted(seeded[0], key=key) == sorted(plain, key=key)


def test_field_order_puts_named_fields_first(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, """\
        axes:
          draft_template: [t]
          draft_llm: [m]
          draft_replicate: 1
        output:
          field_order: [draft_template_replicate, draft_llm]
        """)
    assert list(rows[0]) == ["draft_replicate", "draft_llm", "draft_template"]


def test_subsets_ties_pairs_and_tuples_apply_in_declaration_order(tmp_path: Path) -> None:
    spec = """\
        axes:
          draft_template: [d1, d2, d3]
          draft_llm: [m1, m2, m3]
          evaluation_template: [r1, r2]
          evaluation_llm: [m1, m2, m4]
        rules:
          - subset: {axis: draft_template, levels: [d1, d2]}
          - tie: {axes: [draft_llm, evaluation_llm]}
          - tuple:
              name: essays
              axes: [essay_template, essay_llm]
              items: [[e1, m1], [e2, m2]]
          - pair:
              name: draft_essay
              left: draft_template
              right: essays
              balance: both
              allowed: [[d1, [e1, m1]], [d2, [e2, m2]]]
        """
    rows = rows_of(tmp_path, spec)
    # ties leave m1 and m2 (m3/m4 are not common); pair keeps 2 of 4 draft x essay combinations.
    assert len(rows) == 2 * 2 * 2
    assert all(r["draft_llm"] == r["evaluation_llm"] for r in rows)
    assert {(r["draft_template"], r["essay_template"]) for r in rows} == {("d1", "e1"), ("d2", "e2")}
    assert list(rows[0]) == ["draft_template", "draft_llm", "evaluation_template", "evaluation_llm",
                             "essay_template", "essay_llm"]


def test_pair_within_a_tuple_filters_it_and_csv_pairs_match_by_header(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, """\
        axes:
          evaluation_template: [r1, r2]
          evaluation_llm: [a, b]
        rules:
          pairs:
            bundle: {left: evaluation_template, right: evaluation_llm, allowed: '@file:pairs.csv'}
          subsets:
            evaluation_llm: [b]
        """, **{"pairs.csv": "evaluation_llm,evaluation_template\na,r1\nb,r1\nb,r2\n"})
    assert sorted((r["evaluation_template"], r["evaluation_llm"]) for r in rows) == [("r1", "b"), ("r2", "b")]


def test_tuple_items_from_csv_with_reordered_header(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, """\
        axes:
          draft_template: [d]
        rules:
          tuples:
            bundle: {axes: [essay_template, essay_llm], items: '@file:b.csv'}
        """, **{"b.csv": "essay_llm,essay_template\nm1,e1\nm2,e2\n"})
    assert [(r["essay_template"], r["essay_llm"]) for r in rows] == [("e1", "m1"), ("e2", "m2")]


def test_existing_generation_axes_compile_like_any_axis(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, """\
        axes:
          essay_gen_id: [e_abc, e_def]
          evaluation_template: [r1]
          evaluation_llm: [m]
          evaluation_replicate: 2
        """)
    assert len(rows) == 4 and {r["essay_gen_id"] for r in rows} == {"e_abc", "e_def"}


def test_reference_cohorts_compile() -> None:
    cohorts = Path(__file__).resolve().parent.parent / "specs" / "cohorts"
    counts = {p.stem: len(compile_spec(load_spec(p))) for p in cohorts.glob("*.yaml")}
    assert counts["demo"] == 64
    assert counts["two_stage_openrouter"] == 10 * 3 * 2 * 2 * 4 * 2 * 2
    assert counts["single_stage"] == 15 * 2 * 2 * 4


def test_csv_include_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_bytes("\ufeffdraft_template\nbridge-essay-draft\nlink-brainstorm\n".encode())
    rows = rows_of(tmp_path, "axes:\n  draft_template: '@file:t.csv'\n")
    assert [r["draft_template"] for r in rows] == ["bridge-essay-draft", "link-brainstorm"]


def test_a_tuple_can_be_named_by_a_pair_after_another_pair_merged_it(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, """\
        axes:
          draft_template: [bridge-essay-draft]
          evaluation_llm: [offline, sonnet-4]
        rules:
          tuples:
            bundle:
              axes: [essay_template, essay_llm]
              items: [[focused-essay, offline], [practical-proposal, offline]]
          pairs:
            p1:
              left: draft_template
              right: bundle
              allowed: [[bridge-essay-draft, [focused-essay, offline]], [bridge-essay-draft, [practical-proposal, offline]]]
            p2:
              left: bundle
              right: evaluation_llm
              allowed: [[[focused-essay, offline], offline], [[practical-proposal, offline], sonnet-4]]
        """)
    assert sorted((r["essay_template"], r["evaluation_llm"]) for r in rows) == [
        ("focused-essay", "offline"), ("practical-proposal", "sonnet-4")]


def test_pair_csv_header_may_use_axis_aliases_like_tuples_do(tmp_path: Path) -> None:
    rows = rows_of(tmp_path, """\
        axes:
          draft_template: [bridge-essay-draft, link-brainstorm]
          draft_template_replicate: 2
        rules:
          pairs:
            reps: {left: draft_template, right: draft_replicate, allowed: '@file:reps.csv'}
        """, **{"reps.csv": "draft_template,draft_template_replicate\nbridge-essay-draft,1\nlink-brainstorm,2\n"})
    assert sorted((r["draft_template"], r["draft_replicate"]) for r in rows) == [
        ("bridge-essay-draft", 1), ("link-brainstorm", 2)]
