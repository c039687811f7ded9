"""The plugin host: a pluggy manager that loads built-in and third-party plugins.

Plugins come from the ``daydream`` entry-point group. ``DAYDREAM_LOAD_PLUGINS`` (comma-separated
entry-point or distribution names) restricts which *third-party* plugins load; the built-ins in
``daydream_plugins`` always load, because the pipeline cannot run without them. After loading,
``check_pending()`` makes a misspelt hook name fail loudly.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from daydream import hookspecs
from daydream.errors import PluginError

BUILTIN_PACKAGE = "daydream_plugins"
BUILTIN_MODULES = (
    "daydream_plugins.stages",
    "daydream_plugins.parsers",
    "daydream_plugins.provider_openai",
    "daydream_plugins.provider_offline",
    "daydream_plugins.provider_replay",
)

_pm: pluggy.PluginManager | None = None


def _allowed() -> set[str] | None:
    raw = os.environ.get("DAYDREAM_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=hookspecs.PROJECT), key=lambda ep: ep.name)


def build_manager() -> pluggy.PluginManager:
    """A fresh plugin manager with every permitted plugin loaded and checked."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    allowed = _allowed()
    for ep in _entry_points():
        builtin = ep.value.split(":")[0].startswith(BUILTIN_PACKAGE + ".")
        dist = ep.dist.name if ep.dist else None
        if not builtin and allowed is not None and ep.name not in allowed and dist not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        pm.register(plugin, name=ep.name)
    # Running from a source tree without installed metadata: still load the built-ins.
    for module_name in BUILTIN_MODULES:
        short = module_name.rsplit(".", 1)[1]
        if pm.get_plugin(short) is None and not any(
                getattr(p, "__name__", None) == module_name for p in pm.get_plugins()):
            pm.register(importlib.import_module(module_name), name=short)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin hook error: {exc}") from exc
    return pm


def manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is None:
        _pm = build_manager()
    return _pm


@dataclass
class Registry:
    """Things plugins registered under one hook, by name."""

    kind: str
    items: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        try:
            return self.items[name]
        except KeyError:
            known = ", ".join(sorted(self.items)) or "none"
            raise PluginError(f"no {self.kind} named {name!r} is registered (known: {known})") from None


_REGISTRIES: dict[str, Registry] = {}


def _collect(hook_name: str, kind: str, *, keyed: bool) -> Registry:
    if hook_name in _REGISTRIES:
        return _REGISTRIES[hook_name]
    pm = manager()
    registry = Registry(kind)
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

        def register(*args: Any, _plugin: str = plugin_name) -> None:
            if keyed:
                name, value = args
            else:
                (value,) = args
                name = value.name
            if name in registry.items:
                raise PluginError(f"{kind} {name!r} registered twice (by {registry.origin[name]} and {_plugin})")
            registry.items[name] = value
            registry.origin[name] = _plugin

        impl.function(**{arg: register for arg in impl.argnames if arg == "register"})
    _REGISTRIES[hook_name] = registry
    return registry


def stages() -> Registry:
    """Registered stages by name."""
    return _collect("register_stages", "stage", keyed=False)


def providers() -> Registry:
    """Registered provider factories by name."""
    return _collect("register_providers", "provider", keyed=True)


def parsers() -> Registry:
    """Registered parsers by name."""
    return _collect("register_parsers", "parser", keyed=True)


def describe() -> list[dict[str, Any]]:
    """Loaded plugins with their hooks, for ``daydream plugins``."""
    pm = manager()
    rows = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append({"name": name, "module": getattr(plugin, "__name__", repr(plugin)), "hooks": hooks})
    return sorted(rows, key=lambda r: r["name"])


def add_commands(cli: Callable[..., Any]) -> None:
    """Let plugins add CLI subcommands."""
    manager().hook.register_commands(cli=cli)
