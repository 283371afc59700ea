from datetime import datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from api.core.fields import Id, Money, Points, Text
from api.core.schemas import RequestModel


class RewardCreate(RequestModel):
    name: Text
    description: Annotated[str, StringConstraints(max_length=500)] = ""
    points_cost: Points
    value: Money | None = None
    stock: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    per_member_limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    valid_until: datetime | None = None
    coupon_days: Annotated[int, Field(ge=1, le=730)] = 30
    store_ids: list[Id] | None = Field(None, max_length=1000)


class RewardUpdate(RequestModel):
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


class CouponRedeemIn(RequestModel):
    code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=4, max_length=32)]
    receipt_no: Annotated[str, StringConstraints(max_length=64)] | None = None


class CouponRedeemed(BaseModel):
    coupon: CouponRead
    reward: RewardRead
    member_id: int
