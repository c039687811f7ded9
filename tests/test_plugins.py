"""The plugin host: built-ins load through entry points, third-party plugins can be restricted,
and a misspelt hook fails loudly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pluggy
import pytest

from daydream import hookspecs, plugins
from daydream.errors import PluginError


def make_third_party(site: Path, name: str, body: str) -> None:
    """Install a tiny plugin distribution into ``site`` (a folder put on PYTHONPATH)."""
    (site / f"{name}.py").write_text(textwrap.dedent(body))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[daydream]\n{name} = {name}\n")


GOOD = """
    from daydream.hookspecs import hookimpl

    @hookimpl
    def register_parsers(register):
        register("shout", lambda raw: raw.upper())
"""

MISSPELT = """
    from daydream.hookspecs import hookimpl

    @hookimpl
    def register_parser(register):
        register("oops", lambda raw: raw)
"""


def plugins_json(site: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(site), **env}
    if "DAYDREAM_LOAD_PLUGINS" not in env:
        full_env.pop("DAYDREAM_LOAD_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "daydream", "plugins", "--json"], capture_output=True,
                          text=True, env=full_env, timeout=120)


def test_builtins_are_registered_through_entry_points() -> None:
    from importlib import metadata

    names = {ep.name: ep.value for ep in metadata.entry_points(group="daydream")}
    for module in plugins.BUILTIN_MODULES:
        assert module in names.values(), f"{module} is not an entry point"
    loaded = {row["module"] for row in plugins.describe()}
    assert set(plugins.BUILTIN_MODULES) <= loaded


def test_builtin_package_is_not_a_bare_plugins_import() -> None:
    from importlib import metadata

    # The built-ins are registered under an import name of their own, never a bare "plugins" that
    # someone else's package could shadow.
    assert {ep.value.split(".")[0] for ep in metadata.entry_points(group="daydream")} == {"daydream_plugins"}
    assert all(m.startswith("daydream_plugins.") for m in plugins.BUILTIN_MODULES)


def test_third_party_plugin_loads_and_registers(tmp_path: Path) -> None:
    make_third_party(tmp_path, "dd_shout", GOOD)
    result = plugins_json(tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["dd_shout"]["hooks"] == ["register_parsers"]
    assert rows["dd_shout"]["registers"] == {"parsers": ["shout"]}


def test_load_plugins_env_restricts_third_party_plugins(tmp_path: Path) -> None:
    make_third_party(tmp_path, "dd_shout", GOOD)
    make_third_party(tmp_path, "dd_other", GOOD.replace('"shout"', '"other"'))
    result = plugins_json(tmp_path, DAYDREAM_LOAD_PLUGINS="dd_other")
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in json.loads(result.stdout)}
    assert "dd_other" in names and "dd_shout" not in names
    assert "stages" in names  # built-ins always load
    result = plugins_json(tmp_path, DAYDREAM_LOAD_PLUGINS="")
    names = {row["name"] for row in json.loads(result.stdout)}
    assert not names & {"dd_other", "dd_shout"}


def test_misspelt_hook_fails_loudly(tmp_path: Path) -> None:
    make_third_party(tmp_path, "dd_typo", MISSPELT)
    result = plugins_json(tmp_path)
    assert result.returncode == 1
    assert "register_parser" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_check_pending_rejects_unknown_hook_in_process() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)

    class Typo:
        @hookspecs.hookimpl
        def register_stage(self, register):  # noqa: ANN001 - deliberately wrong name
            pass

    pm.register(Typo())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


def test_registering_a_name_twice_is_an_error(tmp_path: Path) -> None:
    make_third_party(tmp_path, "dd_dupe", GOOD.replace('"shout"', '"identity"'))
    full_env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = "from daydream import plugins; plugins.parsers()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)
    assert result.returncode != 0
    assert "registered twice" in result.stderr
    assert PluginError.__name__ in result.stderr
