from datetime import datetime
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

from api.core.fields import Id, Money, Points
from api.core.schemas import RequestModel
from api.loyalty.ledger.schemas import BalanceRead


class IdentifyRequest(RequestModel):
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


class LineIn(RequestModel):
    line_no: Annotated[int, Field(ge=1, le=10_000)]
    sku: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    category: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    quantity: Annotated[Decimal, Field(gt=0, le=1_000_000, max_digits=14, decimal_places=3)] = (
        Decimal(1)
    )
    amount: Money
    fuel_grade: Annotated[str, StringConstraints(max_length=16)] | None = None
    volume_ml: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class PurchaseIn(RequestModel):
    receipt_no: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^[\w./:#-]{1,64}$")
    ]
    occurred_at: datetime | None = None
    member_code: Annotated[str, StringConstraints(max_length=1024)] | None = None
    member_id: Id | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    total: Money
    lines: list[LineIn] = Field(min_length=1, max_length=500)
    plate: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, min_length=2, max_length=24),
            Field(description="The car at the pump: verifies the member's claim on it (fresh QR)"),
        ]
        | None
    ) = None

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
    claim_code: str | None = Field(
        None,
        description="Receipts without a member: print it; the shopper claims the points with it."
        " Only in this response (and its Idempotency-Key replay), never readable again",
    )


class PurchaseLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    line_no: int
    sku: str
    category: str
    quantity: Decimal
    amount: int
    fuel_grade: str | None
    volume_ml: int | None
    points: int
    returned_amount: int
    returned_quantity: Decimal
    points_reversed: int


class PurchaseRead(BaseModel):
    """A stored receipt, for a reprint (GET /v1/pos/purchases/{id})."""

    purchase_id: int
    receipt_no: str
    member_id: int | None
    occurred_at: datetime
    currency: str
    total: int
    returned_total: int
    points: int
    bonus_points: int
    points_reversed: int
    breakdown: list[AwardRead]
    lines: list[PurchaseLineRead]
    claimable: bool = Field(description="posted without a member, with a claim code, unclaimed")
    claimed_at: datetime | None
    created_at: datetime


class QuoteResult(BaseModel):
    member_id: int | None
    points: PointsBlock


class BatchIn(RequestModel):
    purchases: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class BatchItem(BaseModel):
    receipt_no: str | None
    status: Literal["created", "duplicate", "rejected"]
    purchase_id: int | None = None
    points: int | None = None
    claim_code: str | None = None
    error: str | None = None
    detail: Any = None


class BatchResult(BaseModel):
    results: list[BatchItem]


class ReturnLineIn(RequestModel):
    line_no: Annotated[int, Field(ge=1, le=10_000)]
    quantity: (
        Annotated[Decimal, Field(gt=0, le=1_000_000, max_digits=14, decimal_places=3)] | None
    ) = None
    amount: Annotated[int, Field(ge=1, le=10**13)] | None = None


class ReturnIn(RequestModel):
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


class ClaimReceiptIn(RequestModel):
    store_code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=32)]
    receipt_no: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
    total: Money
    claim_code: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=32),
        Field(description="The code printed on the receipt (case, spaces and dashes ignored)"),
    ]


class RedemptionIn(RequestModel):
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


class VehicleConfirmIn(RequestModel):
    member_code: Annotated[
        str,
        StringConstraints(min_length=1, max_length=1024),
        Field(description="The member's rotating QR payload, or its till token"),
    ]
    plate: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=24)]


class VehicleConfirmed(BaseModel):
    member_id: int
    plate: str
    verified: bool
    verified_at: datetime


class RedemptionSettledRead(BaseModel):
    id: int
    status: str
    points: int
    value: int
    balance: BalanceRead
