"""Programme settings, earning rules (pure engine and their storage) and the tier ladder."""
