"""Built-in daydream plugin: provider_replay (filled in by its issue)."""
