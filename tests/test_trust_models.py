"""A model id means one thing per ledger: a later catalog cannot reroute work planned on it.

Issue 10, point 1: cohort A planned on ``offline``; cohort B's catalog redefined ``offline`` as an
openai model at another base URL, and running A then paid that endpoint. Now the first plan on an
id records its identity (``ModelDefined``), a catalog that changes it is refused at plan time,
prices and limits may change (recorded), and the runner calls every model as it was planned.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from daydream.ledger import events as ev
from daydream.design.catalog import Model, load_catalog, make_model, recorded_models
from daydream.errors import CatalogError
from daydream.ledger.store import Ledger, NewEvent
from daydream.design.planner import plan_cohort
from daydream.run.render import Context
from daydream.testing import StubLLMServer
from tests.runner_fixtures import REPO, drafts_spec, run_cli, subprocess_env, write_spec


def catalog_with(tmp: Path, name: str, models: list[dict[str, Any]], *, replace: bool = False) -> Path:
    """The starter catalog, with ``models`` added to (or, with ``replace``, instead of) its own."""
    folder = tmp / name
    shutil.copytree(REPO / "specs" / "catalog", folder)
    base = [] if replace else yaml.safe_load((folder / "models.yaml").read_text())
    ids = {m["id"] for m in models}
    merged = [m for m in base if m["id"] not in ids] + models
    (folder / "models.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    return folder


def rogue_offline(base_url: str) -> dict[str, Any]:
    """Cohort B's redefinition of ``offline``: a paid openai model at another endpoint."""
    return {"id": "offline", "provider": "openai", "model": "rogue/paid-model", "base_url": base_url,
            "api_key_env": "none", "price_in": 5, "price_out": 15}


def query(db: Path, sql: str) -> list[tuple]:
    """Read from the ledger file and close it again (no connection outlives the question)."""
    ledger = Ledger.open(db, readonly=True)
    try:
        return ledger.query(sql)
    finally:
        ledger.close()


def requests_for(server: StubLLMServer, model: str) -> int:
    return sum(1 for r in server.records if r.model == model)


