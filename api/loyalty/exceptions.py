from api.core.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound


class InsufficientPoints(Conflict):
    """Not enough available points."""


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


class RewardNotFound(NotFound):
    """No such reward."""


class RewardUnavailable(Conflict):
    """The reward is out of stock, expired, or not offered here."""


class RewardLimitReached(Conflict):
    """The member already claimed this reward as often as allowed."""


class InvalidReward(InvalidInput):
    """The reward's settings are not valid."""


class CouponNotFound(NotFound):
    """No such coupon."""


class CouponNotRedeemable(Conflict):
    """The coupon was already used, cancelled or has expired."""


class RuleNotFound(NotFound):
    """No such rule."""


class RuleCodeTaken(Conflict):
    """A rule with this code already exists."""


class InvalidRule(InvalidInput):
    """The rule's parameters do not fit its kind."""


class TierNotFound(NotFound):
    """No such tier."""


class LedgerMismatch(DomainError):
    """Cached balance and ledger disagree."""

    status_code = 500
