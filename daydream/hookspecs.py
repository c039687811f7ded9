"""The hooks daydream plugins implement (pluggy project name ``daydream``).

Every hook is a *register(callback)* hook: daydream calls it once at start-up with a function the
plugin calls for each thing it contributes. Hooks are called with keyword arguments only, and an
implementation may accept a subset of them. Built-in stages, providers and parsers are plugins too
(package ``daydream_plugins``), registered through the same ``[project.entry-points.daydream]``
group third-party plugins use.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

PROJECT = "daydream"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_stages(register: Callable[[Any], None]) -> None:
    """Contribute the behaviour of pipeline stages (the stages themselves are fixed:
    ``daydream.contracts.PIPELINE_STAGES``, draft -> essay -> evaluation).

    :param register: call ``register(stage)`` with an object satisfying ``daydream.contracts.Stage``
        (``name``, ``parent_stage``, ``scored``, ``variables()``, ``check()``, ``outcome()``).
        Registering a name twice is an error; a stage of another name is never planned.
    :return: nothing; the results of all implementations are ignored.
    """


@hookspec
def register_providers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Contribute LLM providers.

    :param register: call ``register(name, factory)``; ``factory(model, **options)`` returns an
        object satisfying ``daydream.contracts.Provider`` (an async ``complete(request)``). ``name``
        is what catalog models put in their ``provider`` column (``openai``, ``offline``, ``replay``).
    :return: nothing.
    """


@hookspec
def register_parsers(register: Callable[[str, Callable[[str], Any]], None]) -> None:
    """Contribute output parsers, named by templates in the catalog.

    :param register: call ``register(name, parse)``; ``parse(raw_text)`` returns a
        ``daydream.contracts.Parsed`` or raises ``daydream.contracts.ParseFailure`` with a reason.
        A parser of scores that also accepts a ``scale`` keyword is given the rubric's
        ``(min, max)``; every score is checked against that scale either way.
    :return: nothing.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add CLI subcommands.

    :param cli: the top-level ``click.Group``; call ``cli.add_command(...)`` or use it as a decorator.
    :return: nothing.
    """
