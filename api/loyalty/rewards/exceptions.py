from api.core.errors import Conflict, InvalidInput, NotFound


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
