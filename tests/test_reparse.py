"""``daydream reparse``: re-scoring recorded answers after a scale or parser change, for free.

A cohort is run against a loopback judge that answers the way real judges do (``Final Score:
10/10``, ``SCORE: 8/10``, a heading then the number, …) on a rubric whose text asks for 0-10 but
whose catalog entry says 0-9. Fixing ``scale:`` and re-parsing re-scores it with no LLM call: the
scores change, the history keeps both parses, the chain verifies, a second reparse appends
nothing, and replaying the ledger into a fresh one derives the same scores.
"""

from __future__ import annotations

import itertools
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from daydream.ledger import projections
from daydream.cli import cli
from daydream.errors import NotFound, UsageError
from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort
from daydream.run.reparse import reparse
from daydream.run.runner import RunOptions, run_cohort
from daydream.testing import StubLLMServer
from tests.runner_fixtures import KEY_ENV, pipeline_spec, stub_catalog, write_spec

MARK = "JUDGE-TEN"
# The judge's answers in turn, with the score each must give on 0-9 and on 0-10 (None: refused).
ANSWERS = [
    ("The links are concrete and the test plan is real.\n\n**Final Score:** 10/10", None, 10),
    ("SCORE: 8/10\n\nThe mechanism is clear; the evidence is thin.", None, 8),
    ("## Score\n\n7\n\nA fair attempt that stays close to known work.", 7, 7),
    ("Rating: 10", None, 10),
    ("I cannot judge this essay.", None, None),
]
EXPECTED = {text: (old, new) for text, old, new in ANSWERS}


class JudgeServer(StubLLMServer):
    """The stub server, answering evaluation prompts with real judges' formats in turn."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._turn = itertools.count()
        self._turn_lock = threading.Lock()

    def _default_answer(self, index: int, model: str | None, prompt: str, payload: dict[str, Any],
                        truncated: bool) -> dict[str, Any]:
        body = super()._default_answer(index, model, prompt, payload, truncated)
        if MARK in prompt:
            with self._turn_lock:
                turn = next(self._turn)
            body["choices"][0]["message"]["content"] = ANSWERS[turn % len(ANSWERS)][0]
        return body


def set_scale(catalog: Path, scale: list[int]) -> None:
    templates = yaml.safe_load((catalog / "templates.yaml").read_text())
    for entry in templates["evaluation"]:
        if entry["id"] == "judge-ten":
            entry["scale"] = scale
    (catalog / "templates.yaml").write_text(yaml.safe_dump(templates, sort_keys=False))


def judge_catalog(tmp_path: Path, base_url: str) -> Path:
    """The starter catalog, a stub model, and a rubric asking for 0-10 that is declared 0-9."""
    folder = stub_catalog(tmp_path, base_url)
    templates = yaml.safe_load((folder / "templates.yaml").read_text())
    templates["evaluation"].append({"id": "judge-ten", "parser": "score", "generator": "llm",
                                    "description": "0-10 rubric", "scale": [0, 9]})
    (folder / "templates.yaml").write_text(yaml.safe_dump(templates, sort_keys=False))
    (folder / "templates" / "evaluation" / "judge-ten.j2").write_text(
        f"{MARK}\nJudge this essay on a scale of 0 to 10.\n\n{{{{ response }}}}\n\n"
        "End with a line SCORE: X, X a number from 0 to 10.\n")
    return folder


def score_rows(ledger: Ledger) -> dict[str, tuple]:
    return {r[0]: tuple(r[1:]) for r in ledger.query(
        "SELECT evaluation_gen_id, score, scale_min, scale_max, score_norm, parse_status FROM scores")}


def raw_of(ledger: Ledger) -> dict[str, str]:
    return {gen_id: text for gen_id, text in ledger.query(
        "SELECT gen_id, response FROM generations WHERE stage = 'evaluation'")}


@pytest.fixture
def judged(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A finished cohort 't' (3 drafts, 3 essays, 6 evaluations) judged on the wrong scale, on a
    SQLite file and on a PostgreSQL database (issue 17)."""
    monkeypatch.setenv(KEY_ENV, "test-key")
    with JudgeServer() as server:
        catalog = judge_catalog(tmp_path, server.base_url)
        spec = pipeline_spec(n_combos=3, eval_replicates=2)
        spec["axes"]["evaluation_template"] = ["judge-ten"]
        spec_path = write_spec(tmp_path, "t", spec)
        ledger = Ledger.open(ledger_url)
        plan_cohort(ledger, spec_path, catalog, cohort_id="t")
        run_cohort(ledger, RunOptions(cohort="t"))
        yield ledger, catalog, spec_path, server


