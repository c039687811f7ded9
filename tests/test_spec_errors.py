"""Bad specs, includes and catalogs: one-line errors naming file, key and value; ledger untouched.

Each case writes a spec (and any files it includes) into a fresh folder, runs ``daydream cohort plan``
through the real entry point, and checks the exit code, that stderr is exactly one line naming what
is wrong, and that the ledger (which already holds a planned cohort) gained no event.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from daydream.design.catalog import repo_catalog_dir
from daydream.cli import main
from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort

BASE_AXES = """\
axes:
  combo: [{concepts: [feedback-loop, redundancy], level: paragraph}]
  draft_template: [bridge-essay-draft]
  draft_llm: [offline]
  essay_template: [focused-essay]
  essay_llm: [offline]
  evaluation_template: [originality-rubric, coherence-rubric]
  evaluation_llm: [offline]
"""


def spec_with(extra: str = "", axes: str = BASE_AXES) -> str:
    return axes + textwrap.dedent(extra)


# (case id, files {name: text}, expected substrings in the message, exit code)
CASES: list[tuple[str, dict[str, str], list[str], int]] = [
    ("malformed_yaml", {"spec.yaml": "axes:\n  draft_template: [a, b\n  draft_llm: [x]\n"},
     ["spec.yaml:", "malformed YAML"], 1),
    ("not_a_mapping", {"spec.yaml": "- just\n- a list\n"}, ["spec.yaml", "expected a mapping"], 1),
    ("unknown_top_level_key", {"spec.yaml": spec_with("rule:\n  ties: {}\n")},
     ["spec.yaml:9", "unknown top-level key 'rule'"], 1),
    ("unknown_axis_name", {"spec.yaml": "axes:\n  draft_templates: [x]\n"},
     ["spec.yaml:2", "axes.draft_templates", "unknown axis 'draft_templates'"], 1),
    ("unknown_axis_in_subset", {"spec.yaml": spec_with("""\
        rules:
          subsets:
            only_one: {axis: draft_replicate, levels: [1]}
        """)}, ["spec.yaml:11", "rules.subsets.only_one", "'draft_replicate'", "not an axis"], 1),
    ("unknown_axis_in_pair", {"spec.yaml": spec_with("""\
        rules:
          pairs:
            p: {left: evaluation_templat, right: evaluation_llm, allowed: [[originality-rubric, offline]]}
        """)}, ["rules.pairs.p", "'evaluation_templat'", "not an axis"], 1),
    ("unknown_axis_in_tie", {"spec.yaml": spec_with("""\
        rules:
          ties:
            same: [draft_llm, essay_model]
        """)}, ["rules.ties.same", "'essay_model'"], 1),
    ("subset_removes_all_levels", {"spec.yaml": spec_with("""\
        rules:
          subsets:
            none_left: {axis: evaluation_template, levels: []}
        """)}, ["rules.subsets.none_left", "removes every level", "'evaluation_template'"], 1),
    ("subset_value_outside_axis", {"spec.yaml": spec_with("""\
        rules:
          subsets:
            evaluation_template: [clarity-rubric]
        """)}, ["rules.subsets.evaluation_template", "'clarity-rubric'", "not a level"], 1),
    ("empty_tie_intersection", {"spec.yaml": spec_with("""\
        rules:
          ties:
            same_model: [draft_template, essay_template]
        """)}, ["rules.ties.same_model", "no common value", "bridge-essay-draft", "focused-essay"], 1),
    ("pair_value_outside_domain", {"spec.yaml": spec_with("""\
        rules:
          pairs:
            bundle:
              left: evaluation_template
              right: evaluation_llm
              allowed:
                - [originality-rubric, offline]
                - [clarity-rubric, offline]
        """)}, ["spec.yaml:16", "rules.pairs.bundle.allowed.1", "'clarity-rubric'",
                "domain of 'evaluation_template'"], 1),
    ("pair_value_outside_domain_in_csv", {
        "spec.yaml": spec_with("""\
            rules:
              pairs:
                bundle: {left: evaluation_template, right: evaluation_llm, allowed: '@file:pairs.csv'}
            """),
        "pairs.csv": "evaluation_template,evaluation_llm\noriginality-rubric,offline\n"
                     "coherence-rubric,sonnet-4\n"},
     ["pairs.csv: row 3", "'sonnet-4'", "domain of 'evaluation_llm'"], 1),
    ("pair_imbalance", {"spec.yaml": spec_with("""\
        rules:
          pairs:
            bundle:
              left: evaluation_template
              right: evaluation_replicate
              balance: left
              allowed: [[originality-rubric, 1], [originality-rubric, 2], [coherence-rubric, 1]]
        """, BASE_AXES + "  evaluation_replicate: 2\n")},
     ["rules.pairs.bundle", "not balanced", "originality-rubric=2", "coherence-rubric=1"], 1),
    ("pair_bad_balance_keyword", {"spec.yaml": spec_with("""\
        rules:
          pairs:
            bundle: {left: evaluation_template, right: evaluation_llm, balance: sideways,
                     allowed: [[originality-rubric, offline]]}
        """)}, ["rules.pairs.bundle.balance", "'sideways'", "left, right or both"], 1),
    ("tuple_arity_mismatch", {"spec.yaml": spec_with("""\
        rules:
          tuples:
            essay_bundle:
              axes: [essay_replicate, evaluation_replicate]
              items:
                - [1, 1]
                - [2]
        """)}, ["spec.yaml:15", "rules.tuples.essay_bundle.items.1", "[2]", "expected 2"], 1),
    ("tuple_arity_mismatch_in_csv", {
        "spec.yaml": spec_with("""\
            rules:
              tuples:
                reps: {axes: [essay_replicate, evaluation_replicate], items: '@file:reps.csv'}
            """),
        "reps.csv": "essay_replicate,evaluation_replicate\n1,1\n2\n"},
     ["reps.csv: row 3", "1 cells", "header has 2"], 1),
    ("tuple_csv_bad_replicate", {
        "spec.yaml": spec_with("""\
            rules:
              tuples:
                reps: {axes: [essay_replicate, evaluation_replicate], items: '@file:reps.csv'}
            """),
        "reps.csv": "essay_replicate,evaluation_replicate\n1,1\n1,x\n"},
     ["reps.csv: row 3", "evaluation_replicate 'x' is not an integer"], 1),
    ("tuple_axis_also_in_axes", {"spec.yaml": spec_with("""\
        rules:
          tuples:
            bundle:
              axes: [essay_template, essay_llm]
              items: [[focused-essay, offline]]
        """)}, ["spec.yaml:12", "rules.tuples.bundle.axes.0", "'essay_template'", "also listed in 'axes'"], 1),
    ("tuple_csv_header_mismatch", {
        "spec.yaml": spec_with("""\
            rules:
              tuples:
                reps: {axes: [essay_replicate, evaluation_replicate], items: '@file:reps.csv'}
            """),
        "reps.csv": "essay_replicate,eval_rep\n1,1\n"},
     ["reps.csv:1", "does not match tuple axes", "evaluation_replicate"], 1),
    ("include_missing", {"spec.yaml": "axes:\n  draft_template: '@file:items/nope.csv'\n"},
     ["spec.yaml:2", "axes.draft_template", "'items/nope.csv'", "not found"], 1),
    ("include_empty", {"spec.yaml": "axes:\n  draft_template: '@file:empty.csv'\n", "empty.csv": ""},
     ["spec.yaml:2", "'empty.csv'", "is empty"], 1),
    ("include_header_only", {"spec.yaml": "axes:\n  draft_template: '@file:t.csv'\n",
                             "t.csv": "draft_template\n"}, ["'t.csv'", "no data rows"], 1),
    ("include_headerless", {"spec.yaml": "axes:\n  draft_template: '@file:t.csv'\n",
                            "t.csv": "bridge-essay-draft\nlink-brainstorm\n"},
     ["t.csv:1", "no header row", "'bridge-essay-draft'", "draft_template"], 1),
    ("include_blank_cell", {"spec.yaml": spec_with("""\
        rules:
          pairs:
            bundle: {left: evaluation_template, right: evaluation_llm, allowed: '@file:pairs.csv'}
        """), "pairs.csv": "evaluation_template,evaluation_llm\noriginality-rubric,offline\n"
                           "coherence-rubric,\n"},
     ["pairs.csv: row 3", "column 'evaluation_llm' is blank"], 1),
    ("include_empty_txt", {"spec.yaml": "axes:\n  draft_template: '@file:t.txt'\n", "t.txt": "# none\n\n"},
     ["'t.txt'", "is empty"], 1),
    ("include_unsupported_type", {"spec.yaml": "axes:\n  draft_template: '@file:t.xlsx'\n", "t.xlsx": "x"},
     ["'t.xlsx'", "unsupported type .xlsx"], 1),
    ("include_malformed_yaml", {"spec.yaml": "axes:\n  draft_template: '@file:t.yaml'\n",
                                "t.yaml": "[a, b\n"}, ["'t.yaml'", "malformed"], 1),
    ("unknown_templates_models_combos_concepts_listed_at_once", {"spec.yaml": spec_with(axes="""\
        axes:
          combo: [{concepts: [feedback-loop, time-travel], level: paragraph}, combo_v1_000000000000]
          draft_template: [bridge-essay-draft, no-such-draft]
          draft_llm: [offline, gpt-imaginary]
          essay_template: [focused-essay, no-such-essay]
          essay_llm: [offline]
          evaluation_template: [ghost-rubric]
          evaluation_llm: [offline, ghost-judge]
        """.replace("        ", ""))},
     ["spec.yaml", "unknown draft template(s) 'no-such-draft'", "unknown essay template(s) 'no-such-essay'",
      "unknown evaluation template(s) 'ghost-rubric'", "unknown model(s) 'ghost-judge', 'gpt-imaginary'",
      "unknown combo(s) 'combo_v1_000000000000'",
      "unknown concept(s) 'time-travel'"], 1),
    ("unknown_concepts_listed_at_once", {"spec.yaml": spec_with(axes=BASE_AXES.replace(
        "[feedback-loop, redundancy]", "[feedback-loop, time-travel, perpetual-motion]"))},
     ["unknown concept(s) 'perpetual-motion', 'time-travel'"], 1),
    ("unknown_combo_id", {"spec.yaml": spec_with(axes=BASE_AXES.replace(
        "combo: [{concepts: [feedback-loop, redundancy], level: paragraph}]", "combo_id: [combo_v1_000000000000]"))},
     ["unknown combo(s) 'combo_v1_000000000000'"], 1),
    ("replicate_not_integer", {"spec.yaml": spec_with(axes=BASE_AXES + "  draft_replicate: ['1', two]\n")},
     ["spec.yaml:9", "axes.draft_replicate.1", "'two'", "not an integer"], 1),
    ("replicate_below_one", {"spec.yaml": spec_with(axes=BASE_AXES + "  essay_template_replicate: [0, 1]\n")},
     ["axes.essay_template_replicate.0", "replicate 0 is < 1"], 1),
    ("replicate_count_zero", {"spec.yaml": spec_with(axes=BASE_AXES + "  evaluation_replicate: 0\n")},
     ["axes.evaluation_replicate", "replicate count 0"], 1),
    ("combo_generator_k_too_large", {"spec.yaml": "combos: {concepts: [feedback-loop, redundancy], k: 3}\n"
                                                  "axes:\n  draft_template: [link-brainstorm]\n"},
     ["spec.yaml:1", "combos.k", "k 3", "between 1 and the number of concepts (2)"], 1),
    ("combo_bad_level", {"spec.yaml": spec_with(axes=BASE_AXES.replace("level: paragraph", "level: chapter"))},
     ["axes.combo.0.level", "'chapter'", "sentence, paragraph, article"], 1),
    ("unknown_rule_kind", {"spec.yaml": spec_with("rules:\n  couples: {}\n")},
     ["rules.couples", "unknown rule kind 'couples'"], 1),
    ("field_order_unknown_axis", {"spec.yaml": spec_with("output:\n  field_order: [draft_template, colour]\n")},
     ["output.field_order.1", "unknown axis 'colour'"], 1),
    ("seed_not_integer", {"spec.yaml": spec_with("output:\n  seed: lucky\n")},
     ["output.seed", "'lucky'", "not an integer"], 1),
    ("draft_without_combo", {"spec.yaml": "axes:\n  draft_template: [link-brainstorm]\n  draft_llm: [offline]\n"},
     ["spec.yaml", "draft rows need a combo"], 1),
    ("llm_axis_without_template", {"spec.yaml": spec_with(axes=BASE_AXES.replace(
        "  essay_template: [focused-essay]\n", ""))}, ["'essay_llm' is given without 'essay_template'"], 1),
    ("unknown_existing_essay", {"spec.yaml": "axes:\n  essay_gen_id: [e_doesnotexist]\n"
                                             "  evaluation_template: [clarity-rubric]\n"
                                             "  evaluation_llm: [offline]\n"},
     ["unknown essay generation(s) 'e_doesnotexist'"], 1),
    ("spec_file_missing", {}, ["spec.yaml", "not found"], 1),
    # Found by review: each of these used to be accepted silently (or hang).
    ("duplicate_yaml_key", {"spec.yaml": BASE_AXES + "  draft_llm: [sonnet-4]\n"},
     ["spec.yaml:9", "axes.draft_llm", "given twice", "line 4"], 1),
    ("duplicate_level", {"spec.yaml": BASE_AXES.replace("[originality-rubric, coherence-rubric]",
                                                        "[originality-rubric, coherence-rubric, originality-rubric]")},
     ["spec.yaml:7", "axes.evaluation_template.2", "'originality-rubric'", "listed twice"], 1),
    ("duplicate_level_in_csv", {"spec.yaml": spec_with(axes=BASE_AXES.replace(
        "[bridge-essay-draft]", "'@file:d.csv'")), "d.csv": "draft_template\nbridge-essay-draft\nbridge-essay-draft\n"},
     ["axes.draft_template.1", "'bridge-essay-draft'", "listed twice"], 1),
    ("tuple_names_an_axis_twice", {"spec.yaml": spec_with("""\
        rules:
          tuples:
            reps: {axes: [essay_replicate, essay_replicate], items: [[1, 2]]}
        """)}, ["spec.yaml:11", "rules.tuples.reps.axes.1", "'essay_replicate'", "twice"], 1),
    ("tie_names_an_axis_twice", {"spec.yaml": spec_with("""\
        rules:
          ties:
            same: [draft_llm, draft_llm]
        """)}, ["rules.ties.same", "'draft_llm'", "twice"], 1),
    ("pair_left_equals_right", {"spec.yaml": spec_with("""\
        rules:
          pairs:
            p: {left: draft_llm, right: draft_llm, allowed: [[offline, offline]]}
        """)}, ["rules.pairs.p", "'draft_llm'", "left and right"], 1),
    ("design_too_large", {"spec.yaml": "axes:\n  draft_replicate: 100000\n  essay_replicate: 100000\n"},
     ["spec.yaml", "10,000,000,000 rows", "at most"], 1),
    ("include_blank_cell_row_counts_blank_lines", {"spec.yaml": "axes:\n  draft_template: '@file:t.csv'\n",
                                                   "t.csv": "draft_template,notes\n\nbridge-essay-draft,x\n\n"
                                                            "link-brainstorm,\n"},
     ["t.csv: row 5", "column 'notes' is blank"], 1),
    ("replicate_count_huge", {"spec.yaml": "axes:\n  draft_replicate: 1000000000000\n"},
     ["spec.yaml:2", "axes.draft_replicate", "replicate count 1,000,000,000,000", "at most 5,000,000"], 1),
    ("combo_generator_huge", {"spec.yaml": "combos: {concepts: [%s], k: 20}\naxes:\n  draft_template: [x]\n"
                              % ", ".join(f"c{i}" for i in range(40))},
     ["spec.yaml:1", "combos", "137,846,528,820 combinations", "at most 5,000,000"], 1),
    ("combo_mapping_key_typo", {"spec.yaml": spec_with(axes=BASE_AXES.replace("level: paragraph", "levl: sentence"))},
     ["spec.yaml:2", "axes.combo.0.levl", "unknown combo key 'levl'", "concepts, level"], 1),
    ("tuple_unknown_key", {"spec.yaml": spec_with("""\
        rules:
          tuples:
            reps: {axes: [essay_replicate, evaluation_replicate], items: [[1, 1]], balance: left}
        """)}, ["rules.tuples.reps.balance", "unknown tuple key 'balance'", "axes, items"], 1),
    ("tie_names_a_tuple", {"spec.yaml": spec_with("""\
        rules:
          tuples:
            reps: {axes: [essay_replicate, evaluation_replicate], items: [[1, 1], [2, 1]]}
          ties:
            t: [reps, draft_replicate]
        """, BASE_AXES + "  draft_replicate: 2\n")},
     ["rules.ties.t", "'reps' is a tuple (essay_replicate, evaluation_replicate)", "name one of its axes"], 1),
    ("spec_path_is_a_folder_without_config", {"spec.yaml/notes.txt": "x"},
     ["spec.yaml", "is a folder", "config.yaml"], 1),
]


@pytest.fixture(scope="module")
def planned_ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger that already holds the demo cohort, so 'unchanged' is checked against real content."""
    path = tmp_path_factory.mktemp("ledger") / "ledger.db"
    ledger, _, _ = Ledger.init(path)
    plan_cohort(ledger, repo_catalog_dir().parent / "cohorts" / "demo.yaml")
    return path


