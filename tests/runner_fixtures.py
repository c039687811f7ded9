"""Builders for runner tests: a catalog whose models point at a loopback stub, and small specs."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from daydream.ledger.store import Ledger
from daydream.design.planner import plan_cohort

REPO = Path(__file__).resolve().parent.parent
KEY_ENV = "DAYDREAM_TEST_STUB_KEY"


def stub_catalog(tmp: Path, base_url: str, **model_overrides: Any) -> Path:
    """Our starter catalog plus a model ``stub`` served by the loopback server at ``base_url``."""
    folder = tmp / "catalog"
    shutil.copytree(REPO / "specs" / "catalog", folder)
    models = yaml.safe_load((folder / "models.yaml").read_text())
    stub = {"id": "stub", "provider": "openai", "model": "stub/test-model", "base_url": base_url,
            "api_key_env": KEY_ENV, "concurrency": 8, "price_in": 1.0, "price_out": 2.0}
    stub.update(model_overrides)
    models.append(stub)
    (folder / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    return folder


def write_spec(tmp: Path, name: str, body: dict[str, Any]) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def drafts_spec(n_combos: int = 3, model: str = "stub", template: str = "link-brainstorm") -> dict[str, Any]:
    """Only drafts: one per combo (n_combos of the starter concepts, taken 2 at a time)."""
    concepts = ["feedback-loop", "division-of-labor", "natural-selection", "compound-interest",
                "redundancy", "bottleneck", "network-effect", "spaced-repetition", "modularity",
                "emergence", "incentive-design", "prototyping"]
    pairs = list(itertools.combinations(concepts, 2))[:n_combos]
    combos = [{"concepts": list(pair), "level": "paragraph"} for pair in pairs]
    return {"axes": {"combo": combos, "draft_template": [template], "draft_llm": [model]}}


def pipeline_spec(n_combos: int = 2, model: str = "stub", eval_replicates: int = 1) -> dict[str, Any]:
    """Draft → llm essay → one rubric, all on one model."""
    spec = drafts_spec(n_combos, model)
    spec["axes"].update({"essay_template": ["focused-essay"], "essay_llm": [model],
                         "evaluation_template": ["originality-rubric"], "evaluation_llm": [model],
                         "evaluation_replicate": eval_replicates})
    return spec


def planned_ledger(tmp: Path, base_url: str, spec: dict[str, Any], cohort: str = "t", *, db: str | None = None,
                   **model_overrides: Any) -> Ledger:
    """``spec`` planned as cohort ``cohort`` into ``db`` (an initialised ledger: a path or a PostgreSQL
    URL, e.g. the ``ledger_url`` fixture), or into a new SQLite file in ``tmp``."""
    catalog = stub_catalog(tmp, base_url, **model_overrides)
    ledger = Ledger.open(db) if db else Ledger.init(tmp / "ledger.db")[0]
    plan_cohort(ledger, write_spec(tmp, cohort, spec), catalog, cohort_id=cohort)
    return ledger


def daydream_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "daydream", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYDREAM_")}
    env.update({"DAYDREAM_RETRY_BASE_S": "0.05"}, **extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(daydream_cmd(*args), capture_output=True, text=True,
                          env=env or subprocess_env(), timeout=timeout)


def completed_calls_per_gen(ledger: Ledger) -> dict[str, int]:
    rows = ledger.query("SELECT json_extract(payload, '$.gen_id'), COUNT(*) FROM events "
                        "WHERE type = 'LLMCallCompleted' GROUP BY 1")
    return dict(rows)