def test_a_cohort_reparsed_on_its_new_scale_is_rescored_keeping_both_parses(judged, tmp_path: Path) -> None:
    ledger, catalog, spec_path, server = judged
    raws = raw_of(ledger)
    assert len(raws) == 6 and set(raws.values()) == set(EXPECTED)  # every kind of answer was given
    before = score_rows(ledger)
    for gen_id, raw in raws.items():  # parsed on 0-9: "/10" and 10 are refused, never rescaled
        old = EXPECTED[raw][0]
        assert before[gen_id][0] == old and before[gen_id][4] == ("parsed" if old is not None else "parse_failed")
    calls, seq = server.calls, ledger.last_seq()

    set_scale(catalog, [0, 10])
    report = reparse(ledger, "t")
    assert server.calls == calls  # no LLM call
    assert report.catalog == str(catalog) and report.catalog_recorded
    after = score_rows(ledger)
    for gen_id, raw in raws.items():
        new = EXPECTED[raw][1]
        if new is None:
            assert after[gen_id][:4] == (None, None, None, None)
        else:
            assert after[gen_id] == (new, 0, 10, pytest.approx(new / 10), "parsed")
    kinds = {c.gen_id: c.kind for c in report.changes}
    assert {raws[g] for g, k in kinds.items() if k == "now_parsed"} == {a for a, old, new in ANSWERS
                                                                        if old is None and new is not None}
    assert {raws[g] for g, k in kinds.items() if k == "rescored"} == {ANSWERS[2][0]}  # 7 on 0-9 -> 7 on 0-10
    # The refusal stays a refusal, recorded again under the rubric's new identity (its hash now
    # includes the 0-10 scale), so the generation says which template it was judged by.
    assert {raws[g] for g, k in kinds.items() if k == "other"} == {ANSWERS[4][0]}
    counts = report.stages["evaluation"]
    assert (counts.examined, counts.unchanged, counts.other) == (6, 0, 1)
    assert report.stages["draft"].unchanged == 3 and report.stages["essay"].unchanged == 3

    # The history keeps both parses: the old ones are still there, the new ones say they re-parse.
    for gen_id, raw in raws.items():
        types = [(e.type, e.payload.get("reparsed", False), e.payload.get("scale"))
                 for e in ledger.stream(f"gen:{gen_id}") if e.type in ("ParseFailed", "ScoreRecorded")]
        if raw == ANSWERS[0][0]:
            assert types == [("ParseFailed", False, None), ("ScoreRecorded", True, [0, 10])]
        if raw == ANSWERS[2][0]:
            assert types == [("ScoreRecorded", False, [0, 9]), ("ScoreRecorded", True, [0, 10])]
        if raw == ANSWERS[4][0]:
            assert types == [("ParseFailed", False, None), ("ParseFailed", True, None)]
    assert ledger.verify()[0] == ledger.last_seq() > seq
    assert projections.check(ledger).drift == []

    # A second reparse appends nothing.
    last = ledger.last_seq()
    again = reparse(ledger, "t")
    assert again.events_appended == 0 and again.changes == [] and ledger.last_seq() == last
    assert again.stages["evaluation"].unchanged == 6

    # Planning the cohort again with the fixed catalog reuses everything (no "template changed").
    plan = plan_cohort(ledger, spec_path, catalog, cohort_id="t")
    assert all(c["new"] == 0 for c in plan.counts.values())


