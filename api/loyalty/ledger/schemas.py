from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from api.core.schemas import RequestModel


class BalanceRead(BaseModel):
    available: int
    pending: int


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


class AdjustmentIn(RequestModel):
    points: Annotated[int, Field(ge=-10_000_000, le=10_000_000)]
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=255)]

    @field_validator("points")
    @classmethod
    def _nonzero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("an adjustment moves at least one point")
        return value


class ManualTier(RequestModel):
    tier: str
    until: datetime
