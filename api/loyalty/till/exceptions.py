from api.core.errors import Conflict, Forbidden, InvalidInput, NotFound, TooManyRequests


class SpendingBlocked(Conflict):
    """The balance is negative after a return; spending is blocked until it is positive."""


class BelowMinimumRedemption(InvalidInput):
    """Fewer points than the programme's minimum redemption."""


class RotatingCodeRequired(Forbidden):
    """Spending points needs a fresh rotating QR code from the member's app."""


class DuplicateReceipt(Conflict):
    """This receipt was already posted at this store."""


class PurchaseNotFound(NotFound):
    """No such purchase."""


class InvalidPurchase(InvalidInput):
    """The purchase is not valid."""


class CurrencyMismatch(InvalidInput):
    """The programme does not run in this currency."""


class ReturnExceedsPurchase(InvalidInput):
    """More would be returned than was bought."""


class ReceiptNotClaimable(NotFound):
    """No unclaimed receipt matches this store, number and total within the claim window."""


class ReceiptAlreadyClaimed(Conflict):
    """This receipt already earned points for a member."""


class RedemptionNotFound(NotFound):
    """No such redemption at this store."""


class ReservationExpired(Conflict):
    """The reservation lapsed; its points were (or will be) released."""


class RedemptionSettled(Conflict):
    """The redemption is already confirmed or cancelled."""


class ImplausibleFuelLine(InvalidInput):
    """A fuel line's amount, price per litre or volume is not plausible."""


class UnknownFuelGrade(InvalidInput):
    """No fuel rule or programme setting knows this fuel grade."""


class PointsCapExceeded(InvalidInput):
    """The receipt would earn more points than the programme allows per receipt."""


class ReservationOpen(Conflict):
    """This receipt already holds an open reservation for other points."""


class ClaimsLocked(TooManyRequests):
    """Too many failed receipt claims; try again later."""