def test_planning_before_reparsing_a_changed_scale_says_to_reparse(judged) -> None:
    from daydream.errors import CatalogError

    ledger, catalog, spec_path, _server = judged
    set_scale(catalog, [0, 10])
    with pytest.raises(CatalogError, match=r"'judge-ten' changed since 6 planned generation\(s\).*"
                                           r"'daydream reparse --cohort ID' first re-scores"):
        plan_cohort(ledger, spec_path, catalog, cohort_id="t")
    reparse(ledger, "t")
    plan_cohort(ledger, spec_path, catalog, cohort_id="t")


def test_replaying_a_reparsed_ledger_derives_the_same_scores(judged, tmp_path: Path) -> None:
    ledger, catalog, spec_path, server = judged
    set_scale(catalog, [0, 10])
    reparse(ledger, "t")
    calls = server.calls
    fresh = Ledger.init(tmp_path / "replayed.db")[0]
    plan_cohort(fresh, spec_path, catalog, cohort_id="t")
    # --replay-from reads a ledger file: a PostgreSQL ledger is replayed from its backup (a SQLite
    # copy of its events; see test_pg_ledger.py's test_replay_from_a_postgresql_ledger).
    source = ledger.path if ledger.backend.name == "sqlite" else ledger.backup(tmp_path / "source.db")
    stats = run_cohort(fresh, RunOptions(cohort="t", replay_from=str(source)))
    assert server.calls == calls and stats.calls == 12
    assert score_rows(fresh) == score_rows(ledger)
    assert any(row[0] == 10 for row in score_rows(fresh).values())


def test_reparse_with_narrowing_options_and_dry_run(judged) -> None:
    ledger, catalog, _spec, _server = judged
    set_scale(catalog, [0, 10])
    last = ledger.last_seq()
    dry = reparse(ledger, "t", stage="evaluation", template="judge-ten", dry_run=True)
    assert dry.changes and dry.events_appended > 0 and ledger.last_seq() == last
    assert set(dry.stages) == {"evaluation"}
    real = reparse(ledger, "t", stage="evaluation")
    assert real.events_appended == dry.events_appended and real.changes == dry.changes
    with pytest.raises(NotFound, match="no evaluation generations of template 'nope'"):
        reparse(ledger, "t", stage="evaluation", template="nope")
    with pytest.raises(UsageError, match="--stage 'drafts' is not a stage"):
        reparse(ledger, "t", stage="drafts")
    with pytest.raises(NotFound, match="cohort 'missing' has no generations"):
        reparse(ledger, "missing")


def test_an_explicit_catalog_or_the_recorded_snapshot_when_the_folder_is_gone(judged, tmp_path: Path) -> None:
    ledger, catalog, _spec, _server = judged
    moved = tmp_path / "moved-catalog"
    shutil.copytree(catalog, moved)
    shutil.rmtree(catalog)
    kept = reparse(ledger, "t")  # the recorded snapshot: the same scale, nothing to change
    assert kept.events_appended == 0 and "not there" in kept.notes[0]
    set_scale(moved, [0, 10])
    fixed = reparse(ledger, "t", catalog=moved)
    assert fixed.catalog == str(moved) and fixed.stages["evaluation"].now_parsed > 0