def test_a_catalog_redefining_a_planned_model_is_refused_and_run_a_pays_nobody(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    assert run_cli("init", "--db", str(db)).returncode == 0
    with StubLLMServer() as server:
        catalog_a = catalog_with(tmp_path, "catalog_a", [])
        spec_a = write_spec(tmp_path, "cohort_a", drafts_spec(3, model="offline"))
        planned = run_cli("cohort", "plan", str(spec_a), "--catalog", str(catalog_a), "--db", str(db))
        assert planned.returncode == 0, planned.stderr

        # Cohort B plans on `offline` with a catalog that sends it to the loopback server: refused.
        catalog_b = catalog_with(tmp_path, "catalog_b", [rogue_offline(server.base_url)])
        spec_b = write_spec(tmp_path, "cohort_b", drafts_spec(4, model="offline"))
        before = query(db, "SELECT MAX(seq) FROM events")
        refused = run_cli("cohort", "plan", str(spec_b), "--catalog", str(catalog_b), "--db", str(db))
        assert refused.returncode == 1 and refused.stdout == ""
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr
        line = lines[0]
        assert "model 'offline'" in line
        assert "provider=offline model=daydream-offline-v1" in line  # the planned definition
        assert f"provider=openai model=rogue/paid-model base_url={server.base_url}" in line  # the new one
        assert "new id" in line
        assert query(db, "SELECT MAX(seq) FROM events") == before  # nothing appended

        # A catalog that redefines `offline` but plans only on another model is accepted: its
        # snapshot (with the rogue `offline`) is now in the ledger, after A's.
        catalog_c = catalog_with(tmp_path, "catalog_c", [rogue_offline(server.base_url), {
            "id": "stub-c", "provider": "openai", "model": "stub/c-model", "base_url": server.base_url,
            "api_key_env": "none", "price_in": 1, "price_out": 2}])
        spec_c = write_spec(tmp_path, "cohort_c", drafts_spec(2, model="stub-c"))
        assert run_cli("cohort", "plan", str(spec_c), "--catalog", str(catalog_c), "--db", str(db)).returncode == 0

        ran = run_cli("run", "--cohort", "cohort_a", "--db", str(db))
        assert ran.returncode == 0, ran.stderr
        assert server.calls == 0  # A's work went to the offline model, as planned
        calls = query(db, "SELECT json_extract(payload, '$.provider'), json_extract(payload, '$.model_id'), "
                          "COUNT(*) FROM events WHERE type = 'LLMCallCompleted' GROUP BY 1, 2")
        assert calls == [("offline", "offline", 3)]

        ran = run_cli("run", "--cohort", "cohort_c", "--db", str(db))
        assert ran.returncode == 0, ran.stderr
        assert requests_for(server, "stub/c-model") == 2 and requests_for(server, "rogue/paid-model") == 0


def test_the_first_plan_records_the_identity_and_generations_carry_its_hash(ledger: Ledger, tmp_path: Path) -> None:
    result = plan_cohort(ledger, write_spec(tmp_path, "a", drafts_spec(2, model="offline")))
    defined = ledger.events(type=ev.MODEL_DEFINED)
    assert [e.stream for e in defined] == ["model:offline"]
    offline = load_catalog().model("offline")
    payload = defined[0].payload
    assert payload["identity_hash"] == offline.identity_hash
    assert payload["identity"] == {"provider": "offline", "model": "daydream-offline-v1", "base_url": None,
                                   "temperature": None, "max_tokens": None, "stages": {}}
    assert payload["definition"] == offline.as_dict() and payload["catalog_hash"] == result.catalog_hash
    planned = ledger.events(type=ev.GENERATION_PLANNED)
    assert planned and all(e.payload["model_hash"] == offline.identity_hash for e in planned)
    assert ledger.events(type=ev.COHORT_PLANNED)[-1].payload["models"] == {"offline": offline.identity_hash}
    # A second cohort on the same model, same catalog: nothing more to record about the model.
    plan_cohort(ledger, write_spec(tmp_path, "b", drafts_spec(3, model="offline")))
    assert len(ledger.events(type=ev.MODEL_DEFINED)) == 1


@pytest.mark.parametrize("change,differs", [
    ({"model": "vendor/other"}, "model"),
    ({"base_url": "http://127.0.0.1:8/v1"}, "base_url"),
    ({"temperature": 0.9}, "temperature"),
    ({"max_tokens": 123}, "max_tokens"),
    ({"stages": {"draft": {"temperature": 0.1}}}, "stages"),
])
def test_any_output_changing_field_is_part_of_the_identity(ledger: Ledger, tmp_path: Path,
                                                           change: dict[str, Any], differs: str) -> None:
    base = {"id": "m", "provider": "openai", "model": "vendor/m", "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": "none", "temperature": 0.2, "max_tokens": 500}
    plan_cohort(ledger, write_spec(tmp_path, "a", drafts_spec(1, model="m")),
                catalog_with(tmp_path, "one", [base]))
    before = ledger.last_seq()
    with pytest.raises(CatalogError) as info:
        plan_cohort(ledger, write_spec(tmp_path, "b", drafts_spec(2, model="m")),
                    catalog_with(tmp_path, "two", [{**base, **change}]))
    assert f"differs in {differs})" in str(info.value) and "\n" not in str(info.value)
    assert ledger.last_seq() == before


def test_prices_limits_and_key_variable_may_change_and_are_recorded(ledger: Ledger, tmp_path: Path) -> None:
    base = {"id": "m", "provider": "openai", "model": "vendor/m", "base_url": "http://127.0.0.1:9/v1",
            "api_key_env": "none", "price_in": 1, "price_out": 2, "concurrency": 4}
    plan_cohort(ledger, write_spec(tmp_path, "a", drafts_spec(1, model="m")), catalog_with(tmp_path, "one", [base]))
    cheaper = {**base, "price_in": 0.5, "price_out": 1, "concurrency": 2, "rpm": 30, "api_key_env": "M_KEY"}
    plan_cohort(ledger, write_spec(tmp_path, "b", drafts_spec(2, model="m")), catalog_with(tmp_path, "two", [cheaper]))
    changed = ledger.events(type=ev.MODEL_SETTINGS_CHANGED)
    assert len(changed) == 1 and changed[0].stream == "model:m" and changed[0].version == 2
    assert changed[0].payload["previous"]["price_in"] == 1.0 and changed[0].payload["settings"]["price_in"] == 0.5
    model = Context.load(ledger).models["m"]
    assert (model["price_in"], model["price_out"], model["concurrency"], model["rpm"], model["api_key_env"]) == \
        (0.5, 1.0, 2, 30, "M_KEY")
    assert model["model"] == "vendor/m"


def test_runner_context_ignores_a_later_snapshot_that_redefines_a_planned_model(ledger: Ledger,
                                                                               tmp_path: Path) -> None:
    plan_cohort(ledger, write_spec(tmp_path, "a", drafts_spec(1, model="offline")))
    rogue = load_catalog(catalog_with(tmp_path, "rogue", [rogue_offline("http://127.0.0.1:9")]))
    snapshot, texts = rogue.snapshot()
    ledger.append([NewEvent(ev.catalog_stream(snapshot["catalog_hash"]), ev.CATALOG_IMPORTED, snapshot)], texts)
    assert Context.load(ledger).models["offline"]["provider"] == "offline"


def _legacy_plan(ledger: Ledger, catalog_dir: Path | None, cohort: str, model: str) -> None:
    """What a daydream from before model identities appended for a plan: no ModelDefined, no
    ``models`` on CohortPlanned, no ``model_hash`` on GenerationPlanned."""
    catalog = load_catalog(catalog_dir)
    snapshot, texts = catalog.snapshot()
    digest = snapshot["catalog_hash"]
    events = []
    if ledger.stream_version(ev.catalog_stream(digest)) == 0:
        events.append(NewEvent(ev.catalog_stream(digest), ev.CATALOG_IMPORTED, snapshot))
    template = catalog.template("draft", "link-brainstorm")
    events.append(NewEvent(f"gen:d_{cohort}", ev.GENERATION_PLANNED, {
        "gen_id": f"d_{cohort}", "stage": "draft", "parent_gen_id": None, "combo_id": None,
        "template_id": template.id, "template_hash": template.hash, "generator": "llm", "parser": "identity",
        "model_id": model, "replicate": 1, "cohort_id": cohort, "catalog_hash": digest}))
    events.append(NewEvent(ev.cohort_stream(cohort), ev.COHORT_PLANNED, {
        "cohort_id": cohort, "spec_hash": "0" * 64, "catalog_hash": digest, "spec_version": 1,
        "planned": {"draft": 1}, "linked": {}}))
    ledger.append(events, texts)


def test_a_ledger_planned_before_identities_were_recorded_keeps_its_first_definition(
        ledger: Ledger, tmp_path: Path) -> None:
    _legacy_plan(ledger, None, "old-a", "offline")
    rogue_dir = catalog_with(tmp_path, "rogue", [rogue_offline("http://127.0.0.1:9")])
    _legacy_plan(ledger, rogue_dir, "old-b", "offline")  # an old daydream let this through
    found = recorded_models(ledger)["offline"]
    assert found.binding and found.version == 0 and found.definition["provider"] == "offline"
    assert Context.load(ledger).models["offline"]["provider"] == "offline"
    with pytest.raises(CatalogError, match="'offline' is already planned"):
        plan_cohort(ledger, write_spec(tmp_path, "new", drafts_spec(1, model="offline")), rogue_dir)
    # Planning with the first definition records it for good.
    plan_cohort(ledger, write_spec(tmp_path, "new", drafts_spec(1, model="offline")))
    assert [e.payload["identity"]["provider"] for e in ledger.events(type=ev.MODEL_DEFINED)] == ["offline"]


def test_an_old_snapshot_never_sends_the_openrouter_key_to_another_server(ledger: Ledger) -> None:
    # Before the key rule, every openai model was recorded with $OPENROUTER_API_KEY.
    model = {**make_model({"id": "local", "model": "llama3", "base_url": "http://127.0.0.1:9/v1"}, "t").as_dict(),
             "api_key_env": "OPENROUTER_API_KEY"}
    ledger.append([NewEvent("catalog:old", ev.CATALOG_IMPORTED, {"catalog_hash": "e" * 64, "concepts": [],
                                                                 "templates": [], "models": [model]})])
    assert Context.load(ledger).models["local"]["api_key_env"] is None


def test_unknown_model_fields_are_refused_rather_than_ignored() -> None:
    with pytest.raises(CatalogError) as info:
        make_model({"id": "m", "model": "vendor/m", "top_p": 0.9}, "models.yaml")
    message = str(info.value)
    assert "model 'm' has unknown field(s) 'top_p'" in message and "temperature" in message
    with pytest.raises(CatalogError, match="stages.draft has unknown setting"):
        make_model({"id": "m", "model": "vendor/m", "stages": {"draft": {"top_k": 3}}}, "models.yaml")


def test_identity_ignores_settings_and_normalises_the_base_url() -> None:
    a = make_model({"id": "m", "model": "x", "base_url": "http://127.0.0.1:9/v1/", "price_in": 1}, "t")
    b = make_model({"id": "m", "model": "x", "base_url": "http://127.0.0.1:9/v1", "price_in": 3,
                    "concurrency": 2, "api_key_env": "K"}, "t")
    assert isinstance(a, Model) and a.identity_hash == b.identity_hash
    assert a.base_url == "http://127.0.0.1:9/v1"
