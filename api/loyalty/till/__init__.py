"""The till: identify, receipts and their points, returns, claims of receipts, redemptions."""
