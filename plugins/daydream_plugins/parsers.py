"""Built-in daydream plugin: parsers (filled in by its issue)."""
