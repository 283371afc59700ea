from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.core.fields import Id, not_null
from api.loyalty.rules import RuleKind

Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:#-]{1,64}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Points = Annotated[int, Field(ge=1, le=100_000_000)]
Money = Annotated[int, Field(ge=0, le=10**13, description="minor units")]


# ---------------------------------------------------------------- till: identify


class BalanceRead(BaseModel):
    available: int
    pending: int


class IdentifyRequest(BaseModel):
    code: str = Field(
        min_length=1, max_length=512, description="Rotating QR payload, card, phone or plate"
    )


class IdentifyResult(BaseModel):
    member_id: int
    display_name: str
    tier: str | None
    balance: BalanceRead
    can_redeem: bool
    method: str
    till_token: str
    till_token_expires_in: int


# ---------------------------------------------------------------- programme settings


class ProgramRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    currency: str
    timezone: str
    earn_points: int
    earn_amount: int
    rounding: Literal["floor", "round", "ceil"]
    redeem_points: int
    redeem_value: int
    pending_days: int
    expiry_months: int | None
    expiry_policy: Literal["rolling", "never"]
    min_redemption: int
    static_card_can_spend: bool
    reservation_minutes: int
    claim_window_days: int
    max_receipt_total: int
    tier_window_months: int
    version: int


class ProgramUpdate(BaseModel):
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    timezone: str | None = None
    earn_points: Annotated[int, Field(ge=0, le=10_000)] | None = None
    earn_amount: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    rounding: Literal["floor", "round", "ceil"] | None = None
    redeem_points: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    redeem_value: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    pending_days: Annotated[int, Field(ge=0, le=365)] | None = None
    expiry_policy: Literal["rolling", "never"] | None = None
    expiry_months: Annotated[int, Field(ge=1, le=120)] | None = None
    min_redemption: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    static_card_can_spend: bool | None = None
    reservation_minutes: Annotated[int, Field(ge=1, le=240)] | None = None
    claim_window_days: Annotated[int, Field(ge=0, le=365)] | None = None
    max_receipt_total: Annotated[int, Field(ge=100, le=10**12)] | None = None
    tier_window_months: Annotated[int, Field(ge=1, le=36)] | None = None

    # expiry_months may be null (never expire, like expiry_policy "never"); the rest may not
    _not_null = not_null(
        "currency",
        "timezone",
        "earn_points",
        "earn_amount",
        "rounding",
        "redeem_points",
        "redeem_value",
        "pending_days",
        "expiry_policy",
        "min_redemption",
        "static_card_can_spend",
        "reservation_minutes",
        "claim_window_days",
        "max_receipt_total",
        "tier_window_months",
    )


# ---------------------------------------------------------------- rules


class Caps(BaseModel):
    day: Points | None = None
    week: Points | None = None
    month: Points | None = None
    year: Points | None = None


class RuleBase(BaseModel):
    name: Text | None = None
    params: dict[str, Any] | None = None
    store_ids: list[Id] | None = Field(None, max_length=1000)
    region_ids: list[Id] | None = Field(None, max_length=1000)
    store_kind: Literal["supermarket", "fuel_station"] | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    caps: Caps | None = None
    budget: Points | None = None
    active: bool | None = None

    @model_validator(mode="after")
    def _window(self) -> "RuleBase":
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class RuleCreate(RuleBase):
    code: Code
    name: Text
    kind: RuleKind
    params: dict[str, Any] = Field(default_factory=dict)


class RuleUpdate(RuleBase):
    pass


class RuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str
    kind: RuleKind
    params: dict[str, Any]
    store_ids: list[int] | None
    region_ids: list[int] | None
    store_kind: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    caps: dict[str, int]
    budget: int | None
    budget_used: int
    active: bool
    version: int


class RuleSet(BaseModel):
    rules: list[RuleCreate] = Field(max_length=500)


# ---------------------------------------------------------------- tiers


class TierIn(BaseModel):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    min_spend: Money
    multiplier_percent: Annotated[int, Field(ge=100, le=1000)] = 100


class TierRead(TierIn):
    model_config = ConfigDict(from_attributes=True)
    rank: int


class TierSet(BaseModel):
    tiers: list[TierIn] = Field(min_length=1, max_length=20)

    @field_validator("tiers")
    @classmethod
    def _ordered(cls, tiers: list[TierIn]) -> list[TierIn]:
        if tiers[0].min_spend != 0:
            raise ValueError("the first (entry) tier must have min_spend 0")
        spends = [t.min_spend for t in tiers]
        if spends != sorted(set(spends)):
            raise ValueError("tiers must be listed by strictly increasing min_spend")
        if len({t.code for t in tiers}) != len(tiers):
            raise ValueError("tier codes must be unique")
        return tiers


class ManualTier(BaseModel):
    tier: str
    until: datetime


# ---------------------------------------------------------------- purchases


