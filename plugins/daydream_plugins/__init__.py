"""daydream's built-in plugins: stages, parsers and providers.

Each module is one plugin, registered through the ``daydream`` entry-point group exactly like a
third-party plugin (see ``pyproject.toml``).
"""