def test_the_cli_prints_what_changed_and_fails_in_one_line(judged) -> None:
    ledger, catalog, _spec, _server = judged
    set_scale(catalog, [0, 10])
    db = str(ledger.path)
    runner = CliRunner()
    dry = runner.invoke(cli, ["reparse", "--cohort", "t", "--db", db, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing appended" in dry.output and "would append" in dry.output
    assert "-> score 10 on 0-10" in dry.output
    done = runner.invoke(cli, ["reparse", "--cohort", "t", "--db", db, "--json"])
    assert done.exit_code == 0 and '"now_parsed"' in done.output
    missing = runner.invoke(cli, ["reparse", "--cohort", "nope", "--db", db])
    assert missing.exit_code == 1 and missing.output.count("\n") == 1 and "cohort 'nope'" in missing.output


# ----------------------------------------------------------------------------- parser changes
def test_a_parser_change_unblocks_children_but_never_rewrites_a_parse_they_used(tmp_path: Path) -> None:
    folder = tmp_path / "catalog"
    shutil.copytree(Path(__file__).resolve().parents[1] / "specs" / "catalog", folder)

    def set_parser(name: str) -> None:
        text = (folder / "templates.yaml").read_text()
        start = text.index("id: link-brainstorm")
        line = text.index("parser:", start)
        end = text.index("\n", line)
        (folder / "templates.yaml").write_text(text[:line] + f"parser: {name}" + text[end:])

    set_parser("essay_block")  # the wrong parser: brainstorm lists have no <essay> tag
    spec = write_spec(tmp_path, "p", {"axes": {
        "combo": [{"concepts": ["feedback-loop", "redundancy"], "level": "paragraph"},
                  {"concepts": ["bottleneck", "modularity"], "level": "paragraph"}],
        "draft_template": ["link-brainstorm"], "draft_llm": ["offline"],
        "essay_template": ["focused-essay"], "essay_llm": ["offline"]}})
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    plan_cohort(ledger, spec, folder, cohort_id="p")
    run_cohort(ledger, RunOptions(cohort="p"))
    status = dict(ledger.query("SELECT stage || ':' || status, COUNT(*) FROM gen_state GROUP BY 1"))
    assert status == {"draft:failed": 2, "essay:planned": 2}

    set_parser("identity")
    fixed = reparse(ledger, "p")
    assert fixed.stages["draft"].now_parsed == 2
    run_cohort(ledger, RunOptions(cohort="p"))  # the essays were waiting on their drafts
    assert dict(ledger.query("SELECT stage, status FROM gen_state")) == {"draft": "completed", "essay": "completed"}

    set_parser("essay_block")  # would fail the drafts again, but essays were written from them
    last = ledger.last_seq()
    kept = reparse(ledger, "p")
    assert kept.stages["draft"].skipped == 2 and ledger.last_seq() == last
    assert any("children were made from their current parse" in n for n in kept.notes)


def test_an_imported_cohort_is_rescored_with_its_rubrics_scale(tmp_path: Path, seed_data: Path) -> None:
    from daydream.transfer.importer import import_dagster
    from tests.dagster_root import build_dagster_root

    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=2,
                               evaluation_templates=("daydreaming-verification",))  # a 0-10 rubric
    first, second = built.evaluations[:2]
    (built.folder(first) / "raw.txt").write_text("Analysis…\n\n**Final Score:** 10/10\n\nStrong work.\n")
    (built.folder(first) / "parsed.txt").write_text("Strong work.\n")  # the old parser misread it
    (built.folder(second) / "raw.txt").write_text("Analysis…\nSCORE: 7 or 8\n")
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    import_dagster(ledger, built.root)
    assert score_rows(ledger)[first][4] == "failed"

    report = reparse(ledger, built.cohort_id)
    assert report.catalog == str(built.root / "1_raw")
    rows = score_rows(ledger)
    assert rows[first] == (10.0, 0, 10, 1.0, "parsed")
    assert rows[second][4] == "parse_failed"  # refused, not guessed
    # The drafts and essays were the parents of what was imported: their parse is left alone.
    assert report.stages["draft"].skipped == report.stages["draft"].examined - report.stages["draft"].unchanged
    assert ledger.verify()[0] == ledger.last_seq() and projections.check(ledger).drift == []
    assert reparse(ledger, built.cohort_id).events_appended == 0
