"""Rubric scales: declared in templates.yaml, inferred for 1_raw rubrics, part of the template's
identity, recorded in snapshots and with every score, shown by the ``scores`` view, and used by the
importer and the runner. Tests taking ``ledger`` run on a SQLite file and on a PostgreSQL database
(``ledger_url``, issue 17)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from daydream.ledger import events as ev
from daydream.design.catalog import catalog_from_ledger, load_catalog, repo_catalog_dir
from daydream.errors import CatalogError, UsageError
from daydream.transfer.importer import import_dagster
from daydream.ledger.store import Ledger, NewEvent, text_hash
from daydream.design.planner import plan_cohort
from daydream.run.runner import RunOptions, run_cohort
from daydream.design.scales import DEFAULT_SCALE, infer_scale, parse_scale_option
from tests.dagster_root import build_dagster_root



@pytest.fixture
def ledger(ledger_url: str) -> Ledger:  # conftest's SQLite-only fixture, on both backends here
    """A fresh ledger on SQLite and on PostgreSQL (issue 17)."""
    return Ledger.open(ledger_url)

# What every rubric of the previous pipeline asks for, read by hand from its text.
SEED_RUBRIC_SCALES = {
    "creativity-metrics": (0, 10),  # "SCORE: 0-10 (0 = no creative merit, 10 = …)"
    "creativity-metrics-v2": (0, 9),  # "single digit 0-9"
    "daydreaming-verification": (0, 10),  # "on a scale of 0 to 10", "**SCORE:** 0-10"
    "daydreaming-verification-v2": (0, 9),  # "a single digit from 0 to 9"
    "daydreaming-verification-v3": (0, 9),  # "Scoring (0–9)", "a single digit 0–9"
    "experiment-integrity-v1": (0, 9),  # "Scoring Rubric (0-9)"
    "gemini-prior-art-eval": (0, 9),  # "on a scale from 0 to 9"
    "gemini-prior-art-eval-v2": (0, 9),  # "holistic novelty score (0–9)"
    "interdisciplinary-coherence": (0, 9),  # "out of 100 total points", then "Convert to 0-9 scale"
    "iterative-loops": (0, 10),  # "SCORE: 0-10 (0 = no iterative loop concepts, …)"
    "iterative-loops-v2": (0, 9),
    "novel-elements-coverage-v1": (0, 9),
    "novel-elements-coverage-v2": (0, 9),
    "novelty": (0, 9),  # "Score_0_9", "a digit 0-9"
    "novelty-v2": (0, 9),
    "o3-prior-art-eval": (0, 9),  # "a score from **0 to 9**", "a digit 0-9"
    "scientific-rigor": (0, 10),  # "SCORE: 0-10 (0 = no scientific rigor, …)"
    "scientific-rigor-v2": (0, 9),
    "style-coherence": (0, 9),  # states no scale: the default
    "style-coherence-v2": (0, 9),  # bands "(9-10)", "(13-15)" only: the default
    "style-coherence-v3": (0, 9),  # "raw score out of 100", then "Convert to 0-9 scale"
}


def test_every_seed_rubric_loads_with_the_scale_its_text_asks_for(seed_data: Path) -> None:
    files = {p.stem for p in (seed_data / "1_raw" / "templates" / "evaluation").glob("*.txt")}
    assert files == set(SEED_RUBRIC_SCALES), "a rubric was added or removed: state its scale here"
    rubrics = load_catalog(seed_data / "1_raw").templates["evaluation"]
    assert {tid: rubrics[tid].score_scale for tid in files} == SEED_RUBRIC_SCALES
    for tid, scale in SEED_RUBRIC_SCALES.items():
        rubric = rubrics[tid]
        assert (rubric.hash == rubric.text_hash) == (scale == DEFAULT_SCALE), tid


@pytest.mark.parametrize("text,scale", [
    ("Rate it on a 1-5 scale.", (1, 5)),
    ("Give a score out of 10.", (0, 10)),
    ("End with SCORE: X where X is a number from 1 to 10.", (1, 10)),
    ("Score between 1 and 5, then SCORE: X", (1, 5)),
    ("Rate from 0 (poor) to 10 (excellent).\nSCORE: X", (0, 10)),
    # Bands and per-criterion points are not the score's scale.
    ("- 7-8: strong\n- 9: exceptional\n- Clarity: 0-2 points\nSCORE: X", (0, 9)),
    ("**Example (Score: 8-9):** good\n- **Excellent (13-15)**: …\nSCORE: X", (0, 9)),
    # The answer's format statement decides over the rest.
    ("Each criterion on a scale of 0 to 5.\nFinal line: SCORE: X, X a single digit 0-9", (0, 9)),
    ("Rate each criterion on a scale of 1 to 5, then end with SCORE: X (0-10).", (0, 10)),
    ("No numbers at all.", (0, 9)),
])
def test_infer_scale_reads_what_a_rubric_states(text: str, scale: tuple[int, int]) -> None:
    assert infer_scale(text) == scale


@pytest.mark.parametrize("text,scale", [("0-10", (0, 10)), ("1-5", (1, 5)), (" 1 – 10 ", (1, 10)),
                                        ("0..100", (0, 100))])
def test_scale_options(text: str, scale: tuple[int, int]) -> None:
    assert parse_scale_option(text) == scale


@pytest.mark.parametrize("text", ["10-0", "5-5", "ten", "0-", "0-100000"])
def test_bad_scale_options_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--scale"):
        parse_scale_option(text)


# ----------------------------------------------------------------------------- templates.yaml
def catalog_copy(tmp_path: Path, scale: object = None, text_extra: str = "") -> Path:
    """The starter catalog with one more rubric, ``ten-point``, asking for 0-10."""
    folder = tmp_path / "catalog"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(repo_catalog_dir(), folder)
    templates = yaml.safe_load((folder / "templates.yaml").read_text())
    entry: dict[str, object] = {"id": "ten-point", "parser": "score", "generator": "llm",
                                "description": "A 0-10 rubric"}
    if scale is not None:
        entry["scale"] = scale
    templates["evaluation"].append(entry)
    (folder / "templates.yaml").write_text(yaml.safe_dump(templates, sort_keys=False))
    (folder / "templates" / "evaluation" / "ten-point.j2").write_text(
        "Judge this essay.\n\n{{ response }}\n\nRate it from 0 to 10.\n" + text_extra +
        "End with a line SCORE: X, where X is a number from 0 to 10.\n")
    return folder


def test_a_declared_scale_is_part_of_the_template_identity_and_of_the_snapshot(
        tmp_path: Path, ledger: Ledger) -> None:
    catalog = load_catalog(catalog_copy(tmp_path, [0, 10]))
    rubric = catalog.template("evaluation", "ten-point")
    assert rubric.score_scale == (0, 10)
    assert rubric.hash != rubric.text_hash == text_hash(rubric.text)
    # A rubric on the default scale keeps the hash it always had (its text's); so do other stages.
    default = catalog.template("evaluation", "originality-rubric")
    assert default.score_scale == (0, 9) and default.hash == default.text_hash
    assert catalog.template("draft", "link-brainstorm").score_scale is None

    payload, texts = catalog.snapshot()
    entries = {t["id"]: t for t in payload["templates"]}
    assert entries["ten-point"]["scale"] == [0, 10] and entries["ten-point"]["text_hash"] == rubric.text_hash
    assert entries["originality-rubric"]["scale"] == [0, 9] and "text_hash" not in entries["originality-rubric"]
    assert "scale" not in entries["link-brainstorm"]
    ledger.append([NewEvent(ev.catalog_stream(payload["catalog_hash"]), ev.CATALOG_IMPORTED, payload,
                            expected_version=0)], texts)
    rebuilt = catalog_from_ledger(ledger, payload["catalog_hash"]).template("evaluation", "ten-point")
    assert (rebuilt.text, rebuilt.score_scale, rebuilt.hash) == (rubric.text, (0, 10), rubric.hash)

    # The same text on another scale is another template, and another catalog.
    nine = load_catalog(catalog_copy(tmp_path, [0, 9])).template("evaluation", "ten-point")
    assert nine.hash == nine.text_hash != rubric.hash
    assert load_catalog(tmp_path / "catalog").catalog_hash != catalog.catalog_hash


@pytest.mark.parametrize("scale,message", [
    ("0-10", "scale '0-10'; expected [min, max] with two integers"),
    ([10, 0], "scale 10-0; expected two integers min < max"),
    ([0, 10, 20], "expected [min, max]"),
    ([0.5, 10], "expected [min, max]"),
])
def test_a_malformed_scale_is_a_one_line_catalog_error(tmp_path: Path, scale: object, message: str) -> None:
    with pytest.raises(CatalogError, match=r"templates.yaml: evaluation: template 'ten-point': scale ") as info:
        load_catalog(catalog_copy(tmp_path, scale))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_rubric_asking_for_another_range_must_declare_its_scale(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"'ten-point' asks for scores 0-10 but declares no scale .*"
                                           r"add 'scale: \[0, 10\]'"):
        load_catalog(catalog_copy(tmp_path))


def test_only_rubrics_have_a_scale(tmp_path: Path) -> None:
    folder = catalog_copy(tmp_path, [0, 10])
    templates = yaml.safe_load((folder / "templates.yaml").read_text())
    templates["draft"][0]["scale"] = [0, 10]
    (folder / "templates.yaml").write_text(yaml.safe_dump(templates, sort_keys=False))
    with pytest.raises(CatalogError, match="'scale' applies to evaluation templates only"):
        load_catalog(folder)


def test_a_1_raw_scale_column_overrides_the_text(tmp_path: Path, seed_data: Path) -> None:
    raw = tmp_path / "1_raw"
    shutil.copytree(seed_data / "1_raw", raw)
    meta = raw / "evaluation_templates.csv"
    lines = meta.read_text().splitlines()
    lines[0] += ",scale"
    lines = [lines[0]] + [line + (",1-5" if line.startswith("novelty,") else ",") for line in lines[1:]]
    meta.write_text("\n".join(lines) + "\n")
    rubrics = load_catalog(raw).templates["evaluation"]
    assert rubrics["novelty"].score_scale == (1, 5) and rubrics["novelty-v2"].score_scale == (0, 9)
    meta.write_text(meta.read_text().replace(",1-5", ",five"))
    with pytest.raises(CatalogError, match="template 'novelty': scale 'five'; expected MIN-MAX"):
        load_catalog(raw)


# ----------------------------------------------------------------------------- the scores view
def _evaluation(ledger: Ledger, gen_id: str, events: list[tuple[str, dict]]) -> None:
    stream = f"gen:{gen_id}"
    plan = {"gen_id": gen_id, "stage": "evaluation", "parent_gen_id": "e_1", "template_id": "r",
            "template_hash": None, "generator": "llm", "parser": "score", "model_id": "m", "replicate": 1,
            "cohort_id": "c"}
    ledger.append([NewEvent(stream, "GenerationPlanned", plan)] +
                  [NewEvent(stream, t, {"gen_id": gen_id, "attempt": 1, **p}) for t, p in events])


def scores(ledger: Ledger) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in ledger.query(
        "SELECT evaluation_gen_id, score, scale_min, scale_max, score_norm, parse_status FROM scores")}


def test_the_scores_view_shows_each_scale_and_the_normalised_score(ledger: Ledger) -> None:
    parsed = {"parser": "score", "parsed_hash": text_hash("x"), "chars": 1}
    _evaluation(ledger, "v_ten", [("ResponseParsed", parsed), ("ScoreRecorded", {"score": 7, "scale": [0, 10]})])
    _evaluation(ledger, "v_five", [("ResponseParsed", parsed), ("ScoreRecorded", {"score": 4, "scale": [1, 5]})])
    # Recorded before scales existed: 0-9.
    _evaluation(ledger, "v_old", [("ResponseParsed", parsed), ("ScoreRecorded", {"score": 6})])
    _evaluation(ledger, "v_failed", [("ParseFailed", {"parser": "score", "reason": "no labelled score"})])
    assert scores(ledger) == {
        "v_ten": (7.0, 0, 10, 0.7, "parsed"), "v_five": (4.0, 1, 5, 0.75, "parsed"),
        "v_old": (6.0, 0, 9, pytest.approx(6 / 9), "parsed"),
        "v_failed": (None, None, None, None, "parse_failed")}
    # A later parse failure of the same attempt (a re-parse) leaves no stale score behind.
    ledger.append([NewEvent("gen:v_ten", "ParseFailed", {"gen_id": "v_ten", "attempt": 1, "parser": "score",
                                                         "reason": "ambiguous", "reparsed": True})])
    assert scores(ledger)["v_ten"] == (None, None, None, None, "parse_failed")
    ledger.append([NewEvent("gen:v_five", "GenerationRetried", {"gen_id": "v_five", "attempt": 2,
                                                                "previous_attempt": 1, "reason": "x"})])
    assert scores(ledger)["v_five"] == (None, None, None, None, "pending")
    from daydream.ledger import projections
    assert projections.check(ledger).drift == []


# ----------------------------------------------------------------------------- importer and runner
def test_the_importer_reads_old_scores_on_their_rubrics_scale(tmp_path: Path, ledger: Ledger,
                                                              seed_data: Path) -> None:
    built = build_dagster_root(tmp_path / "root", seed_raw=seed_data / "1_raw", n_combos=2,
                               evaluation_templates=("daydreaming-verification", "daydreaming-verification-v2"))
    ten = [v for v in built.evaluations if json.loads((built.folder(v) / "metadata.json").read_text())
           ["template_id"] == "daydreaming-verification"]
    nine = [v for v in built.evaluations if v not in ten]
    (built.folder(ten[0]) / "parsed.txt").write_text("7.0\n")  # 7 on 0-10, not 7 on 0-9
    (built.folder(ten[1]) / "parsed.txt").write_text("good\n10\n")
    (built.folder(nine[0]) / "parsed.txt").write_text("good\n10\n")  # not on a 0-9 rubric
    report = import_dagster(ledger, built.root)
    got = scores(ledger)
    assert got[ten[0]] == (7.0, 0, 10, 0.7, "parsed")
    assert got[ten[1]] == (10.0, 0, 10, 1.0, "parsed")
    assert got[nine[0]][0] is None
    assert [p.reason for p in report.problems if p.gen_id == nine[0]] == [
        "score 10 on the last line of parsed.txt is not in 0–9 (the rubric's scale) (imported with status failed)"]
    assert got[nine[1]][1:3] == (0, 9)


def test_a_run_renders_and_scores_a_rubric_whose_identity_includes_its_scale(tmp_path: Path) -> None:
    folder = catalog_copy(tmp_path, [0, 10])
    spec = tmp_path / "ten.yaml"
    spec.write_text(yaml.safe_dump({"axes": {
        "combo": [{"concepts": ["feedback-loop", "redundancy"], "level": "paragraph"}],
        "draft_template": ["link-brainstorm"], "draft_llm": ["offline"], "essay_template": ["copy-draft"],
        "evaluation_template": ["ten-point"], "evaluation_llm": ["offline"], "evaluation_replicate": 3}}))
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    plan_cohort(ledger, spec, folder, cohort_id="ten")
    stats = run_cohort(ledger, RunOptions(cohort="ten"))
    assert stats.failed == 0
    rubric = load_catalog(folder).template("evaluation", "ten-point")
    rendered = {e.payload["template_hash"] for e in ledger.events(type="PromptRendered")
                if e.payload["template_id"] == "ten-point"}
    assert rendered == {rubric.hash}  # the identity, whose text the runner found via the snapshot
    recorded = [e.payload for e in ledger.events(type="ScoreRecorded")]
    assert len(recorded) == 3 and all(p["scale"] == [0, 10] for p in recorded)
    assert {r[1:3] for r in scores(ledger).values()} == {(0, 10)}


def test_upgrading_fills_the_scale_of_existing_scores_and_downgrading_restores_0005(tmp_path: Path) -> None:
    from alembic import command

    from daydream.ledger import db
    from tests.read_fixtures import build_fixture

    path = tmp_path / "ledger.db"
    backend = db.create_backend(path, create=True)

    def move(how: str, revision: str) -> None:
        with db.schema_connection(backend) as conn:
            getattr(command, how)(db._alembic_config(conn), revision)
            if conn.in_transaction():
                conn.commit()

    def schema() -> dict[str, str]:
        with sqlite3.connect(path) as conn:
            return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('trigger', 'view')"))

    move("upgrade", "0005_llm_calls_by_stream")
    build_fixture(Ledger(path, backend))
    before = schema()
    scored = Ledger(path, backend).query("SELECT COUNT(*) FROM gen_state WHERE score IS NOT NULL")[0][0]
    assert scored > 0
    move("upgrade", "0008_scores_scale")
    ledger = Ledger(path, backend)
    assert ledger.query("SELECT COUNT(*) FROM scores WHERE scale_min = 0 AND scale_max = 9")[0][0] == scored
    from daydream.ledger import projections
    assert projections.check(ledger).drift == []  # the fill gives what a replay gives
    move("downgrade", "0005_llm_calls_by_stream")
    assert schema() == before
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(gen_state)")]
    assert "scale_min" not in columns and "scale_max" not in columns