class LineIn(BaseModel):
    line_no: Annotated[int, Field(ge=1, le=10_000)]
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    category: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    quantity: Annotated[Decimal, Field(gt=0, le=1_000_000, max_digits=14, decimal_places=3)] = (
        Decimal(1)
    )
    amount: Money
    fuel_grade: Annotated[str, StringConstraints(max_length=16)] | None = None
    volume_ml: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class PurchaseIn(BaseModel):
    receipt_no: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[\w./:#-]{1,64}$")
    ]
    occurred_at: datetime | None = None
    member_code: Annotated[str, StringConstraints(max_length=1024)] | None = None
    member_id: Id | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    total: Money
    lines: list[LineIn] = Field(min_length=1, max_length=500)

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("occurred_at needs a UTC offset")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "PurchaseIn":
        if sum(line.amount for line in self.lines) != self.total:
            raise ValueError("the line amounts do not add up to the total")
        if len({line.line_no for line in self.lines}) != len(self.lines):
            raise ValueError("line_no must be unique within a receipt")
        if self.member_code and self.member_id:
            raise ValueError("give member_code or member_id, not both")
        return self


class AwardRead(BaseModel):
    line_no: int | None
    rule: str
    points: int
    rule_id: int | None = None
    rule_version: int | None = None
    reason: str | None = None


class PointsBlock(BaseModel):
    earned: int
    pending: int
    available_at: datetime | None = None
    expires_at: datetime | None = None
    breakdown: list[AwardRead]


class PurchaseResult(BaseModel):
    purchase_id: int | None
    receipt_no: str
    member_id: int | None
    points: PointsBlock
    balance: BalanceRead | None
    tier: str | None


class QuoteResult(BaseModel):
    member_id: int | None
    points: PointsBlock


class BatchIn(BaseModel):
    purchases: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class BatchItem(BaseModel):
    receipt_no: str | None
    status: Literal["created", "duplicate", "rejected"]
    purchase_id: int | None = None
    points: int | None = None
    error: str | None = None
    detail: Any = None


class BatchResult(BaseModel):
    results: list[BatchItem]


class ReturnLineIn(BaseModel):
    line_no: Annotated[int, Field(ge=1, le=10_000)]
    quantity: (
        Annotated[Decimal, Field(gt=0, le=1_000_000, max_digits=14, decimal_places=3)] | None
    ) = None
    amount: Annotated[int, Field(ge=1, le=10**13)] | None = None


class ReturnIn(BaseModel):
    return_no: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[\w./:#-]{1,64}$")
    ]
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)


class ReturnResult(BaseModel):
    return_id: int
    return_no: str
    amount: int
    points_reversed: int
    balance: BalanceRead


class ClaimReceiptIn(BaseModel):
    store_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)]
    receipt_no: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
    total: Money


# ---------------------------------------------------------------- points for the member


class ExpiringRead(BaseModel):
    points: int
    expires_at: datetime


class TierProgress(BaseModel):
    name: str | None
    code: str | None
    next: str | None
    next_code: str | None = None
    qualifying_spend: int
    next_min_spend: int | None
    progress: float = Field(description="0..1 towards the next tier (1 at the top tier)")
    manual_until: datetime | None = None


class PointsRead(BaseModel):
    available: int
    pending: int
    value: int = Field(description="What the available points are worth, minor units")
    currency: str
    expiring: list[ExpiringRead]
    tier: TierProgress


class LedgerEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    kind: str
    points: int
    remaining: int
    available_at: datetime | None
    expires_at: datetime | None
    source_type: str
    source_id: int | None
    store_id: int | None
    actor: str
    reason: str | None
    detail: dict[str, Any] | None
    created_at: datetime


class AdjustmentIn(BaseModel):
    points: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=255)]

    @field_validator("points")
    @classmethod
    def _nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("an adjustment moves at least one point")
        return value


# ---------------------------------------------------------------- redemptions, rewards, coupons


class RedemptionIn(BaseModel):
    member_code: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    points: Points
    receipt_no: Annotated[str, StringConstraints(max_length=64)] | None = None


class RedemptionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    member_id: int
    status: str
    points: int
    value: int
    receipt_no: str | None
    expires_at: datetime


class RedemptionSettledRead(BaseModel):
    id: int
    status: str
    points: int
    value: int
    balance: BalanceRead


class RewardCreate(BaseModel):
    name: Text
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    points_cost: Points
    value: Money | None = None
    stock: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    per_member_limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    valid_until: datetime | None = None
    coupon_days: Annotated[int, Field(ge=1, le=730)] = 30
    store_ids: list[Id] | None = Field(None, max_length=1000)


class RewardUpdate(BaseModel):
    name: Text | None = None
    description: Annotated[str, StringConstraints(max_length=500)] | None = None
    points_cost: Points | None = None
    stock: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    per_member_limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    valid_until: datetime | None = None
    active: bool | None = None
    value: Money | None = None
    coupon_days: Annotated[int, Field(ge=1, le=730)] | None = None
    store_ids: list[Id] | None = Field(None, max_length=1000)


class RewardRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    description: str
    points_cost: int
    value: int | None
    stock: int | None
    per_member_limit: int | None
    valid_until: datetime | None
    coupon_days: int
    store_ids: list[int] | None
    active: bool


class CouponRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    reward_id: int
    status: str
    points_spent: int
    expires_at: datetime
    redeemed_at: datetime | None


class CouponRedeemIn(BaseModel):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=4, max_length=32)]
    receipt_no: Annotated[str, StringConstraints(max_length=64)] | None = None


class CouponRedeemed(BaseModel):
    coupon: CouponRead
    reward: RewardRead
    member_id: int


class PurchaseRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    store_id: int
    receipt_no: str
    occurred_at: datetime
    currency: str
    total: int
    returned_total: int
    points: int
    points_reversed: int


class DateRange(BaseModel):
    start: date
    end: date
