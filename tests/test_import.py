"""``daydream import dagster``: a previous-pipeline data root moves into the ledger intact.

Each test builds a data root in ``tmp_path`` (``tests/dagster_root.py``, with the seed data's
``1_raw`` where the catalog matters), imports it into a real ledger file and reads back ids, texts,
scores, lineage, cohorts and the read-side views; damaged folders are written by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import daydream.cli.transfer  # noqa: F401  (registers ``daydream import``)
from daydream.ledger import events as ev
from daydream.design import ids
from daydream.ledger import projections
from daydream.cli import cli
from daydream.transfer.importer import ImportReport, _Writer, import_dagster, parse_score
from daydream.ledger.store import Ledger, NewEvent, text_hash

from tests.dagster_root import LEGACY_COMBO, build_dagster_root, score_for, text_for, write_cohort


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def gen_rows(ledger: Ledger) -> dict[str, dict]:
    cols = ["gen_id", "stage", "status", "parent_gen_id", "combo_id", "template_id", "model_id",
            "replicate", "origin_cohort_id", "imported", "score", "prompt_hash", "raw_hash",
            "parsed_hash", "error", "prompt_tokens", "completion_tokens", "latency_s", "finish_reason"]
    return {r[0]: dict(zip(cols, r)) for r in ledger.query(f"SELECT {', '.join(cols)} FROM gen_state")}


def summary_table(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    return lines[start:start + 4]


# ----------------------------------------------------------------------------- the happy path
def test_import_keeps_ids_texts_scores_lineage_and_views(tmp_path: Path, seed_data: Path,
                                                          ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=3,
                               evaluation_templates=("daydreaming-verification-v2", "novelty-v2"),
                               evaluation_models=("sonnet-4", "gemini_25_pro"))
    # The previous pipeline's formulas, as given in the issue.
    assert built.drafts[0] == "d_5ezrffv9uf3lr37d"
    assert built.essays[0] == "e_sq5klak2lljyyom"

    out = invoke("import", "dagster", str(built.root), "--db", str(ledger_path))
    assert "draft       3         0" in out and "evaluation  12        0" in out, out
    ledger = Ledger.open(ledger_path)
    rows = gen_rows(ledger)
    assert set(rows) == set(built.all_ids)
    assert rows["d_5ezrffv9uf3lr37d"]["combo_id"] == LEGACY_COMBO
    assert rows["e_sq5klak2lljyyom"]["parent_gen_id"] == "d_5ezrffv9uf3lr37d"
    assert rows["e_sq5klak2lljyyom"]["model_id"] == "gemini_25_pro"

    for gen_id, row in rows.items():
        assert row["status"] == "completed" and row["imported"] == 1 and row["error"] is None
        assert row["origin_cohort_id"] == built.cohort_id
        # Lineage: parents kept, combos carried down to essays and evaluations that lacked them.
        assert row["parent_gen_id"] == built.parents.get(gen_id)
        assert row["combo_id"] == built.combo_of[gen_id]
        folder = built.folder(gen_id)
        for kind in ("prompt", "raw", "parsed"):
            assert ledger.get_text(row[f"{kind}_hash"]) == (folder / f"{kind}.txt").read_text()
        assert row["finish_reason"] == "stop" and row["latency_s"] == 12.5
        assert row["prompt_tokens"] == 1300 and row["completion_tokens"] == 600
    assert {g: rows[g]["score"] for g in built.evaluations} == built.scores
    assert len(set(built.scores.values())) > 1  # the scores really differ, so the check means something

    # The original metadata is kept verbatim, with the source folder and a timestamp.
    event = ledger.events(stream=ev.gen_stream("e_sq5klak2lljyyom"))[0]
    folder = built.folder("e_sq5klak2lljyyom")
    assert event.type == ev.GENERATION_IMPORTED and event.version == 1
    assert event.payload["metadata"] == {
        name: json.loads((folder / f"{name}.json").read_text())
        for name in ("metadata", "raw_metadata", "parsed_metadata")}
    assert event.payload["source"] == str(folder.resolve())
    assert event.payload["created_at"].startswith("20")

    # Catalog snapshot, combos, cohort spec and membership.
    from daydream.design.catalog import load_catalog

    catalog = load_catalog(built.root / "1_raw")
    snap = ledger.events(type=ev.CATALOG_IMPORTED)
    assert [e.stream for e in snap] == [ev.catalog_stream(catalog.catalog_hash)]
    assert snap[0].payload == catalog.snapshot()[0]
    combos = {c: (json.loads(ids_), level, k) for c, ids_, level, k in
              ledger.query("SELECT combo_id, concept_ids, level, k FROM combos")}
    assert combos == {c: (concepts, "paragraph", len(concepts)) for c, concepts in built.combos.items()}
    spec = ledger.events(type=ev.SPEC_COMPILED)
    assert len(spec) == 1 and spec[0].stream == ev.cohort_stream(built.cohort_id)
    spec_file = built.root / "cohorts" / built.cohort_id / "spec" / "config.yaml"
    assert ledger.get_text(spec[0].payload["spec_hash"]) == spec_file.read_text()
    assert spec[0].payload["catalog_hash"] == catalog.catalog_hash
    members = ledger.query("SELECT stage, gen_id FROM cohort_members WHERE cohort_id = ?", (built.cohort_id,))
    assert sorted(members) == sorted(built.members[built.cohort_id])

    # The read side works on imported data.
    if ledger.query("SELECT name FROM sqlite_master WHERE type = 'view' AND name = 'essay_rankings'"):
        view = dict(ledger.query("SELECT gen_id, response FROM generations WHERE stage = 'draft'"))
        assert view["d_5ezrffv9uf3lr37d"] == text_for("d_5ezrffv9uf3lr37d", "raw")
        progress = ledger.query("SELECT stage, planned, completed FROM cohort_progress WHERE cohort_id = ?",
                                (built.cohort_id,))
        assert sorted(progress) == [("draft", 3, 3), ("essay", 3, 3), ("evaluation", 12, 12)]
        ranking = dict(ledger.query("SELECT essay_gen_id, mean FROM essay_rankings WHERE cohort_id = ?",
                                    (built.cohort_id,)))
        for essay in built.essays:
            mine = [built.scores[v] for v in built.evaluations if built.parents[v] == essay]
            assert ranking[essay] == pytest.approx(sum(mine) / len(mine), abs=1e-4)

    assert "ok:" in invoke("verify", "--db", str(ledger_path))


def test_reimport_appends_nothing(tmp_path: Path, seed_data: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=2)
    invoke("import", "dagster", str(built.root), "--db", str(ledger_path))
    ledger = Ledger.open(ledger_path)
    before = ledger.count()
    texts_before = ledger.query("SELECT COUNT(*) FROM texts")
    out = invoke("import", "dagster", str(built.root), "--db", str(ledger_path))
    assert ledger.count() == before
    assert ledger.query("SELECT COUNT(*) FROM texts") == texts_before
    assert "appended 0 events" in out
    assert "catalog: already present" in out
    assert summary_table(out)[1].split() == ["draft", "0", "2", "0", "0"]


def test_root_that_gained_generations_appends_only_those(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=2)
    ledger = Ledger.open(ledger_path)
    first = import_dagster(ledger, built.root)
    assert first.stages["evaluation"].imported == 2
    seqs_before = ledger.query("SELECT seq, hash FROM events ORDER BY seq")

    # The old pipeline ran on: a new rubric on both essays, and a second cohort reusing them.
    added = []
    for essay in built.essays:
        gen_id = ids.evaluation_gen_id(essay, "novelty-v2", "sonnet-4", 1)
        added.append(gen_id)
        folder = built.root / "gens" / "evaluation" / gen_id
        shutil.copytree(built.folder(built.evaluations[0]), folder)
        meta = json.loads((folder / "metadata.json").read_text())
        meta.update(gen_id=gen_id, parent_gen_id=essay, template_id="novelty-v2", origin_cohort_id="rescore")
        (folder / "metadata.json").write_text(json.dumps(meta))
        (folder / "parsed.txt").write_text("fine work\n4\n")
    write_cohort(built.root, "rescore", [("essay", e) for e in built.essays] +
                 [("evaluation", g) for g in added], spec={"axes": {"evaluation_template": ["novelty-v2"]}})

    second = import_dagster(ledger, built.root)
    assert second.stages["evaluation"].imported == 2 and second.stages["evaluation"].skipped == 2
    assert second.stages["draft"].skipped == 2 and second.stages["essay"].skipped == 2
    # Two evaluations, one spec, and links for the two essays (the evaluations joined via origin).
    assert second.events_appended == 5
    assert second.links_added == 2 and second.links_present == 6 + 2  # old cohort, new evaluations
    assert ledger.query("SELECT seq, hash FROM events WHERE seq <= ? ORDER BY seq",
                        (len(seqs_before),)) == seqs_before
    new = ledger.query("SELECT DISTINCT type FROM events WHERE seq > ?", (len(seqs_before),))
    assert sorted(t for (t,) in new) == ["GenerationImported", "GenerationLinked", "SpecCompiled"]
    assert dict(ledger.query("SELECT gen_id, score FROM gen_state WHERE template_id = 'novelty-v2'")) == \
        {g: 4 for g in added}
    rescore = ledger.query("SELECT stage, COUNT(*) FROM cohort_members WHERE cohort_id = 'rescore' GROUP BY stage")
    assert sorted(rescore) == [("essay", 2), ("evaluation", 2)]
    assert projections.check(ledger).drift == []  # what two imports projected is what a replay gives


def test_parents_already_in_the_ledger_count_and_pass_their_combo_down(tmp_path: Path,
                                                                        ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=2)
    drafts_only = tmp_path / "drafts_only"
    (drafts_only / "gens").mkdir(parents=True)
    shutil.copytree(built.root / "gens" / "draft", drafts_only / "gens" / "draft")
    ledger = Ledger.open(ledger_path)
    assert import_dagster(ledger, drafts_only).stages["draft"].imported == 2
    shutil.rmtree(built.root / "gens" / "draft")  # the rest arrives later, without the drafts
    report = import_dagster(ledger, built.root)
    assert report.stages["essay"].imported == 2 and report.stages["evaluation"].imported == 2
    assert report.problems == []
    rows = gen_rows(ledger)
    assert {g: rows[g]["combo_id"] for g in built.essays + built.evaluations} == \
        {g: built.combo_of[g] for g in built.essays + built.evaluations}


# ----------------------------------------------------------------------------- damaged input
def _edit_json(path: Path, **changes: object) -> None:
    value = json.loads(path.read_text())
    value.update(changes)
    path.write_text(json.dumps(value))


def test_damaged_generations_are_reported_and_the_rest_imported(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=4,
                               evaluation_models=("sonnet-4", "gemini_25_pro", "deepseek_r1_p"))
    ev_of = {e: [v for v in built.evaluations if built.parents[v] == e] for e in built.essays}
    d0, d1, d2, d3 = built.drafts
    e0, e1, e2, e3 = built.essays
    damage = {}
    # Unreadable: identity unknown or lineage broken → not imported.
    (built.folder(d1) / "metadata.json").write_text('{"stage": "draft", "template_id": ')
    damage[d1] = "metadata.json is not valid JSON"
    damage[e1] = "missing parent: parent draft " + d1  # its draft was unreadable
    for v in ev_of[e1]:
        damage[v] = "orphan evaluation: parent essay " + e1
    (built.folder(ev_of[e0][0]) / "metadata.json").unlink()
    damage[ev_of[e0][0]] = "metadata.json is missing"
    _edit_json(built.folder(ev_of[e0][1]) / "metadata.json", parent_gen_id="e_doesnotexist")
    damage[ev_of[e0][1]] = "orphan evaluation: parent essay e_doesnotexist"
    (built.folder(ev_of[e3][2]) / "metadata.json").write_text(
        json.dumps({"template_id": "x", "llm_model_id": "m", "parent_gen_id": e3})[:-1] + ', "note": "\\ud800"}')
    damage[ev_of[e3][2]] = "invalid unicode escape"
    # Imported as failed (counted incomplete) with the reason recorded.
    (built.folder(e2) / "raw.txt").unlink()
    damage[e2] = "parsed.txt present but raw.txt missing"
    (built.folder(ev_of[e2][0]) / "parsed.txt").write_text("very good\n12\n")
    damage[ev_of[e2][0]] = "score 12 on the last line of parsed.txt is not in 0–9"
    (built.folder(ev_of[e3][0]) / "parsed.txt").unlink()  # plainly incomplete: not a listed problem
    # Imported as completed, with the broken side file left out and reported.
    (built.folder(d3) / "raw_metadata.json").write_text("{nope")
    damage[d3] = "raw_metadata.json is not valid JSON"

    ledger = Ledger.open(ledger_path)
    ledger.append([NewEvent("combo:other", ev.COMBO_DEFINED,
                            {"combo_id": "other", "concept_ids": ["a"], "level": "sentence", "k": 1})])
    before = ledger.query("SELECT seq, hash FROM events")
    result = CliRunner().invoke(cli, ["import", "dagster", str(built.root), "--db", str(ledger_path)])
    assert result.exit_code == 0, result.output
    out = result.output

    for gen_id, reason in damage.items():
        line = next((l for l in out.splitlines() if gen_id in l and reason in l), None)
        assert line is not None, f"{gen_id}: {reason!r} not reported in\n{out}"
        assert str(built.folder(gen_id).resolve()) in line
    assert str(built.folder(ev_of[e3][0]).resolve()) not in out
    assert summary_table(out)[1:] == [
        "draft       3         0                          0           1",
        "essay       2         0                          1           1",
        "evaluation  4         0                          2           6",
    ]

    assert ledger.query("SELECT seq, hash FROM events WHERE seq <= ?", (len(before),)) == before
    rows = gen_rows(ledger)
    unreadable = {d1, e1, *ev_of[e1], ev_of[e0][0], ev_of[e0][1], ev_of[e3][2]}
    assert unreadable.isdisjoint(rows)
    assert set(built.all_ids) - unreadable == set(rows)
    assert rows[e2]["status"] == "failed" and rows[e2]["error"] == "parsed.txt present but raw.txt missing"
    assert rows[e2]["parsed_hash"] == text_hash(text_for(e2, "parsed"))
    assert rows[ev_of[e2][0]]["status"] == "failed" and rows[ev_of[e2][0]]["score"] is None
    assert rows[ev_of[e3][0]]["status"] == "failed" and rows[ev_of[e3][0]]["error"] == "parsed.txt missing"
    assert rows[d3]["status"] == "completed" and rows[d3]["latency_s"] is None
    assert rows[ev_of[e2][1]]["score"] == score_for(ev_of[e2][1])
    assert "ok:" in invoke("verify", "--db", str(ledger_path))


def test_membership_rows_naming_unknown_generations_are_reported(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=1)
    write_cohort(built.root, "other", [("essay", built.essays[0]), ("essay", "e_ghost"),
                                       ("draft", built.essays[0])], spec={"axes": {}})
    report = import_dagster(Ledger.open(ledger_path), built.root)
    reasons = [p.reason for p in report.problems]
    assert any("e_ghost is not in the data root" in r for r in reasons), reasons
    assert any("is listed as stage 'draft' but its stage is 'essay'" in r for r in reasons), reasons
    assert report.links_added == 1


def test_dry_run_appends_nothing_and_prints_the_same_summary(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=2)
    (built.folder(built.evaluations[0]) / "parsed.txt").unlink()
    dry = invoke("import", "dagster", str(built.root), "--dry-run", "--db", str(ledger_path))
    assert Ledger.open(ledger_path).count() == 0
    assert "would append 9 events" in dry  # 2 combos, 6 generations, 1 spec (members join by origin)
    real = invoke("import", "dagster", str(built.root), "--db", str(ledger_path))
    assert summary_table(dry) == summary_table(real)
    assert Ledger.open(ledger_path).count() == 9


def test_writer_appends_the_sound_rest_when_the_database_rejects_one_event(ledger_path: Path) -> None:
    ledger = Ledger.open(ledger_path)
    rejected = []
    writer = _Writer(ledger, ImportReport(root=Path("."), dry_run=False), 100,
                     lambda events, reason: rejected.append((events[0].stream, reason)), lambda e: e)
    good = [NewEvent(f"combo:c{i}", ev.COMBO_DEFINED, {"combo_id": f"c{i}", "concept_ids": ["a"],
                                                        "level": "sentence", "k": 1}) for i in range(3)]
    # A lone surrogate cannot be encoded for SQLite: the batch fails, the other units still land.
    bad = NewEvent("combo:bad", ev.COMBO_DEFINED, {"combo_id": "\ud800", "concept_ids": [], "level": None, "k": 0})
    for e in [good[0], bad, good[1], good[2]]:
        writer.add([e])
    writer.flush()
    assert [s for s, _ in rejected] == ["combo:bad"]
    assert sorted(r[0] for r in ledger.query("SELECT combo_id FROM combos")) == ["c0", "c1", "c2"]
    assert ledger.verify()[0] == 3


@pytest.mark.parametrize("make", ["missing", "file", "no_gens"])
def test_unusable_root_is_a_one_line_error_and_the_ledger_is_unchanged(
        tmp_path: Path, ledger_path: Path, make: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from daydream.cli import main

    root = tmp_path / "root"
    if make == "file":
        root.write_text("not a folder")
    elif make == "no_gens":
        (root / "1_raw").mkdir(parents=True)
    monkeypatch.delenv("DAYDREAM_DEBUG", raising=False)
    state = "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM texts)"
    before = Ledger.open(ledger_path).query(state)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main(["import", "dagster", str(root), "--db", str(ledger_path)])
    err = capsys.readouterr().err
    assert stop.value.code == 1
    assert len(err.strip().splitlines()) == 1 and str(root) in err and "Traceback" not in err
    assert {"missing": "does not exist", "file": "not a directory", "no_gens": "no gens/ folder"}[make] in err
    assert Ledger.open(ledger_path).query(state) == before


@pytest.mark.parametrize("text, score", [("good\n7\n", 7), ("x\nSCORE: 8.5", 8.5), ("0", 0), ("**Score:** 9\n\n", 9)])
def test_parse_score_reads_the_number_on_the_last_line(text: str, score: float) -> None:
    assert parse_score(text) == score


@pytest.mark.parametrize("text", ["", "good\n10", "-1", "score: high", "7\nthe end"])
def test_parse_score_rejects_what_is_not_a_0_to_9_number(text: str) -> None:
    with pytest.raises(ValueError):
        parse_score(text)


# ----------------------------------------------------------------------------- reuse after import
def _write_spec(path: Path, axes: dict[str, list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("axes:\n" + "".join(f"  {k}: [{', '.join(v)}]\n" for k, v in axes.items()))
    return path


def test_planning_the_imported_design_again_reuses_every_imported_generation(
        tmp_path: Path, seed_data: Path, ledger_path: Path) -> None:
    from daydream.design.planner import plan_cohort

    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=2,
                               evaluation_models=("sonnet-4", "gemini_25_pro"))
    ledger = Ledger.open(ledger_path)
    import_dagster(ledger, built.root)
    before = ledger.count(ev.GENERATION_PLANNED)
    # The same design the legacy cohort ran, with the essay model the legacy ids left out.
    spec = _write_spec(tmp_path / "again.yaml", {
        "combo_id": list(built.combos), "draft_template": ["creative-synthesis-v10"],
        "draft_llm": ["gemini_25_pro"], "essay_template": ["creative-synthesis-v10"],
        "essay_llm": ["gemini_25_pro"], "evaluation_template": ["daydreaming-verification-v2"],
        "evaluation_llm": ["sonnet-4", "gemini_25_pro"]})
    result = plan_cohort(ledger, spec, built.root / "1_raw", cohort_id="again")
    assert {s: c["new"] for s, c in result.counts.items()} == {"draft": 0, "essay": 0, "evaluation": 0}
    assert {s: c["linked"] for s, c in result.counts.items()} == {"draft": 2, "essay": 2, "evaluation": 4}
    assert ledger.count(ev.GENERATION_PLANNED) == before
    members = ledger.query("SELECT gen_id FROM cohort_members WHERE cohort_id = 'again'")
    assert sorted(g for (g,) in members) == sorted(built.all_ids)


def _stub_catalog(dest: Path, base_url: str) -> Path:
    """The repo's starter catalog, with the imported rubric id and two evaluators on the stub."""
    import yaml

    from daydream.design.catalog import repo_catalog_dir

    shutil.copytree(repo_catalog_dir(), dest)
    templates = yaml.safe_load((dest / "templates.yaml").read_text())
    # The imported evaluations used this rubric id; its text here is irrelevant, only its id counts.
    templates["evaluation"].append({"id": "daydreaming-verification-v2", "file": "originality-rubric.j2",
                                    "parser": "score", "generator": "llm"})
    (dest / "templates.yaml").write_text(yaml.safe_dump(templates))
    models = [{"id": mid, "provider": "openai", "model": name, "base_url": base_url,
               "api_key_env": "DAYDREAM_IMPORT_TEST_KEY", "concurrency": 4, "price_in": 1, "price_out": 2}
              for mid, name in (("sonnet-4", "anthropic/claude-sonnet-4"), ("judge_b", "judge/b"))]
    (dest / "models.yaml").write_text(yaml.safe_dump(models))
    return dest


