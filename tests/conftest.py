"""Shared test fixtures: real ledger files with migrations applied, and the seed-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daydream.ledger.store import Ledger
# Ledger-behaviour tests take ``ledger_url`` (a SQLite file and a PostgreSQL database, issue 17);
# the PostgreSQL fixtures are offered to every test module from here.
from tests.pg_fixtures import ledger_url, pg_empty_url, pg_server, pg_template, pg_url  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
SEED_DATA = Path(os.environ.get("DAYDREAM_SEED_DATA", REPO.parent / "shared" / "seed-data"))


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    """Path of a freshly initialised ledger file."""
    path = tmp_path / "ledger.db"
    Ledger.init(path)
    return path


@pytest.fixture
def ledger(ledger_path: Path) -> Ledger:
    """A freshly initialised ledger."""
    return Ledger.open(ledger_path)


@pytest.fixture
def seed_data() -> Path:
    """The previous pipeline's seed data (../shared/seed-data); the test is skipped when absent."""
    if not SEED_DATA.is_dir():
        pytest.skip(f"seed data not found at {SEED_DATA}")
    return SEED_DATA


@pytest.fixture(autouse=True)
def _no_ambient_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never touch a ledger the developer has lying around.
    monkeypatch.delenv("DAYDREAM_DB", raising=False)
