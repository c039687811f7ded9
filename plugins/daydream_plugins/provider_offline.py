"""Built-in daydream plugin: provider_offline (filled in by its issue)."""
