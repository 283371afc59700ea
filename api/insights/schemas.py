"""Insight responses (amounts in minor units, points as integers, shares as 0–1 fractions)."""

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from api.core.fields import Id, not_null
from api.core.schemas import RequestModel
from api.insights.audience import is_lapsed_definition


class SettingsRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    abc_a_percent: int
    abc_b_percent: int
    lapse_grace_days: int
    churn_days: int
    portfolio_size: int
    updated_at: datetime

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lapse_definition(self) -> str:
        return is_lapsed_definition(self.lapse_grace_days)


class SettingsUpdate(RequestModel):
    abc_a_percent: int | None = Field(None, ge=1, le=98, description="A: top % of spend")
    abc_b_percent: int | None = Field(None, ge=2, le=99, description="A+B: top % of spend")
    lapse_grace_days: int | None = Field(None, ge=0, le=365)
    churn_days: int | None = Field(None, ge=7, le=730)
    portfolio_size: int | None = Field(None, ge=1, le=1000)

    _not_null = not_null(
        "abc_a_percent", "abc_b_percent", "lapse_grace_days", "churn_days", "portfolio_size"
    )


class RefreshRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    counts: dict[str, int] | None


class Computed(BaseModel):
    computed_at: datetime | None = Field(None, description="When the figures were refreshed")


class AbcClassRead(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    class_: Literal["A", "B", "C"] = Field(alias="class")
    members: int
    member_share: float
    spend: int
    spend_share: float


class AbcRead(Computed):
    classes: list[AbcClassRead]
    movement: dict[str, int] = Field(description='Members per move, e.g. {"A->B": 3}')
    movement_since: date | None = Field(None, description="The month compared with")
    members: int
    spend: int


class SegmentRead(BaseModel):
    segment: str
    members: int
    member_share: float
    spend: int


class ScoreRead(BaseModel):
    score: int
    recency: int
    frequency: int
    monetary: int


class RfmRead(Computed):
    members: int
    segments: list[SegmentRead]
    scores: list[ScoreRead]


class LapsedItem(BaseModel):
    alert_id: int
    member_id: int
    name: str | None
    home_store_id: int | None
    days_since_last: int | None
    usual_interval_days: Decimal
    last_purchase_at: datetime
    opened_at: datetime
    status: str
    assigned_staff_id: int | None
    assigned_by: str | None
    outcome: str | None
    outcome_reason: str | None
    outcome_at: datetime | None


class AssignIn(RequestModel):
    staff_id: Id


class OutcomeIn(RequestModel):
    outcome: Literal["reached", "not_reached"]
    reason: str | None = Field(None, max_length=255)


class PortfolioItem(BaseModel):
    member_id: int
    name: str | None
    home_store_id: int | None
    abc_class: str | None
    rfm_segment: str | None
    last_purchase_at: datetime | None
    days_since_last: int | None
    usual_interval_days: Decimal | None
    lapsed: bool
    open_alert_id: int | None


class PortfolioRead(BaseModel):
    staff_id: int
    capacity: int
    items: list[PortfolioItem]


class PortfolioAssignIn(RequestModel):
    staff_id: Id
    member_id: Id


class ChurnMonth(BaseModel):
    month: date
    active_at_start: int
    churned: int
    churn_rate: float | None
    partial: bool = Field(description="The current month, counted up to now")


class CohortMonth(BaseModel):
    month_offset: int
    members: int
    share: float | None


class Cohort(BaseModel):
    cohort: date = Field(description="Enrolment month")
    members: int
    retention: list[CohortMonth]


class ChurnRead(Computed):
    churn_days: int
    churned_members: int
    active_members: int
    monthly: list[ChurnMonth]
    cohorts: list[Cohort]


class ExpiringRead(BaseModel):
    within_days: int
    points: int
    value: int


class BreakageRead(BaseModel):
    expired_points: int
    earned_points: int
    rate: float | None


class LiabilityRead(Computed):
    currency: str
    outstanding_points: int
    outstanding_value: int = Field(description="Minor units at the programme's point value")
    pending_points: int
    pending_value: int
    expiring: list[ExpiringRead]
    breakage: BreakageRead


class MemberDayRead(BaseModel):
    member_days: int = Field(description="Store-days that were member days (last 26 weeks)")
    base_days: int = Field(description="Store-days on the same weekdays that were not")
    sales_per_member_day: int | None
    sales_per_base_day: int | None
    uplift: float | None = Field(description="Member-day sales per day ÷ base − 1")
    member_sales_uplift: float | None = Field(description="The same, for member sales only")


class PointsMonth(BaseModel):
    month: date
    issued: int
    redeemed: int


class KpisRead(Computed):
    members: int
    active_30d: int
    active_90d: int
    sales: int = Field(description="All sales, trailing 12 months, net of returns")
    member_sales: int
    member_share: float | None = Field(description="Member sales ÷ all sales, by amount")
    repeat_rate: float | None = Field(description="Buyers with 2+ purchases ÷ buyers (12 months)")
    average_basket_member: int | None
    average_basket_non_member: int | None
    member_day: MemberDayRead
    points: list[PointsMonth]
