"""ledger.db.example: committed, small, verified, and exactly what the documented command rebuilds."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from daydream.cli import cli
from daydream.ledger.store import Ledger

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "ledger.db.example"
# Facts about *when* and *by which process* things happened; everything else must match.
# Paths say where the checkout was, not what happened.
VOLATILE = {"lease_until", "worker", "latency_s", "elapsed_s", "spec_path", "source"}


def content(path: Path) -> tuple[set, set]:
    ledger = Ledger.open(path, readonly=True)
    events = set()
    for stream, version, type_, payload in ledger.query("SELECT stream, version, type, payload FROM events"):
        data = {k: v for k, v in json.loads(payload).items() if k not in VOLATILE}
        events.add((stream, version, type_, json.dumps(data, sort_keys=True)))
    texts = set(ledger.query("SELECT sha256, chars FROM texts"))
    return events, texts


def test_example_ledger_is_small_and_verifies() -> None:
    assert EXAMPLE.is_file(), "ledger.db.example is missing"
    assert EXAMPLE.stat().st_size < 5 * 1024 * 1024
    result = CliRunner().invoke(cli, ["verify", "--db", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    counts = Ledger.open(EXAMPLE, readonly=True).query(
        "SELECT status, COUNT(*) FROM gen_state GROUP BY status")
    assert dict(counts).keys() == {"completed"}


def test_rebuilding_the_example_gives_the_same_content(tmp_path: Path) -> None:
    rebuilt = tmp_path / "ledger.db.example"
    result = CliRunner().invoke(cli, ["demo", "--db", str(rebuilt), "--quiet", "--compact"])
    assert result.exit_code == 0, result.output
    assert not Path(str(rebuilt) + "-wal").exists()
    ours, committed = content(rebuilt), content(EXAMPLE)
    assert ours[1] == committed[1], "texts differ: rebuild ledger.db.example (see README)"
    assert ours[0] == committed[0], "events differ: rebuild ledger.db.example (see README)"
