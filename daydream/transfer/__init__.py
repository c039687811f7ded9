"""Moving data into a ledger from elsewhere (the previous pipeline's data roots)."""