def test_rescoring_imported_essays_calls_the_llm_only_for_new_evaluations(
        tmp_path: Path, ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daydream.design.planner import plan_cohort
    from daydream.testing import StubLLMServer

    built = build_dagster_root(tmp_path / "root", n_combos=3)  # 3 essays, each scored by sonnet-4
    ledger = Ledger.open(ledger_path)
    import_dagster(ledger, built.root)
    imported_streams = ledger.query("SELECT stream, MAX(version) FROM events GROUP BY stream")
    monkeypatch.setenv("DAYDREAM_IMPORT_TEST_KEY", "sk-test-not-a-real-key")
    with StubLLMServer() as stub:
        catalog = _stub_catalog(tmp_path / "catalog", stub.base_url)
        # Existing essays × (the old rubric + a new one) × (the old evaluator + a new one).
        spec = _write_spec(tmp_path / "rescore.yaml", {
            "essay_gen_id": built.essays,
            "evaluation_template": ["daydreaming-verification-v2", "originality-rubric"],
            "evaluation_llm": ["sonnet-4", "judge_b"]})
        plan = plan_cohort(ledger, spec, catalog, cohort_id="rescore")
        assert plan.counts["evaluation"] == {"new": 9, "linked": 3, "existing": 0}
        assert plan.counts["essay"]["new"] == 0
        result = CliRunner().invoke(cli, ["run", "--db", str(ledger_path)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert stub.calls == 9  # exactly the new evaluations; the 3 imported ones cost nothing
        records = stub.records
    # Each call judged one imported essay (its parsed text is in the prompt), per new (rubric, model).
    essay_text = {e: text_for(e, "parsed") for e in built.essays}
    judged = sorted((next(e for e, t in essay_text.items() if t in (r.prompt or "")), r.model) for r in records)
    assert judged == sorted([(e, "anthropic/claude-sonnet-4") for e in built.essays] +
                            [(e, "judge/b") for e in built.essays] * 2)
    scores = ledger.query("SELECT gen_id, status, score, imported FROM gen_state "
                          "WHERE stage = 'evaluation' AND gen_id IN "
                          "(SELECT gen_id FROM cohort_members WHERE cohort_id = 'rescore')")
    assert len(scores) == 12
    assert all(status == "completed" and score is not None for _g, status, score, _i in scores)
    assert sum(imported for *_x, imported in scores) == 3
    # Nothing the import wrote was touched: each imported stream is still at its version.
    after = dict(ledger.query("SELECT stream, MAX(version) FROM events GROUP BY stream"))
    assert all(after[stream] == version for stream, version in imported_streams if stream.startswith("gen:"))
    assert "ok:" in invoke("verify", "--db", str(ledger_path))
    assert projections.check(ledger).drift == []  # imported, planned, run: a replay agrees


def test_a_generation_appended_by_another_writer_meanwhile_is_skipped_not_fatal(
        tmp_path: Path, ledger_path: Path) -> None:
    from daydream.transfer.importer import _Importer, check_root

    built = build_dagster_root(tmp_path / "root", n_combos=3)
    root = check_root(built.root)
    report = ImportReport(root=root, dry_run=False)
    run = _Importer(Ledger.open(ledger_path), root, report, 1000)  # reads the ledger's state now
    # Another process imports one of the drafts between our read of the ledger and our append.
    other = Ledger.open(ledger_path)
    payload = {"gen_id": built.drafts[1], "stage": "draft", "parent_gen_id": None, "combo_id": "x",
               "template_id": "t", "model_id": "m", "replicate": 1, "generator": "llm", "cohort_id": None,
               "status": "completed", "source": "elsewhere", "metadata": {}}
    other.append([NewEvent(ev.gen_stream(built.drafts[1]), ev.GENERATION_IMPORTED, payload, expected_version=0)])
    run.import_stage("draft", sorted((root / "gens" / "draft").iterdir()))
    run.writer.flush()
    assert (report.stages["draft"].imported, report.stages["draft"].skipped) == (2, 1)
    rows = gen_rows(other)
    assert set(rows) == set(built.drafts)
    assert rows[built.drafts[1]]["combo_id"] == "x"  # the other writer's event stands
    assert other.count() == 3


def test_a_locked_ledger_stops_the_import_with_one_line_and_a_rerun_continues(
        tmp_path: Path, ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from daydream.errors import ImportFailed
    from daydream.ledger import backend

    built = build_dagster_root(tmp_path / "root", n_combos=2)
    monkeypatch.setattr(backend, "BUSY_TIMEOUT_S", 0.2)  # give up on the lock quickly (read where connections open)
    holder = sqlite3.connect(ledger_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock throughout
    try:
        with pytest.raises(ImportFailed, match="re-running the import continues"):
            import_dagster(Ledger.open(ledger_path), built.root)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    report = import_dagster(Ledger.open(ledger_path), built.root)
    assert sum(c.imported for c in report.stages.values()) == 6 and report.problems == []


def test_copy_mode_essay_without_model_or_raw_is_imported_complete(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=1)
    draft = built.drafts[0]
    essay = ids.essay_gen_id(draft, "parsed-from-links-v1", None, 1)  # legacy copy-mode formula
    folder = built.root / "gens" / "essay" / essay
    folder.mkdir()
    (folder / "parsed.txt").write_text("the idea, copied from the draft")
    (folder / "metadata.json").write_text(json.dumps({
        "stage": "essay", "gen_id": essay, "template_id": "parsed-from-links-v1", "mode": "copy",
        "parent_gen_id": draft, "replicate": 1, "created_at": "2025-08-01T09:30:00Z"}))
    ledger = Ledger.open(ledger_path)
    report = import_dagster(ledger, built.root)
    assert report.problems == [] and report.stages["essay"].imported == 2
    row = gen_rows(ledger)[essay]
    assert (row["status"], row["model_id"], row["raw_hash"], row["combo_id"]) == \
        ("completed", None, None, built.combo_of[draft])
    payload = ledger.events(stream=ev.gen_stream(essay))[0].payload
    assert payload["generator"] == "copy" and payload["created_at"] == "2025-08-01T09:30:00Z"


def test_cohort_report_reads_imported_generations_with_lineage_and_concepts(
        tmp_path: Path, seed_data: Path, ledger_path: Path) -> None:
    from daydream.read import report

    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=2,
                               evaluation_models=("sonnet-4", "gemini_25_pro"))
    ledger = Ledger.open(ledger_path)
    import_dagster(ledger, built.root)
    data = report.collect_report(ledger, built.cohort_id)
    import csv

    with (seed_data / "1_raw" / "concepts_metadata.csv").open(newline="") as handle:
        names = {r["concept_id"]: r["name"] for r in csv.DictReader(handle)}
    assert sorted(r["evaluation_gen_id"] for r in data.evaluations) == sorted(built.evaluations)
    for row in data.evaluations:
        assert row["score"] == built.scores[row["evaluation_gen_id"]]
        assert row["draft_gen_id"] == built.parents[row["essay_gen_id"]]
        assert (row["draft_template"], row["draft_model"]) == ("creative-synthesis-v10", "gemini_25_pro")
        # Concept names come from the imported catalog snapshot, the concepts from the imported combos.
        assert row["concepts"] == " + ".join(names[c] for c in built.combos[built.combo_of[row["essay_gen_id"]]])
    assert sorted(r["essay_gen_id"] for r in data.rankings) == sorted(built.essays)


def test_a_damaged_catalog_is_reported_and_the_generations_still_imported(
        tmp_path: Path, seed_data: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=1)
    (built.root / "1_raw" / "templates" / "draft" / "creative-synthesis-v10.txt").unlink()
    ledger = Ledger.open(ledger_path)
    report = import_dagster(ledger, built.root)
    assert report.catalog == "not imported (damaged)"
    assert [p.path for p in report.problems] == [str(built.root.resolve() / "1_raw")]
    assert "creative-synthesis-v10" in report.problems[0].reason
    assert ledger.count(ev.CATALOG_IMPORTED) == 0
    assert sum(c.imported for c in report.stages.values()) == 3


def test_status_show_and_report_commands_work_on_imported_data(tmp_path: Path, seed_data: Path,
                                                               ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=2)
    db = ["--db", str(ledger_path)]
    invoke("import", "dagster", str(built.root), *db)

    status = json.loads(invoke("status", built.cohort_id, "--json", *db))["cohorts"][built.cohort_id]
    assert {s: (v["planned"], v["completed"]) for s, v in status.items()} == \
        {"draft": (2, 2), "essay": (2, 2), "evaluation": (2, 2)}
    shown = json.loads(invoke("show", "e_sq5klak2lljyyom", "--json", *db))
    assert shown["generation"]["parent_gen_id"] == "d_5ezrffv9uf3lr37d"
    assert shown["generation"]["parsed"] == text_for("e_sq5klak2lljyyom", "parsed")
    assert shown["combo"]["combo_id"] == LEGACY_COMBO
    assert [a["gen_id"] for a in shown["ancestors"]] == ["d_5ezrffv9uf3lr37d"]

    out = tmp_path / "report"
    invoke("report", built.cohort_id, "--out", str(out), *db)
    import csv

    with (out / "scores.csv").open(newline="") as handle:
        rows = {r["evaluation_gen_id"]: r for r in csv.DictReader(handle)}
    assert {g: float(r["score"]) for g, r in rows.items()} == {g: float(s) for g, s in built.scores.items()}
    assert {r["draft_gen_id"] for r in rows.values()} == set(built.drafts)


def test_an_evaluation_whose_parent_is_a_draft_is_not_imported(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=1)
    evaluation = built.evaluations[0]
    _edit_json(built.folder(evaluation) / "metadata.json", parent_gen_id=built.drafts[0])
    report = import_dagster(Ledger.open(ledger_path), built.root)
    assert [(p.gen_id, p.reason) for p in report.problems if p.gen_id] == [
        (evaluation, f"parent {built.drafts[0]} has stage 'draft', expected 'essay'")]
    assert report.stages["evaluation"].unreadable == 1 and report.stages["essay"].imported == 1


def test_imported_generations_carry_their_parser(tmp_path: Path, seed_data: Path) -> None:
    from daydream.transfer.importer import import_dagster

    root = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw")
    ledger = Ledger.init(tmp_path / "p.db")[0]
    import_dagster(ledger, root.root)
    parsers = dict(ledger.query("SELECT stage, MIN(parser) FROM gen_state GROUP BY stage"))
    assert parsers == {"draft": "identity", "essay": "identity", "evaluation": "score"}  # in_last_line → score


def test_byte_order_marks_from_windows_editors_are_not_content(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=2)
    bom = b"\xef\xbb\xbf"
    evaluation, essay = built.evaluations[0], built.essays[1]
    meta = built.folder(essay) / "metadata.json"
    meta.write_bytes(bom + meta.read_bytes())
    (built.folder(evaluation) / "parsed.txt").write_bytes(bom + b"7\r\n")
    (built.folder(essay) / "parsed.txt").write_bytes(bom + b"An essay.\r\nSecond line.\r\n")
    for csv_path in (built.root / "combo_mappings.csv", built.root / "cohorts" / built.cohort_id / "membership.csv"):
        csv_path.write_bytes(bom + csv_path.read_bytes())
    write_cohort(built.root, "excel", [("draft", built.drafts[0])], spec={"axes": {}})
    excel = built.root / "cohorts" / "excel" / "membership.csv"
    excel.write_bytes(bom + excel.read_bytes().replace(b"\n", b"\r\n"))

    ledger = Ledger.open(ledger_path)
    report = import_dagster(ledger, built.root)
    assert report.problems == []
    assert report.combos_defined == 2 and report.links_added == 1
    rows = gen_rows(ledger)
    assert set(rows) == set(built.all_ids)
    assert (rows[evaluation]["status"], rows[evaluation]["score"]) == ("completed", 7)
    assert ledger.get_text(rows[essay]["parsed_hash"]) == "An essay.\r\nSecond line.\r\n"


def test_numbers_written_as_floats_or_numeric_strings_are_read(tmp_path: Path, ledger_path: Path) -> None:
    # pandas writes integer columns with gaps as floats; some writers quote every number.
    built = build_dagster_root(tmp_path / "root", n_combos=1, evaluation_models=("sonnet-4", "gemini_25_pro"))
    as_float, half, quoted = built.evaluations[0], built.evaluations[1], built.drafts[0]
    _edit_json(built.folder(as_float) / "metadata.json", replicate=1.0)
    _edit_json(built.folder(half) / "metadata.json", replicate=1.5)
    (built.folder(quoted) / "raw_metadata.json").write_text(json.dumps({
        "finish_reason": "stop", "duration_s": "3.5",
        "usage": {"prompt_tokens": "100", "completion_tokens": " 20 ", "cost": "0.0125"}}))
    ledger = Ledger.open(ledger_path)
    report = import_dagster(ledger, built.root)
    assert [(p.gen_id, p.reason) for p in report.problems if p.gen_id] == [
        (half, "metadata.json field 'replicate' is 1.5, expected an integer ≥ 1")]
    rows = gen_rows(ledger)
    assert rows[as_float]["replicate"] == 1 and rows[as_float]["status"] == "completed"
    assert (rows[quoted]["prompt_tokens"], rows[quoted]["completion_tokens"], rows[quoted]["latency_s"]) == \
        (100, 20, 3.5)
    assert ledger.query("SELECT cost_usd FROM gen_state WHERE gen_id = ?", (quoted,)) == [(0.0125,)]


def test_raw_that_is_not_utf8_is_recorded_as_such_not_as_missing(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=1)
    essay = built.essays[0]
    (built.folder(essay) / "raw.txt").write_bytes(b"caf\xe9 au lait")  # latin-1, not UTF-8
    ledger = Ledger.open(ledger_path)
    report = import_dagster(ledger, built.root)
    reasons = [p.reason for p in report.problems if p.gen_id == essay]
    assert reasons and all("missing" not in r for r in reasons), reasons
    assert any("raw.txt is not UTF-8" in r for r in reasons), reasons
    row = gen_rows(ledger)[essay]
    assert row["status"] == "failed" and "raw.txt is not UTF-8" in row["error"]


def test_moving_in_is_one_command_a_missing_ledger_is_created(tmp_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=1)
    db = tmp_path / "new" / "ledger.db"
    db.parent.mkdir()
    dry = invoke("import", "dagster", str(built.root), "--dry-run", "--db", str(db))
    assert not db.exists()  # a dry run creates nothing, and still says what would happen
    out = invoke("import", "dagster", str(built.root), "--db", str(db))
    assert summary_table(dry) == summary_table(out)
    assert set(gen_rows(Ledger.open(db))) == set(built.all_ids)
    assert "ok:" in invoke("verify", "--db", str(db))


def test_timestamps_as_epoch_numbers_or_odd_values_never_make_a_generation_unreadable(
        tmp_path: Path, ledger_path: Path) -> None:
    # Python pipelines write time.time(): a float in raw_metadata.json's "timestamp".
    built = build_dagster_root(tmp_path / "root", n_combos=1,
                               evaluation_models=("sonnet-4", "gemini_25_pro", "deepseek_r1_p"))
    as_float, as_int, odd = built.evaluations
    _edit_json(built.folder(as_float) / "raw_metadata.json", timestamp=1756720800.25)
    _edit_json(built.folder(as_int) / "metadata.json", created_at=1756720800)
    _edit_json(built.folder(odd) / "raw_metadata.json", created_at={"date": "yesterday"})
    ledger = Ledger.open(ledger_path)
    report = import_dagster(ledger, built.root)
    assert report.stages["evaluation"].imported == 3
    problems = [(p.gen_id, p.reason, p.imported) for p in report.problems]
    assert len(problems) == 1 and problems[0][0] == odd and problems[0][2] is True
    assert "raw_metadata.json field 'created_at'" in problems[0][1]

    def created(gen_id: str) -> str:
        return ledger.events(stream=ev.gen_stream(gen_id))[0].payload["created_at"]

    assert created(as_float) == "2025-09-01T10:00:00.250000Z"
    assert created(as_int) == "2025-09-01T10:00:00.000000Z"
    assert created(odd).endswith("Z")  # the file's time instead
    verbatim = ledger.events(stream=ev.gen_stream(as_float))[0].payload["metadata"]["raw_metadata"]
    assert verbatim["timestamp"] == 1756720800.25


def test_a_number_too_large_for_json_is_named_and_a_side_file_with_one_is_left_out(
        tmp_path: Path, ledger_path: Path) -> None:
    # 1e999 parses as infinity: the ledger used to reject the whole generation as "malformed JSON".
    built = build_dagster_root(tmp_path / "root", n_combos=2)
    draft, evaluation = built.drafts[1], built.evaluations[0]
    assert built.parents[built.parents[evaluation]] != draft
    side = built.folder(evaluation) / "raw_metadata.json"
    side.write_text(side.read_text().replace('"duration_s": 12.5', '"duration_s": 1e999'))
    meta = built.folder(draft) / "metadata.json"
    meta.write_text(meta.read_text().replace('"replicate": 1', '"replicate": 1, "weight": -1e400'))
    ledger = Ledger.open(ledger_path)
    report = import_dagster(ledger, built.root)
    reasons = {p.gen_id: p.reason for p in report.problems if p.gen_id}
    assert reasons[draft].startswith("metadata.json") and "-1e400" in reasons[draft], reasons
    assert reasons[evaluation].startswith("raw_metadata.json") and "1e999" in reasons[evaluation], reasons
    assert "left out" in reasons[evaluation]
    assert report.stages["draft"].unreadable == 1 and report.stages["evaluation"].imported == 1
    assert gen_rows(ledger)[evaluation]["latency_s"] is None


def test_a_generation_imported_without_results_is_completed_by_a_later_root(tmp_path: Path,
                                                                           ledger_path: Path) -> None:
    """Imported mid-run (an evaluation had no parsed.txt yet); the finished root completes it with
    a second GenerationImported — the first one stays — and nothing else changes."""
    built = build_dagster_root(tmp_path / "root", n_combos=2)
    evaluation = built.evaluations[0]
    parsed = built.folder(evaluation) / "parsed.txt"
    kept = parsed.read_bytes()
    parsed.unlink()
    ledger = Ledger.open(ledger_path)
    import_dagster(ledger, built.root)
    assert ledger.query("SELECT status FROM gen_state WHERE gen_id = ?", (evaluation,)) == [("failed",)]
    before = ledger.count()

    again = import_dagster(ledger, built.root)  # still incomplete: nothing to add
    assert ledger.count() == before and again.stages["evaluation"].skipped == len(built.evaluations)

    parsed.write_bytes(kept)
    done = import_dagster(ledger, built.root)
    assert done.stages["evaluation"].imported == 1
    assert ledger.count() == before + 1
    (status, score, error), = ledger.query("SELECT status, score, error FROM gen_state WHERE gen_id = ?",
                                           (evaluation,))
    assert status == "completed" and score == built.scores[evaluation] and error is None
    stream = [e.type for e in ledger.stream(f"gen:{evaluation}")]
    assert stream == ["GenerationImported", "GenerationImported"]
    # The read side follows: nothing failed any more, and the score counts in the rankings.
    assert ledger.query("SELECT SUM(failed) FROM cohort_progress") == [(0,)]
    ranked = dict(ledger.query("SELECT essay_gen_id, n FROM essay_rankings"))
    essay = ledger.query("SELECT parent_gen_id FROM gen_state WHERE gen_id = ?", (evaluation,))[0][0]
    assert ranked[essay] == sum(1 for v in built.evaluations
                                if ledger.query("SELECT parent_gen_id FROM gen_state WHERE gen_id = ?",
                                                (v,))[0][0] == essay)
    assert import_dagster(ledger, built.root).stages["evaluation"].imported == 0  # and once only
    assert ledger.count() == before + 1
    ledger.verify()


def test_a_cohort_spec_that_explodes_through_aliases_is_not_recorded(tmp_path: Path, ledger_path: Path) -> None:
    built = build_dagster_root(tmp_path / "root", n_combos=2)
    # Ten to the tenth strings once expanded: what yaml.safe_load would try to build.
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi"))
    spec = built.root / "cohorts" / built.cohort_id / "spec" / "config.yaml"
    spec.write_text(bomb, encoding="utf-8")
    report = import_dagster(Ledger.open(ledger_path), built.root)
    reasons = [p.reason for p in report.problems]
    assert len(reasons) == 1 and reasons[0].startswith("spec not recorded:") and "alias" in reasons[0], reasons
    assert Ledger.open(ledger_path).events(type=ev.SPEC_COMPILED) == []
    assert report.stages["draft"].imported > 0  # the generations themselves still come in
