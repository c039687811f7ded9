"""Built-in daydream plugin: provider_openai (filled in by its issue)."""
