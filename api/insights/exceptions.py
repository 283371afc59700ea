from api.core.errors import Forbidden, InvalidInput, NotFound


class AlertNotFound(NotFound):
    """No such lapse alert in your scope."""


class AlertClosed(InvalidInput):
    """The alert is closed: the member bought again."""


class StaffNotInStore(InvalidInput):
    """The staff member does not work at the member's home store."""


class StaffNotFound(NotFound):
    """No such staff member in your scope."""


class MemberNotFound(NotFound):
    """No such member in your scope."""


class PortfolioFull(InvalidInput):
    """The staff member's portfolio is full."""


class NotYourAlert(Forbidden):
    """Only the assigned staff member or a manager in scope may record the outcome."""


class InvalidThresholds(InvalidInput):
    """ABC thresholds must satisfy 0 < A% < A+B% < 100."""


class NotYourPortfolio(Forbidden):
    """Only managers may read another staff member's portfolio."""
