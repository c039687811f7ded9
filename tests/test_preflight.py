"""Preflight: a run that cannot work stops before anything is claimed, naming models and what to fix.

Real ledgers, a real loopback server, the real `daydream` process: a missing key exits 1 with one
line and leaves the ledger exactly as it was (no MissingAPIKey call event, no claim); a model
without a price is refused until the catalog gives one or says `price: unknown`; `--budget` refuses
an unpriced model unless `--allow-unpriced`. Also the catalog side of `price: unknown`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from daydream.design.catalog import load_catalog, recorded_models
from daydream.errors import CatalogError
from daydream.ledger.store import Ledger
from daydream.run.preflight import base_url_problem, check_run, key_state
from daydream.testing import StubLLMServer
from tests.runner_fixtures import (KEY_ENV, drafts_spec, planned_ledger, run_cli, stub_catalog, subprocess_env,
                                   write_spec)

SECRET = "sk-preflight-SECRET-d41d8cd98f"


def fingerprint(ledger: Ledger) -> tuple[int, str | None]:
    """How many events and the last hash: equal before and after means nothing was recorded."""
    rows = ledger.query("SELECT COUNT(*), (SELECT hash FROM events ORDER BY seq DESC LIMIT 1) FROM events")
    return rows[0][0], rows[0][1]


def failed_calls(ledger: Ledger) -> int:
    return ledger.query("SELECT COUNT(*) FROM events WHERE type IN ('LLMCallStarted', 'LLMCallFailed')")[0][0]


def test_a_run_with_the_key_unset_records_nothing_and_exits_1(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(3))
        before = fingerprint(ledger)
        result = run_cli("run", "--db", str(ledger.path), "--quiet")  # subprocess_env: no stub key
        assert server.calls == 0
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: cannot start the run: ")
    assert f"model stub: ${KEY_ENV} is not set" in result.stderr
    assert "nothing was claimed or recorded" in result.stderr
    assert fingerprint(ledger) == before and failed_calls(ledger) == 0
    assert not ledger.query("SELECT 1 FROM events WHERE payload LIKE '%MissingAPIKey%'")
    assert set(r[0] for r in ledger.query("SELECT status FROM gen_state")) == {"planned"}


def test_models_sharing_a_missing_variable_are_named_together_on_one_line(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        catalog = stub_catalog(tmp_path, server.base_url)
        models = yaml.safe_load((catalog / "models.yaml").read_text())
        models.append({**models[-1], "id": "stub2", "model": "stub/second"})
        models.append({**models[-1], "id": "stub3", "model": "stub/third", "api_key_env": "OTHER_STUB_KEY"})
        (catalog / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
        ledger = Ledger.init(tmp_path / "ledger.db")[0]
        for model in ("stub", "stub2", "stub3"):
            spec = write_spec(tmp_path, f"c-{model}", drafts_spec(1, model=model))
            assert run_cli("cohort", "plan", str(spec), "--catalog", str(catalog), "--db", str(ledger.path)).returncode == 0
        before = fingerprint(ledger)
        result = run_cli("run", "--db", str(ledger.path), "--quiet")
        assert server.calls == 0
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"models stub, stub2: ${KEY_ENV} is not set" in result.stderr
    assert "model stub3: $OTHER_STUB_KEY is not set" in result.stderr
    assert fingerprint(ledger) == before


def test_an_unusable_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    bad = "sk-has a space"
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        result = run_cli("run", "--db", str(ledger.path), env=subprocess_env(**{KEY_ENV: bad}))
        assert server.calls == 0
    assert result.returncode == 1 and f"${KEY_ENV} is not a usable key" in result.stderr
    assert bad not in result.stderr and "space" not in result.stdout


def test_the_check_covers_only_the_work_in_scope(tmp_path: Path) -> None:
    # Another cohort's model lacks its key; a run of this cohort (offline) is not held up by it.
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1), cohort="paid")
        offline = write_spec(tmp_path, "free", drafts_spec(1, model="offline"))
        assert run_cli("cohort", "plan", str(offline), "--catalog", str(tmp_path / "catalog"),
                       "--db", str(ledger.path)).returncode == 0
        assert run_cli("run", "--cohort", "free", "--db", str(ledger.path), "--quiet").returncode == 0
        refused = run_cli("run", "--db", str(ledger.path), "--quiet")
        assert server.calls == 0
    assert refused.returncode == 1 and "model stub:" in refused.stderr and "offline" not in refused.stderr


def test_a_model_without_a_price_is_refused_until_the_catalog_says_price_unknown(tmp_path: Path) -> None:
    env = subprocess_env(**{KEY_ENV: SECRET})
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2), price_in=None, price_out=None)
        before = fingerprint(ledger)
        refused = run_cli("run", "--db", str(ledger.path), "--quiet", env=env)
        assert refused.returncode == 1 and server.calls == 0 and fingerprint(ledger) == before
        assert "model stub: no price in the catalog: add price_in and price_out" in refused.stderr
        assert "'price: unknown'" in refused.stderr
        # Say so in the catalog and plan again: the setting is recorded, and the run goes ahead.
        catalog = stub_catalog(tmp_path / "again", server.base_url, price_in=None, price_out=None, price="unknown")
        assert run_cli("cohort", "plan", str(tmp_path / "t.yaml"), "--cohort-id", "t", "--catalog", str(catalog),
                       "--db", str(ledger.path)).returncode == 0
        assert recorded_models(ledger)["stub"].definition["price"] == "unknown"
        ran = run_cli("run", "--db", str(ledger.path), "--quiet", env=env)
        assert ran.returncode == 0, ran.stderr
        assert server.calls == 2


def test_budget_refuses_a_model_of_unknown_price_unless_allowed(tmp_path: Path) -> None:
    env = subprocess_env(**{KEY_ENV: SECRET})
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2), price_in=None, price_out=None,
                                price="unknown")
        before = fingerprint(ledger)
        refused = run_cli("run", "--budget", "1", "--db", str(ledger.path), "--quiet", env=env)
        assert refused.returncode == 1 and server.calls == 0 and fingerprint(ledger) == before
        assert "model stub: price unknown, so --budget 1 cannot hold" in refused.stderr
        assert "--allow-unpriced" in refused.stderr
        allowed = run_cli("run", "--budget", "1", "--allow-unpriced", "--db", str(ledger.path), "--quiet", env=env)
        assert allowed.returncode == 0, allowed.stderr
        assert server.calls == 2


def test_replay_needs_no_key(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(2))
        assert run_cli("run", "--db", str(ledger.path), "--quiet",
                       env=subprocess_env(**{KEY_ENV: SECRET})).returncode == 0
        source = tmp_path / "source.db"
        ledger.backup(source)
        assert run_cli("rerun", "--cohort", "t", "--db", str(ledger.path)).returncode == 0
        replayed = run_cli("run", "--replay-from", str(source), "--db", str(ledger.path), "--quiet")
        assert replayed.returncode == 0, replayed.stderr
        assert server.calls == 2  # only the first run's


def test_dry_run_shows_what_a_run_would_refuse_and_exits_0(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        before = fingerprint(ledger)
        result = run_cli("run", "--dry-run", "--db", str(ledger.path))
    assert result.returncode == 0
    assert f"preflight: a run would refuse to start: model stub: ${KEY_ENV} is not set" in result.stdout
    assert fingerprint(ledger) == before


def test_verbose_lists_what_was_checked_per_model_and_never_the_key(tmp_path: Path) -> None:
    with StubLLMServer() as server:
        ledger = planned_ledger(tmp_path, server.base_url, drafts_spec(1))
        result = run_cli("-v", "run", "--db", str(ledger.path), "--quiet", env=subprocess_env(**{KEY_ENV: SECRET}))
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("daydream: preflight: model stub "))
    assert f"(openai, {server.base_url})" in line and f"key ${KEY_ENV} set" in line
    assert "1 pending calls" in line and "$1 / $2 per 1M tokens" in line and line.endswith(": ok")
    assert SECRET not in result.stderr + result.stdout


def test_demo_passes_preflight_offline(tmp_path: Path) -> None:
    result = run_cli("-v", "demo", "--db", str(tmp_path / "demo.db"), "--quiet", "--top", "1")
    assert result.returncode == 0, result.stderr
    assert "daydream: preflight: model offline (offline): 80 pending calls, no key" in result.stderr


def test_check_run_reports_a_model_no_snapshot_defines(ledger: Ledger) -> None:
    from tests.read_fixtures import _planned

    ledger.append([_planned("d_orphan", "draft", "c", "links", "ghost", combo="combo_a")])
    found = check_run(ledger)
    assert not found.ok and found.problems == ["model ghost: model 'ghost' is in no catalog snapshot of this ledger"]


@pytest.mark.parametrize("url, problem", [
    ("https://openrouter.ai/api/v1", None),
    ("http://127.0.0.1:8080/v1", None),
    ("http://[::1]:11434", None),
    ("ftp://example.org/v1", "base_url is not an http(s) URL with a host"),
    ("localhost:11434/v1", "base_url is not an http(s) URL with a host"),
    ("http://127.0.0.1:99999/v1", "base_url does not parse as a URL"),
    ("https://user:pw@example.org/v1", "base_url holds credentials or a query string"),
    ("https://example.org/v1?key=x", "base_url holds credentials or a query string"),
])
def test_base_url_problems(url: str, problem: str | None) -> None:
    assert base_url_problem(url) == problem


@pytest.mark.parametrize("value, state", [
    (None, "missing"), ("", "missing"), ("  \r\n", "missing"), ("sk-abc\r\n", "set"),
    ("sk-a b", "unusable"), ("sk-ключ", "unusable"), ("sk-\x07", "unusable"),
])
def test_key_state_follows_the_providers_rule(value: str | None, state: str) -> None:
    environ = {} if value is None else {"K": value}
    assert key_state("K", environ) == state


# ----------------------------------------------------------------------------- the catalog's price: unknown
def models_yaml(tmp_path: Path, *models: dict) -> Path:
    import shutil

    from tests.runner_fixtures import REPO

    folder = tmp_path / "cat"
    shutil.copytree(REPO / "specs" / "catalog", folder)
    (folder / "models.yaml").write_text(yaml.safe_dump(list(models), sort_keys=False))
    return folder


def test_price_unknown_is_recorded_only_when_set(tmp_path: Path) -> None:
    folder = models_yaml(tmp_path, {"id": "local", "model": "x", "base_url": "http://127.0.0.1:1/v1",
                                    "price": "Unknown"},
                         {"id": "paid", "model": "y", "price_in": 1, "price_out": 2})
    catalog = load_catalog(folder)
    assert catalog.models["local"].as_dict()["price"] == "unknown"
    assert "price" not in catalog.models["paid"].as_dict()  # so existing catalogs keep their hash
    snapshot, _texts = catalog.snapshot()
    assert [m.get("price") for m in snapshot["models"]] == ["unknown", None]


@pytest.mark.parametrize("entry, message", [
    ({"price": "maybe"}, "has price 'maybe'; the only value is 'unknown'"),
    ({"price": "unknown", "price_in": 1}, "has 'price: unknown' and price_in; give either the prices"),
    ({"price": "unknown", "price_in": 1, "price_out": 2}, "and price_in and price_out"),
])
def test_price_other_than_unknown_or_beside_prices_is_refused(tmp_path: Path, entry: dict, message: str) -> None:
    folder = models_yaml(tmp_path, {"id": "m", "model": "x", **entry})
    with pytest.raises(CatalogError, match=re.escape(message)):
        load_catalog(folder)


def test_changing_to_and_from_price_unknown_is_recorded(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger.db")[0]
    spec = write_spec(tmp_path, "c", drafts_spec(1, model="m"))

    plans = iter(range(10))

    def plan(**prices: object) -> None:
        folder = models_yaml(tmp_path / f"plan{next(plans)}",
                             {"id": "m", "model": "x", "base_url": "http://127.0.0.1:1/v1", **prices})
        assert run_cli("cohort", "plan", str(spec), "--catalog", str(folder), "--db", str(ledger.path)).returncode == 0

    plan(price_in=1, price_out=2)
    plan(price="unknown")
    assert recorded_models(ledger)["m"].definition["price"] == "unknown"
    changed = ledger.events(type="ModelSettingsChanged")
    assert changed[-1].payload["settings"]["price"] == "unknown" and "price" not in changed[-1].payload["previous"]
    plan(price_in=3, price_out=4)
    definition = recorded_models(ledger)["m"].definition
    assert "price" not in definition and (definition["price_in"], definition["price_out"]) == (3, 4)
