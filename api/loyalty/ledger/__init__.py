"""Member accounts, the append-only points ledger with its lots, tiers, expiry and the check."""
