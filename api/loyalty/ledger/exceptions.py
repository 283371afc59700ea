from api.core.errors import Conflict, DomainError


class InsufficientPoints(Conflict):
    """Not enough available points."""


class LedgerMismatch(DomainError):
    """Cached balance and ledger disagree."""

    status_code = 500
