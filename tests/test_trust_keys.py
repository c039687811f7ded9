"""Keys stay out of the ledger and go only where they belong (issue 10, point 3).

A key inside ``base_url`` used to be stored in every snapshot, event, error and Datasette page, and
``$OPENROUTER_API_KEY`` was sent to any ``base_url`` whose model omitted ``api_key_env``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from daydream.design.catalog import DEFAULT_API_KEY_ENV, make_model
from daydream.errors import CatalogError
from daydream.testing import StubLLMServer
from tests.runner_fixtures import REPO, drafts_spec, run_cli, subprocess_env, write_spec

SECRET = "sk-or-v1-TOPSECRET0123456789abcdef"


def catalog_with(tmp: Path, *models: dict[str, Any]) -> Path:
    folder = tmp / "catalog"
    shutil.copytree(REPO / "specs" / "catalog", folder)
    base = yaml.safe_load((folder / "models.yaml").read_text())
    (folder / "models.yaml").write_text(yaml.safe_dump(base + list(models), sort_keys=False))
    return folder


def files_hold(folder: Path, secret: str) -> list[str]:
    """Files under ``folder`` (ledger, its log, anything written) whose bytes contain ``secret``."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()
            and p.suffix != ".yaml"]


@pytest.mark.parametrize("base_url,what", [
    (f"http://user:{SECRET}@127.0.0.1:9/v1", "credentials"),
    (f"http://{SECRET}@127.0.0.1:9/v1", "credentials"),
    (f"http://127.0.0.1:9/v1?api_key={SECRET}", "query string"),
])
def test_a_key_in_base_url_is_refused_at_catalog_load_and_never_echoed(tmp_path: Path, base_url: str,
                                                                       what: str) -> None:
    db = tmp_path / "ledger.db"
    assert run_cli("init", "--db", str(db)).returncode == 0
    catalog = catalog_with(tmp_path, {"id": "leaky", "provider": "openai", "model": "vendor/m", "base_url": base_url})
    spec = write_spec(tmp_path, "c", drafts_spec(1, model="leaky"))
    for args in (["cohort", "plan", str(spec), "--catalog", str(catalog), "--db", str(db)],
                 ["cohort", "plan", str(spec), "--catalog", str(catalog), "--db", str(db), "--dry-run"],
                 ["spec", "compile", str(spec), "--catalog", str(catalog)]):
        result = run_cli(*args)
        assert result.returncode == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr
        assert "model 'leaky'" in lines[0] and "base_url" in lines[0] and what in lines[0]
        assert SECRET not in result.stderr + result.stdout
    assert files_hold(tmp_path, SECRET) == []  # not in the ledger, its log, or anything else written
    assert run_cli("events", "--db", str(db)).stdout.strip() == "no events"


def test_api_key_env_must_be_a_variable_name_and_a_key_given_there_is_not_echoed() -> None:
    with pytest.raises(CatalogError) as info:
        make_model({"id": "m", "model": "vendor/m", "api_key_env": SECRET}, "models.yaml")
    assert "api_key_env must be the *name* of an environment variable" in str(info.value)
    assert SECRET not in str(info.value)


def test_the_default_key_variable_is_for_openrouter_only() -> None:
    routed = make_model({"id": "r", "model": "vendor/m"}, "t")
    assert (routed.base_url, routed.api_key_env) == ("https://openrouter.ai/api/v1", DEFAULT_API_KEY_ENV)
    assert make_model({"id": "r", "model": "vendor/m", "base_url": "https://openrouter.ai/api/v1/"},
                      "t").api_key_env == DEFAULT_API_KEY_ENV
    for url in ("http://127.0.0.1:11434/v1", "https://api.openai.com/v1", "http://openrouter.ai/api/v1",
                "https://openrouter.ai.example.com/v1"):
        assert make_model({"id": "l", "model": "x", "base_url": url}, "t").api_key_env is None, url
    assert make_model({"id": "l", "model": "x", "api_key_env": "none"}, "t").api_key_env is None
    assert make_model({"id": "l", "model": "x", "api_key_env": "NONE"}, "t").api_key_env is None
    assert make_model({"id": "l", "model": "x", "base_url": "http://127.0.0.1:9", "api_key_env": "LOCAL_KEY"},
                      "t").api_key_env == "LOCAL_KEY"


def test_a_local_server_receives_no_key_unless_the_catalog_names_one(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    with StubLLMServer() as server:
        catalog = catalog_with(
            tmp_path,
            {"id": "quiet", "provider": "openai", "model": "local/quiet", "base_url": server.base_url,
             "price": "unknown"},
            {"id": "none", "provider": "openai", "model": "local/none", "base_url": server.base_url,
             "api_key_env": "none", "price": "unknown"},
            {"id": "named", "provider": "openai", "model": "local/named", "base_url": server.base_url,
             "api_key_env": "LOCAL_TEST_KEY", "price": "unknown"})
        assert run_cli("init", "--db", str(db)).returncode == 0
        for model in ("quiet", "none", "named"):
            spec = write_spec(tmp_path, f"c-{model}", drafts_spec(2, model=model))
            planned = run_cli("cohort", "plan", str(spec), "--catalog", str(catalog), "--db", str(db))
            assert planned.returncode == 0, planned.stderr
        env = subprocess_env(OPENROUTER_API_KEY=SECRET, LOCAL_TEST_KEY="local-key-not-secret")
        ran = run_cli("run", "--db", str(db), env=env)
        assert ran.returncode == 0, ran.stderr
        seen = {(r.model, r.authorization_present) for r in server.records}
        assert seen == {("local/quiet", False), ("local/none", False), ("local/named", True)}
        assert server.calls == 6
    assert SECRET not in ran.stdout + ran.stderr and files_hold(tmp_path, SECRET) == []