def run_main(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, expected: list[str]) -> None:
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err
    for part in expected:
        assert part in err, f"{part!r} missing from {err!r}"


@pytest.mark.parametrize("case,files,expected,code", CASES, ids=[c[0] for c in CASES])
def test_bad_spec_is_one_line_error_and_ledger_unchanged(
        tmp_path: Path, planned_ledger: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
        case: str, files: dict[str, str], expected: list[str], code: int) -> None:
    monkeypatch.delenv("DAYDREAM_DEBUG", raising=False)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    ledger = Ledger.open(planned_ledger)
    before = ledger.count()
    got, out, err = run_main(["cohort", "plan", str(tmp_path / "spec.yaml"), "--db", str(planned_ledger)],
                             capsys)
    assert got == code, (out, err)
    assert_one_line_error(err, expected)
    assert ledger.count() == before


def test_template_with_jinja_syntax_error_names_file_and_line(
        tmp_path: Path, planned_ledger: Path, capsys: pytest.CaptureFixture) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(repo_catalog_dir(), catalog)
    broken = catalog / "templates" / "evaluation" / "clarity-rubric.j2"
    lines = broken.read_text().splitlines()
    lines[3] = "{% for x in %}"  # line 4
    broken.write_text("\n".join(lines) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE_AXES.replace("[originality-rubric, coherence-rubric]", "[clarity-rubric]"))
    ledger = Ledger.open(planned_ledger)
    before = ledger.count()
    code, _out, err = run_main(["cohort", "plan", str(spec), "--catalog", str(catalog),
                                "--db", str(planned_ledger)], capsys)
    assert code == 1
    assert_one_line_error(err, [f"{broken}:4", "Jinja syntax error", "'clarity-rubric'"])
    assert ledger.count() == before


