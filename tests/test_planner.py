"""Planning cohorts into a real ledger: events and payloads, re-planning, linking and reuse.

On a SQLite file and on a PostgreSQL database (``ledger`` takes ``ledger_url``, issue 17)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.ledger import events as ev
from daydream.design import ids
from daydream.design.catalog import catalog_from_ledger, load_catalog, repo_catalog_dir
from daydream.cli import cli
from daydream.ledger.store import Ledger, NewEvent
from daydream.design.planner import plan_cohort

COHORTS = repo_catalog_dir().parent / "cohorts"
DEMO = COHORTS / "demo.yaml"
PLANNED_FIELDS = {"gen_id", "stage", "parent_gen_id", "combo_id", "template_id", "template_hash", "generator",
                  "parser", "model_id", "model_hash", "replicate", "cohort_id", "catalog_hash"}


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # conftest's SQLite-only fixture, on both backends here
    """A fresh ledger on SQLite and on PostgreSQL (issue 17)."""
    return Ledger.open(ledger_url)


def planned(ledger: Ledger) -> dict[str, dict]:
    return {e.payload["gen_id"]: e.payload for e in ledger.events(type=ev.GENERATION_PLANNED)}


def types(ledger: Ledger, after: int = 0) -> Counter:
    return Counter(e.type for e in ledger.events(after=after))


def test_demo_plan_records_catalog_combos_spec_and_every_generation(ledger: Ledger) -> None:
    result = plan_cohort(ledger, DEMO)
    assert result.cohort_id == "demo" and result.spec_version == 1 and result.rows == 64
    assert {s: c["new"] for s, c in result.counts.items()} == {"draft": 8, "essay": 16, "evaluation": 64}
    assert types(ledger) == {ev.CATALOG_IMPORTED: 1, ev.COMBO_DEFINED: 4, ev.SPEC_COMPILED: 1,
                             ev.GENERATION_PLANNED: 88, ev.COHORT_PLANNED: 1,
                             ev.MODEL_DEFINED: 1}
    assert result.events == ledger.count()

    catalog = load_catalog()
    gens = planned(ledger)
    for g in gens.values():
        assert set(g) == PLANNED_FIELDS
        assert g["cohort_id"] == "demo" and g["catalog_hash"] == catalog.catalog_hash
        template = catalog.template(g["stage"], g["template_id"])
        assert (g["template_hash"], g["parser"], g["generator"]) == (template.hash, template.parser,
                                                                    template.generator)
        if g["stage"] == "draft":
            assert g["parent_gen_id"] is None
            assert g["gen_id"] == ids.draft_gen_id(g["combo_id"], g["template_id"], g["model_id"], g["replicate"])
        else:
            parent = gens[g["parent_gen_id"]]
            assert g["combo_id"] == parent["combo_id"] is not None  # the combo is carried down
            make = ids.essay_gen_id if g["stage"] == "essay" else ids.evaluation_gen_id
            assert g["gen_id"] == make(g["parent_gen_id"], g["template_id"], g["model_id"], g["replicate"])
    copies = [g for g in gens.values() if g["template_id"] == "copy-draft"]
    assert len(copies) == 8 and all(g["model_id"] is None and g["template_hash"] is None for g in copies)

    # The ledger is self-contained: spec text, catalog texts and combos are all in it.
    spec_event = ledger.events(type=ev.SPEC_COMPILED)[0].payload
    assert ledger.get_text(spec_event["spec_hash"]) == DEMO.read_text()
    assert catalog_from_ledger(ledger, result.catalog_hash).catalog_hash == catalog.catalog_hash
    assert ledger.query("SELECT COUNT(*) FROM combos")[0][0] == 4
    assert ledger.query("SELECT stage, COUNT(*) FROM cohort_members WHERE cohort_id='demo' GROUP BY stage "
                        "ORDER BY stage") == [("draft", 8), ("essay", 16), ("evaluation", 64)]
    assert ledger.query("SELECT COUNT(*) FROM gen_state WHERE status = 'planned'")[0][0] == 88


def test_replanning_an_unchanged_spec_appends_nothing(ledger: Ledger) -> None:
    plan_cohort(ledger, DEMO)
    before = ledger.last_seq()
    again = plan_cohort(ledger, DEMO)
    assert again.events == 0 and ledger.last_seq() == before
    assert again.counts["evaluation"] == {"new": 0, "linked": 0, "existing": 64}
    assert again.spec_version == 1 and not again.new_spec_version


def test_changed_spec_appends_a_new_version_and_only_new_generations(ledger: Ledger, tmp_path: Path) -> None:
    spec = tmp_path / "study.yaml"
    spec.write_text(DEMO.read_text())
    plan_cohort(ledger, spec)
    before = ledger.last_seq()
    spec.write_text(DEMO.read_text().replace("[originality-rubric, coherence-rubric]",
                                             "[originality-rubric, coherence-rubric, clarity-rubric]"))
    result = plan_cohort(ledger, spec)
    assert result.spec_version == 2 and result.new_spec_version
    assert {s: c["new"] for s, c in result.counts.items()} == {"draft": 0, "essay": 0, "evaluation": 32}
    assert types(ledger, before) == {ev.SPEC_COMPILED: 1, ev.GENERATION_PLANNED: 32, ev.COHORT_PLANNED: 1}
    new = [e.payload for e in ledger.events(after=before, type=ev.GENERATION_PLANNED)]
    assert {g["template_id"] for g in new} == {"clarity-rubric"}
    versions = [e.payload["spec_version"] for e in ledger.events(type=ev.SPEC_COMPILED)]
    assert versions == [1, 2]


def test_editing_an_included_file_is_a_new_spec_version(ledger: Ledger, tmp_path: Path) -> None:
    (tmp_path / "rubrics.txt").write_text("originality-rubric\n")
    spec = tmp_path / "inc.yaml"
    spec.write_text(DEMO.read_text().replace("[originality-rubric, coherence-rubric]", "'@file:rubrics.txt'"))
    assert plan_cohort(ledger, spec).counts["evaluation"]["new"] == 32
    (tmp_path / "rubrics.txt").write_text("originality-rubric\nfeasibility-rubric\n")
    result = plan_cohort(ledger, spec)
    assert result.spec_version == 2 and result.counts["evaluation"]["new"] == 32
    last = ledger.events(type=ev.SPEC_COMPILED)[-1].payload
    assert ledger.get_text(last["includes"]["rubrics.txt"]) == "originality-rubric\nfeasibility-rubric\n"


def test_same_work_in_a_second_cohort_is_linked_not_duplicated(ledger: Ledger) -> None:
    plan_cohort(ledger, DEMO, cohort_id="first")
    before = ledger.last_seq()
    result = plan_cohort(ledger, DEMO, cohort_id="second")
    assert {s: c["linked"] for s, c in result.counts.items()} == {"draft": 8, "essay": 16, "evaluation": 64}
    assert types(ledger, before) == {ev.SPEC_COMPILED: 1, ev.GENERATION_LINKED: 88, ev.COHORT_PLANNED: 1}
    assert ledger.count(ev.GENERATION_PLANNED) == 88
    members = dict(ledger.query("SELECT cohort_id, COUNT(*) FROM cohort_members GROUP BY cohort_id"))
    assert members == {"first": 88, "second": 88}
    assert ledger.query("SELECT DISTINCT origin_cohort_id FROM gen_state") == [("first",)]


def imported(gen_id: str, stage: str, parent: str | None, combo: str | None, template: str,
             model: str | None) -> NewEvent:
    return NewEvent(ev.gen_stream(gen_id), ev.GENERATION_IMPORTED, {
        "gen_id": gen_id, "stage": stage, "parent_gen_id": parent, "combo_id": combo, "template_id": template,
        "model_id": model, "replicate": 1, "generator": "llm", "cohort_id": None, "status": "completed",
        "source": "test", "metadata": {}}, expected_version=0)


def test_imported_generations_with_legacy_ids_are_reused_by_signature(ledger: Ledger, tmp_path: Path) -> None:
    combo = ids.combo_id(["feedback-loop", "redundancy"], "paragraph", 2)
    # Legacy ids differ from ours (legacy llm essay ids left the model out).
    ledger.append([imported("d_legacydraft", "draft", None, combo, "bridge-essay-draft", "offline"),
                   imported("e_legacyessay", "essay", "d_legacydraft", None, "focused-essay", "offline")])
    spec = tmp_path / "reuse.yaml"
    spec.write_text("""\
