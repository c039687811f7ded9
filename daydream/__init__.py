"""daydream: structured LLM experiments recorded as an append-only, hash-chained SQLite ledger."""

__version__ = "0.1.0"