def test_template_using_a_variable_its_stage_does_not_provide(
        tmp_path: Path, planned_ledger: Path, capsys: pytest.CaptureFixture) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(repo_catalog_dir(), catalog)
    rubric = catalog / "templates" / "evaluation" / "clarity-rubric.j2"
    rubric.write_text(rubric.read_text() + "\nAlso consider {{ concpets | length }} and {{ draft_block }}.\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE_AXES.replace("[originality-rubric, coherence-rubric]", "[clarity-rubric]"))
    ledger = Ledger.open(planned_ledger)
    before = ledger.count()
    code, _out, err = run_main(["cohort", "plan", str(spec), "--catalog", str(catalog),
                                "--db", str(planned_ledger)], capsys)
    assert code == 1
    assert_one_line_error(err, [str(rubric), "evaluation template 'clarity-rubric'",
                                "undefined variable(s) 'concpets', 'draft_block'", "available: concepts, response"])
    assert ledger.count() == before


def test_unknown_parser_names_are_refused_at_plan_time_all_at_once(
        tmp_path: Path, planned_ledger: Path, capsys: pytest.CaptureFixture) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(repo_catalog_dir(), catalog)
    meta = catalog / "templates.yaml"
    meta.write_text(meta.read_text().replace("parser: essay_block\n", "parser: essay_blok\n", 1)
                    .replace("id: focused-essay\n    parser: identity", "id: focused-essay\n    parser: idem"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(BASE_AXES)
    ledger = Ledger.open(planned_ledger)
    before = ledger.count()
    code, _out, err = run_main(["cohort", "plan", str(spec), "--catalog", str(catalog),
                                "--db", str(planned_ledger)], capsys)
    assert code == 1
    assert_one_line_error(err, ["unknown parser(s)", "'essay_blok' (draft template 'bridge-essay-draft')",
                                "'idem' (essay template 'focused-essay')", "essay_idea_last"])
    assert ledger.count() == before


def test_catalog_key_of_spec_pointing_nowhere(tmp_path: Path, planned_ledger: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("catalog: ../no-catalog\n" + BASE_AXES)
    ledger = Ledger.open(planned_ledger)
    before = ledger.count()
    code, _out, err = run_main(["cohort", "plan", str(spec), "--db", str(planned_ledger)], capsys)
    assert code == 1
    assert_one_line_error(err, ["no-catalog", "does not exist"])
    assert ledger.count() == before


@pytest.mark.parametrize("args", [
    ["cohort", "plan"],
    ["cohort", "plan", "x.yaml", "--format", "xml"],
    ["spec", "compile", "x.yaml", "--limit", "-3"],
])
def test_cli_usage_errors_exit_2(args: list[str], planned_ledger: Path, capsys: pytest.CaptureFixture) -> None:
    ledger = Ledger.open(planned_ledger)
    before = ledger.count()
    code, _out, err = run_main([*args, "--db", str(planned_ledger)] if args[0] == "cohort" else args, capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert ledger.count() == before


def test_spec_compile_reports_errors_the_same_way(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("axes:\n  draft_llm: [offline]\n  draft_replicate: [-1]\n")
    code, _out, err = run_main(["spec", "compile", str(spec)], capsys)
    assert code == 1
    assert_one_line_error(err, ["spec.yaml:3", "axes.draft_replicate.0", "replicate -1 is < 1"])
