from api.core.errors import Conflict, InvalidInput, NotFound


class RuleNotFound(NotFound):
    """No such rule."""


class RuleCodeTaken(Conflict):
    """A rule with this code already exists."""


class InvalidRule(InvalidInput):
    """The rule's parameters do not fit its kind."""


class TierNotFound(NotFound):
    """No such tier."""


class CurrencyLocked(Conflict):
    """The programme already has receipts or ledger entries in its currency; it cannot change."""
