"""Start-up: `daydream --help` (and every command's --help) loads no heavy library.

Each command is a fresh process, so what the CLI imports before doing anything is paid on every
call. The heavy libraries (SQLAlchemy, Alembic, httpx, Jinja2, Datasette, numpy, markdown-it, YAML, rich)
must be imported only by the commands that use them, including by the plugin modules that are
loaded to collect ``register_commands``. Each check runs the real entry point in a subprocess and
looks at ``sys.modules`` afterwards. (The time it takes is measured by bench/startup.py, not here.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daydream.cli import cli
from tests.runner_fixtures import subprocess_env
from tests.test_cli import all_commands

HEAVY = ("sqlalchemy", "alembic", "httpx", "jinja2", "datasette", "numpy", "markdown_it", "yaml", "rich")
# The ledger's own libraries: a command that opens a ledger needs them, and nothing else heavy.
LEDGER = ("sqlalchemy", "alembic")

WRAPPER = """
import json, sys
args, out = json.loads(sys.argv[1]), sys.argv[2]
sys.argv = ["daydream", *args]
from daydream.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as fh:
    json.dump({"code": code, "modules": sorted(sys.modules)}, fh)
"""


def loaded_by(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    """Run ``daydream ARGS`` in a fresh interpreter; its exit code and the modules it imported."""
    out = tmp_path / "modules.json"
    done = subprocess.run([sys.executable, "-c", WRAPPER, json.dumps(list(args)), str(out)],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert out.exists(), done.stderr
    found = json.loads(out.read_text())
    return found["code"], set(found["modules"])


def heavy(modules: set[str], libraries: tuple[str, ...] = HEAVY) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(libraries))


def test_daydream_help_imports_no_heavy_library_and_still_loads_the_plugins(tmp_path: Path) -> None:
    code, modules = loaded_by(tmp_path, "--help")
    assert code == 0
    assert heavy(modules) == []
    # Not vacuous: the plugins were loaded (to collect their commands), the commands were defined.
    assert {"daydream_plugins.stages", "daydream_plugins.provider_openai", "daydream.cli.run"} <= modules


@pytest.mark.parametrize("path", [" ".join(name) for name, _ in all_commands(cli)])
def test_every_commands_help_imports_no_heavy_library(tmp_path: Path, path: str) -> None:
    code, modules = loaded_by(tmp_path, *path.split(), "--help")
    assert code == 0
    assert heavy(modules) == [], f"'daydream {path} --help' imports {heavy(modules)}"


def test_status_imports_nothing_heavy_beyond_the_ledger(tmp_path: Path) -> None:
    from daydream.ledger.store import Ledger

    db = tmp_path / "ledger.db"
    Ledger.init(db)
    code, modules = loaded_by(tmp_path, "status", "--db", str(db))
    assert code == 0
    assert heavy(modules, tuple(h for h in HEAVY if h not in LEDGER)) == []
    assert "daydream_plugins.stages" in modules  # plugins loaded, their libraries not
