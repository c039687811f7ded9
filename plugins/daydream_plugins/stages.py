"""Built-in daydream plugin: stages (filled in by its issue)."""
