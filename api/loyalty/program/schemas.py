from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from api.core.fields import Code, Id, Money, Points, Text, not_null
from api.core.schemas import RequestModel
from api.loyalty.program.rules import RuleKind

FuelGrade = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9#+\-]{1,16}$")]


class FuelBounds(RequestModel):
    """What a litre of this grade may cost (fen); a fuel line outside is refused."""

    min_price: Annotated[int, Field(ge=1, le=100_000)]
    max_price: Annotated[int, Field(ge=1, le=100_000)]

    @model_validator(mode="after")
    def _ordered(self) -> "FuelBounds":
        if self.max_price < self.min_price:
            raise ValueError("max_price must not be below min_price")
        return self


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
    fuel_grades: dict[str, FuelBounds]
    max_fuel_ml_per_line: int
    max_points_per_receipt: int
    version: int


class ProgramUpdate(RequestModel):
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
    fuel_grades: Annotated[dict[FuelGrade, FuelBounds], Field(max_length=50)] | None = None
    max_fuel_ml_per_line: Annotated[int, Field(ge=1_000, le=10_000_000)] | None = None
    max_points_per_receipt: Annotated[int, Field(ge=1, le=100_000_000)] | None = None

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
        "fuel_grades",
        "max_fuel_ml_per_line",
        "max_points_per_receipt",
    )


class Caps(RequestModel):
    day: Points | None = None
    week: Points | None = None
    month: Points | None = None
    year: Points | None = None


class RuleBase(RequestModel):
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


class RuleSet(RequestModel):
    rules: list[RuleCreate] = Field(max_length=500)


class TierIn(RequestModel):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    min_spend: Money
    multiplier_percent: Annotated[int, Field(ge=100, le=1000)] = 100


class TierRead(TierIn):
    model_config = ConfigDict(from_attributes=True)
    rank: int


class TierSet(RequestModel):
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