axes:
  combo: [{concepts: [feedback-loop, redundancy], level: paragraph}]
  draft_template: [bridge-essay-draft]
  draft_llm: [offline]
  essay_template: [focused-essay, practical-proposal]
  essay_llm: [offline]
  evaluation_template: [clarity-rubric]
  evaluation_llm: [offline]
""")
    result = plan_cohort(ledger, spec)
    assert result.counts == {"draft": {"new": 0, "linked": 1, "existing": 0},
                             "essay": {"new": 1, "linked": 1, "existing": 0},
                             "evaluation": {"new": 2, "linked": 0, "existing": 0}}
    gens = planned(ledger)
    essay = next(g for g in gens.values() if g["stage"] == "essay")
    assert essay["parent_gen_id"] == "d_legacydraft" and essay["combo_id"] == combo
    evals = {g["parent_gen_id"]: g for g in gens.values() if g["stage"] == "evaluation"}
    assert set(evals) == {"e_legacyessay", essay["gen_id"]}
    assert evals["e_legacyessay"]["gen_id"] == ids.evaluation_gen_id("e_legacyessay", "clarity-rubric", "offline", 1)
    assert evals["e_legacyessay"]["combo_id"] == combo  # known through the reused draft
    assert "d_legacydraft" in {g for (g,) in ledger.query("SELECT gen_id FROM cohort_members WHERE cohort_id='reuse'")}


def test_single_stage_essays_come_straight_from_combos(ledger: Ledger) -> None:
    result = plan_cohort(ledger, COHORTS / "single_stage.yaml")
    assert {s: c["new"] for s, c in result.counts.items()} == {"draft": 0, "essay": 60, "evaluation": 240}
    essays = [g for g in planned(ledger).values() if g["stage"] == "essay"]
    for g in essays:
        assert g["parent_gen_id"] is None and g["combo_id"].startswith("combo_v1_")
        assert g["gen_id"] == ids.essay_gen_id(g["combo_id"], g["template_id"], g["model_id"], g["replicate"])
    assert ledger.count(ev.COMBO_DEFINED) == 15


def test_rescoring_existing_essays_plans_only_evaluations(ledger: Ledger, tmp_path: Path) -> None:
    plan_cohort(ledger, DEMO)
    essays = sorted(g["gen_id"] for g in planned(ledger).values() if g["stage"] == "essay")[:3]
    spec = tmp_path / "rescore.yaml"
    spec.write_text(f"axes:\n  essay_gen_id: {json.dumps(essays)}\n  evaluation_template: [feasibility-rubric]\n"
                    "  evaluation_llm: [offline]\n  evaluation_replicate: 2\n")
    before = ledger.last_seq()
    result = plan_cohort(ledger, spec)
    assert result.counts["evaluation"]["new"] == 6 and result.counts["draft"]["new"] == 0
    assert result.counts["essay"] == {"new": 0, "linked": 3, "existing": 0}
    new = [e.payload for e in ledger.events(after=before, type=ev.GENERATION_PLANNED)]
    combos = {g["gen_id"]: g["combo_id"] for g in planned(ledger).values()}
    assert sorted({g["parent_gen_id"] for g in new}) == essays
    assert all(g["combo_id"] == combos[g["parent_gen_id"]] for g in new)


def test_dry_run_counts_but_appends_nothing(ledger: Ledger) -> None:
    result = plan_cohort(ledger, DEMO, dry_run=True)
    assert result.dry_run and result.events == 96 and result.counts["evaluation"]["new"] == 64
    assert ledger.count() == 0


def test_catalog_comes_from_the_spec_key_or_the_argument(ledger: Ledger, tmp_path: Path) -> None:
    catalog = tmp_path / "cat"
    shutil.copytree(repo_catalog_dir(), catalog)
    with open(catalog / "models.yaml", "a") as fh:
        fh.write("\n- id: local-judge\n  model: judge/one\n  base_url: http://127.0.0.1:9/v1\n")
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "judge.yaml"
    text = DEMO.read_text().replace("evaluation_llm: [offline]", "evaluation_llm: [local-judge]")
    spec.write_text("catalog: ../cat\n" + text)
    result = plan_cohort(ledger, spec)
    assert result.catalog_hash == load_catalog(catalog).catalog_hash
    assert {g["model_id"] for g in planned(ledger).values() if g["stage"] == "evaluation"} == {"local-judge"}
    # An explicit catalog wins over the spec's key (and here lacks the model).
    from daydream.errors import CatalogError
    with pytest.raises(CatalogError, match="unknown model\\(s\\) 'local-judge'"):
        plan_cohort(ledger, spec, repo_catalog_dir(), cohort_id="other")


def test_cohort_id_of_a_config_yaml_is_its_folder(ledger: Ledger, tmp_path: Path) -> None:
    folder = tmp_path / "my_study"
    folder.mkdir()
    (folder / "config.yaml").write_text(DEMO.read_text())
    assert plan_cohort(ledger, folder / "config.yaml", dry_run=True).cohort_id == "my_study"


def test_cli_plan_list_show_and_compile(ledger_path: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["cohort", "plan", str(DEMO), "--db", str(ledger_path)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "cohort demo: spec v1" in out.output and "appended 96 events" in out.output
    assert [line.split() for line in out.output.splitlines()[2:5]] == [
        ["draft", "8", "0", "0"], ["essay", "16", "0", "0"], ["evaluation", "64", "0", "0"]]
    assert "estimate of the 80 pending LLM calls" in out.output  # the estimate follows the counts
    again = runner.invoke(cli, ["cohort", "plan", str(DEMO), "--db", str(ledger_path), "--format", "json"])
    assert json.loads(again.output)["events"] == 0
    listed = runner.invoke(cli, ["cohort", "list", "--db", str(ledger_path), "--json"])
    assert [(c["cohort_id"], c["members"]) for c in json.loads(listed.output)] == \
        [("demo", {"draft": 8, "essay": 16, "evaluation": 64})]
    shown = runner.invoke(cli, ["cohort", "show", "demo", "--db", str(ledger_path)])
    assert shown.exit_code == 0 and "spec: v1" in shown.output and "planned at:" in shown.output
    assert "evaluation  64     64" in shown.output
    info = json.loads(runner.invoke(cli, ["cohort", "show", "demo", "--db", str(ledger_path), "--json"]).output)
    assert info["stages"]["essay"] == {"total": 16, "planned": 16}
    rows = runner.invoke(cli, ["spec", "compile", str(DEMO), "--format", "jsonl", "--limit", "5"])
    assert [json.loads(line)["draft_template"] for line in rows.output.splitlines()] == ["bridge-essay-draft"] * 5
    csv_out = runner.invoke(cli, ["spec", "compile", str(DEMO), "--format", "csv", "--catalog", str(repo_catalog_dir())])
    assert csv_out.exit_code == 0 and len(csv_out.output.splitlines()) == 65


def test_edited_template_is_refused_rather_than_mixed_with_its_old_results(ledger: Ledger, tmp_path: Path) -> None:
    catalog = tmp_path / "cat"
    shutil.copytree(repo_catalog_dir(), catalog)
    plan_cohort(ledger, DEMO, catalog)
    before = ledger.count()
    rubric = catalog / "templates" / "evaluation" / "originality-rubric.j2"
    rubric.write_text(rubric.read_text() + "Be strict.\n")
    from daydream.errors import CatalogError
    with pytest.raises(CatalogError) as info:
        plan_cohort(ledger, DEMO, catalog)
    message = str(info.value)
    assert "\n" not in message
    assert "'originality-rubric'" in message and "32 planned generation(s)" in message
    assert "new id" in message and "coherence-rubric" not in message
    assert ledger.count() == before
    # An unchanged template still re-plans to nothing.
    rubric.write_text(load_catalog(repo_catalog_dir()).template("evaluation", "originality-rubric").text)
    assert plan_cohort(ledger, DEMO, catalog).events == 0


def test_an_empty_cohort_id_is_refused_not_replaced(ledger: Ledger) -> None:
    from daydream.errors import SpecError
    with pytest.raises(SpecError, match="cohort id '' must be non-empty"):
        plan_cohort(ledger, DEMO, cohort_id="")
    assert ledger.count() == 0


@pytest.mark.parametrize("fmt,expected", [
    ("csv", ["combo_id,draft_template,draft_llm,essay_template,essay_llm,evaluation_template,evaluation_llm,"
             "evaluation_replicate"]),
    ("jsonl", []),
])
def test_compile_with_limit_zero_still_prints_the_csv_header(fmt: str, expected: list[str]) -> None:
    out = CliRunner().invoke(cli, ["spec", "compile", str(DEMO), "--format", fmt, "--limit", "0"])
    assert out.exit_code == 0 and out.output.splitlines() == expected


def test_a_spec_file_name_with_spaces_asks_for_a_cohort_id(ledger: Ledger, tmp_path: Path) -> None:
    spec = tmp_path / "my study.yaml"
    spec.write_text(DEMO.read_text())
    from daydream.errors import SpecError
    with pytest.raises(SpecError, match="cohort id 'my study' .*from the spec's file name; pass --cohort-id"):
        plan_cohort(ledger, spec)
    assert plan_cohort(ledger, spec, cohort_id="my_study", dry_run=True).cohort_id == "my_study"


def test_two_plans_at_once_both_succeed(tmp_path: Path) -> None:
    """Two processes planning cohorts from the same catalog at the same moment: the one that loses
    the race for the catalog snapshot works its plan out again instead of failing."""
    import subprocess
    import sys

    from daydream.ledger.store import Ledger

    db = tmp_path / "race.db"
    Ledger.init(db)
    spec = Path(__file__).resolve().parent.parent / "specs" / "cohorts" / "demo.yaml"
    for _round in range(3):
        procs = [subprocess.Popen([sys.executable, "-m", "daydream", "cohort", "plan", str(spec), "--db", str(db),
                                   "--cohort-id", f"c{_round}{side}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for side in "ab"]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err for _out, err in results]
    ledger = Ledger.open(db)
    assert ledger.count("CatalogImported") == 1
    assert ledger.query("SELECT COUNT(DISTINCT cohort_id) FROM cohort_members") == [(6,)]
    ledger.verify()
