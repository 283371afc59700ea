"""Pydantic shapes of devices, the inbox, campaigns, previews, deliveries and reports."""

import enum
import re
from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from api.core.fields import Id
from api.core.schemas import RequestModel

PLACEHOLDERS = frozenset({"name", "points", "tier"})
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_LOCAL_TIME = r"^([01]\d|2[0-3]):[0-5]\d$"


class Kind(enum.StrEnum):
    one_off = "one_off"
    recurring = "recurring"
    birthday = "birthday"
    member_day = "member_day"
    lapsed = "lapsed"
    points_expiring = "points_expiring"
    welcome = "welcome"


# Transactional notices need no marketing consent for the inbox; their push still does.
TRANSACTIONAL_KINDS = frozenset({Kind.points_expiring})

# ----------------------------------------------------------------------------- devices, inbox


class DeviceIn(RequestModel):
    token: str = Field(min_length=1, max_length=512)
    platform: Literal["android", "ios", "web"]
    locale: str | None = Field(None, max_length=35)
    app_version: str | None = Field(None, max_length=40)


class DeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    token: str
    platform: str
    locale: str | None
    app_version: str | None
    active: bool
    created_at: datetime


class InboxItemRead(BaseModel):
    id: int
    campaign_id: int | None
    title: str
    body: str
    data: dict[str, Any] | None
    image_url: str | None
    created_at: datetime = Field(description="when it reached the inbox")
    expires_at: datetime | None = Field(description="offer valid until")
    expired: bool
    read_at: datetime | None


# ----------------------------------------------------------------------------- campaigns


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str | int) else value


class BoughtCategory(RequestModel):
    category: str = Field(min_length=1, max_length=64)
    within_days: int = Field(90, ge=1, le=3650)


class Audience(RequestModel):
    """Filters, all of which must hold; `{}` is every active member."""

    tiers: list[str] | None = Field(None, max_length=50)
    store_ids: list[Id] | None = Field(None, max_length=1000)
    region_ids: list[Id] | None = Field(None, max_length=1000)
    store_kind: Literal["supermarket", "fuel_station"] | None = None
    last_purchase_within_days: int | None = Field(None, ge=1, le=3650)
    last_purchase_before_days: int | None = Field(None, ge=1, le=3650)
    min_spend: int | None = Field(None, ge=0, le=10**13, description="12-month spend, minor units")
    max_spend: int | None = Field(None, ge=0, le=10**13, description="12-month spend, minor units")
    birthday_month: int | None = Field(None, ge=1, le=12)
    bought_category: BoughtCategory | None = None
    has_device: bool | None = None
    abc_class: Annotated[
        Annotated[list[Literal["A", "B", "C"]], Field(max_length=3)] | None,
        BeforeValidator(_as_list),
    ] = None
    rfm_segment: Annotated[
        Annotated[list[str], Field(max_length=20)] | None, BeforeValidator(_as_list)
    ] = None


class Message(RequestModel):
    title: str = Field(min_length=1, max_length=100)
    body: str = Field(min_length=1, max_length=1000)
    data: dict[str, str] | None = Field(None, description="deep-link data for the app")
    image_url: str | None = Field(None, max_length=500, pattern=r"^https?://")
    valid_days: int | None = Field(None, ge=1, le=365, description="offer expiry in the inbox")

    @field_validator("title", "body")
    @classmethod
    def _known_placeholders(cls, text: str) -> str:
        unknown = set(_PLACEHOLDER.findall(text)) - PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {sorted(unknown)}; use {{name}}, {{points}}, {{tier}}"
            )
        return text

    @field_validator("data")
    @classmethod
    def _small(cls, data: dict[str, str] | None) -> dict[str, str] | None:
        if data and (len(data) > 20 or sum(len(k) + len(v) for k, v in data.items()) > 2000):
            raise ValueError("at most 20 keys and 2000 characters of data")
        return data


class RewardSpec(RequestModel):
    """Given once to each recipient: points, or a coupon for a catalogue reward."""

    points: int | None = Field(None, ge=1, le=100_000)
    reward_id: Id | None = None

    @model_validator(mode="after")
    def _one(self) -> "RewardSpec":
        if (self.points is None) == (self.reward_id is None):
            raise ValueError("give either points or reward_id")
        return self


class OneOffSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: AwareDatetime


class RecurringSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rrule: str = Field(
        min_length=5, max_length=500, description="e.g. FREQ=WEEKLY;BYDAY=WE;BYHOUR=9"
    )
    timezone: str
    dtstart: datetime | None = Field(None, description="local, without offset")

    @model_validator(mode="after")
    def _parses(self) -> "RecurringSchedule":
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {self.timezone!r}") from e
        if self.dtstart is not None and self.dtstart.tzinfo is not None:
            raise ValueError("dtstart is a local time without an offset")
        try:
            rrulestr(self.rrule, dtstart=self.dtstart or datetime(2000, 1, 1))
        except (ValueError, TypeError) as e:
            raise ValueError(f"not an RFC 5545 RRULE: {e}") from e
        return self


class LocalTimeSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    local_time: str = Field(pattern=_LOCAL_TIME, description="HH:MM in the member's store zone")


class DailySchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    local_time: str = Field("10:00", pattern=_LOCAL_TIME, description="programme time zone")


class ExpiringSchedule(DailySchedule):
    days_before: int = Field(7, ge=1, le=90)


class WelcomeSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")


SCHEDULES: dict[Kind, type[BaseModel]] = {
    Kind.one_off: OneOffSchedule,
    Kind.recurring: RecurringSchedule,
    Kind.birthday: LocalTimeSchedule,
    Kind.member_day: LocalTimeSchedule,
    Kind.lapsed: DailySchedule,
    Kind.points_expiring: ExpiringSchedule,
    Kind.welcome: WelcomeSchedule,
}


def parse_schedule(kind: str, schedule: dict[str, Any]) -> Any:
    """The kind's schedule model (raises pydantic's ValidationError)."""
    return SCHEDULES[Kind(kind)].model_validate(schedule)


def schedule_problems(kind: str, schedule: dict[str, Any]) -> str | None:
    try:
        parse_schedule(kind, schedule)
    except ValidationError as e:
        return "; ".join(
            f"schedule.{'.'.join(str(p) for p in err['loc']) or '*'}: {err['msg']}"
            for err in e.errors()
        )
    return None


def local_time(text: str) -> time:
    return time.fromisoformat(text)


class CampaignCreate(RequestModel):
    name: str = Field(min_length=1, max_length=120)
    kind: Kind
    audience: Audience = Field(default_factory=Audience)
    schedule: dict[str, Any] = Field(default_factory=dict)
    message: Message
    reward: RewardSpec | None = None
    holdout_percent: int = Field(0, ge=0, le=90)

    @model_validator(mode="after")
    def _schedule_fits_kind(self) -> "CampaignCreate":
        problems = schedule_problems(self.kind, self.schedule)
        if problems:
            raise ValueError(problems)
        self.schedule = parse_schedule(self.kind, self.schedule).model_dump(mode="json")
        return self


class CampaignUpdate(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=120)
    audience: Audience | None = None
    schedule: dict[str, Any] | None = None
    message: Message | None = None
    reward: RewardSpec | None = None
    holdout_percent: int | None = Field(None, ge=0, le=90)


class CampaignRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: Kind
    status: str
    audience: dict[str, Any]
    schedule: dict[str, Any]
    message: dict[str, Any]
    reward: dict[str, Any] | None
    holdout_percent: int
    version: int
    scheduled_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SampleMember(BaseModel):
    member_id: int
    name: str | None
    tier: str | None
    home_store_id: int | None


class PreviewRead(BaseModel):
    audience_size: int = Field(description="members a run now would target")
    sample: list[SampleMember]
    suppressed: dict[str, int] = Field(description="of those, held back by reason")
    holdout_estimate: int


class TestSendIn(RequestModel):
    member_id: Id


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    run_id: int
    campaign_id: int
    member_id: int
    status: str
    reason: str | None
    is_test: bool
    not_before: datetime
    attempts: int
    sent_at: datetime | None
    created_at: datetime


class HoldoutRead(BaseModel):
    size: int
    converted: int


class ReportRead(BaseModel):
    targeted: int = Field(description="every member a run selected, holdout and suppressed too")
    suppressed: dict[str, int]
    sent: int = Field(description="pushes FCM accepted")
    failed: int
    read: int
    converted: int = Field(description="treated members who bought within the window")
    holdout: HoldoutRead
    lift: float | None = Field(description="treated conversion rate / holdout rate - 1")
    points_cost: int
    treated: int = Field(description="inbox deliveries (not held out, not suppressed)")
    pending: int = Field(description="treated, not yet sent (quiet hours, queue)")
    inbox_only: int
    no_transport: int
    no_device: int
    conversion_rate: float | None
    holdout_conversion_rate: float | None
    attribution_days: int
    runs: int
