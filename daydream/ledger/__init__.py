"""The ledger: the append-only, hash-chained event log, its database, event types and projections."""
