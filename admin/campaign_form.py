"""The campaign form: its fields ↔ the push domain's CampaignCreate / CampaignUpdate shapes."""

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from admin.web import field_errors, major, parse_money
from api.core import clock
from api.insights.rfm import SEGMENTS
from api.loyalty.program import service as program_service
from api.loyalty.rewards import service as rewards_service
from api.org import service as org_service
from api.push.schemas import SCHEDULES, Audience, Kind, Message, RewardSpec

KIND_LABELS = {
    Kind.one_off: "One-off",
    Kind.recurring: "Recurring",
    Kind.member_day: "Member day",
    Kind.birthday: "Birthday",
    Kind.lapsed: "Win back lapsed",
    Kind.points_expiring: "Points expiring",
    Kind.welcome: "Welcome",
}
WEEKDAYS = (
    ("MO", "Monday"),
    ("TU", "Tuesday"),
    ("WE", "Wednesday"),
    ("TH", "Thursday"),
    ("FR", "Friday"),
    ("SA", "Saturday"),
    ("SU", "Sunday"),
)


@dataclass
class CampaignForm:
    """What the form holds (strings as typed), and the payload parsed from it."""

    values: dict[str, Any]
    lists: dict[str, list[str]]
    errors: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        return str(self.values.get(name) or default)

    def checked(self, name: str, value: object) -> bool:
        return str(value) in self.lists.get(name, [])


def _int(form: CampaignForm, name: str) -> int | None:
    text = form.get(name).strip()
    if not text:
        return None
    if not text.lstrip("-").isdigit():
        form.errors[name] = "a whole number"
        return None
    return int(text)


def _money(form: CampaignForm, name: str, currency: str) -> int | None:
    text = form.get(name).strip()
    if not text:
        return None
    try:
        return parse_money(text, currency)
    except ValueError as e:
        form.errors[name] = str(e)
        return None


def _audience(form: CampaignForm, currency: str) -> dict[str, Any]:
    a: dict[str, Any] = {
        "tiers": form.lists.get("audience.tiers") or None,
        "store_ids": [int(s) for s in form.lists.get("audience.store_ids", []) if s.isdigit()]
        or None,
        "store_kind": form.get("audience.store_kind") or None,
        "last_purchase_within_days": _int(form, "audience.last_purchase_within_days"),
        "last_purchase_before_days": _int(form, "audience.last_purchase_before_days"),
        "min_spend": _money(form, "audience.min_spend", currency),
        "max_spend": _money(form, "audience.max_spend", currency),
        "birthday_month": _int(form, "audience.birthday_month"),
        "abc_class": form.lists.get("audience.abc_class") or None,
        "rfm_segment": form.lists.get("audience.rfm_segment") or None,
    }
    device = form.get("audience.has_device")
    a["has_device"] = {"yes": True, "no": False}.get(device)
    category = form.get("audience.bought_category").strip()
    if category:
        a["bought_category"] = {
            "category": category,
            "within_days": _int(form, "audience.bought_within_days") or 90,
        }
    return {k: v for k, v in a.items() if v is not None}


def _rrule(form: CampaignForm) -> str:
    raw = form.get("schedule.rrule").strip()
    if raw:
        return raw
    hour, _, minute = (form.get("schedule.time") or "09:00").partition(":")
    if form.get("schedule.freq", "WEEKLY") == "MONTHLY":
        day = _int(form, "schedule.monthday") or 1
        return f"FREQ=MONTHLY;BYMONTHDAY={day};BYHOUR={int(hour)};BYMINUTE={int(minute or 0)}"
    weekday = form.get("schedule.weekday", "WE")
    return f"FREQ=WEEKLY;BYDAY={weekday};BYHOUR={int(hour)};BYMINUTE={int(minute or 0)}"


def _schedule(form: CampaignForm, kind: str, timezone: str) -> dict[str, Any]:
    if kind == Kind.one_off:
        text = form.get("schedule.at")
        try:
            local = datetime.fromisoformat(text)
        except ValueError:
            form.errors["schedule.at"] = "pick a date and time"
            return {}
        return {"at": local.replace(tzinfo=ZoneInfo(timezone)).isoformat()}
    if kind == Kind.recurring:
        return {"rrule": _rrule(form), "timezone": form.get("schedule.timezone") or timezone}
    if kind in (Kind.birthday, Kind.member_day, Kind.lapsed):
        return {"local_time": form.get("schedule.local_time") or "09:00"}
    if kind == Kind.points_expiring:
        return {
            "local_time": form.get("schedule.local_time") or "10:00",
            "days_before": _int(form, "schedule.days_before") or 7,
        }
    return {}


def _check(form: CampaignForm, model: Any, data: Any, prefix: str) -> None:
    try:
        model.model_validate(data)
    except ValidationError as e:
        for key, message in field_errors(e, prefix).items():
            form.errors.setdefault(key, message)


def parse(raw: Any, *, kind: str, currency: str, timezone: str) -> CampaignForm:
    """Read the submitted form; `payload` is a CampaignCreate body, `errors` per field."""
    values = {k: v for k, v in raw.items() if isinstance(v, str)}
    lists = {k: [v for v in raw.getlist(k) if isinstance(v, str)] for k in raw}
    form = CampaignForm(values, lists)
    audience = _audience(form, currency)
    schedule = _schedule(form, kind, timezone)
    message: dict[str, Any] = {"title": form.get("message.title"), "body": form.get("message.body")}
    if valid_days := _int(form, "message.valid_days"):
        message["valid_days"] = valid_days
    reward: dict[str, Any] | None = None
    if form.get("reward.type") == "points":
        reward = {"points": _int(form, "reward.points")}
    elif form.get("reward.type") == "coupon":
        reward = {"reward_id": _int(form, "reward.reward_id")}
    holdout = _int(form, "holdout_percent") or 0
    _check(form, Audience, audience, "audience.")
    _check(form, Message, message, "message.")
    if reward is not None:
        _check(form, RewardSpec, reward, "reward.")
    if kind in SCHEDULES and schedule is not None:
        _check(form, SCHEDULES[Kind(kind)], schedule, "schedule.")
    if not form.get("name").strip():
        form.errors["name"] = "give the campaign a name"
    if not 0 <= holdout <= 90:
        form.errors["holdout_percent"] = "0 to 90 percent"
    form.payload = {
        "name": form.get("name").strip(),
        "kind": kind,
        "audience": audience,
        "schedule": schedule,
        "message": message,
        "reward": reward,
        "holdout_percent": holdout,
    }
    return form


def from_campaign(campaign: Any, *, currency: str, timezone: str) -> CampaignForm:
    """A saved campaign as form values (for the edit page)."""
    a, s, m = campaign.audience or {}, campaign.schedule or {}, campaign.message or {}
    values: dict[str, Any] = {
        "name": campaign.name,
        "message.title": m.get("title", ""),
        "message.body": m.get("body", ""),
        "message.valid_days": m.get("valid_days", ""),
        "holdout_percent": campaign.holdout_percent,
        "audience.store_kind": a.get("store_kind", ""),
        "audience.last_purchase_within_days": a.get("last_purchase_within_days", ""),
        "audience.last_purchase_before_days": a.get("last_purchase_before_days", ""),
        "audience.min_spend": major(a.get("min_spend"), currency),
        "audience.max_spend": major(a.get("max_spend"), currency),
        "audience.birthday_month": a.get("birthday_month", ""),
        "audience.has_device": {True: "yes", False: "no"}.get(a.get("has_device"), ""),
        "audience.bought_category": (a.get("bought_category") or {}).get("category", ""),
        "audience.bought_within_days": (a.get("bought_category") or {}).get("within_days", ""),
        "schedule.local_time": s.get("local_time", ""),
        "schedule.days_before": s.get("days_before", ""),
        "schedule.rrule": s.get("rrule", ""),
        "schedule.timezone": s.get("timezone", timezone),
    }
    if s.get("at"):
        at = datetime.fromisoformat(s["at"]).astimezone(ZoneInfo(timezone))
        values["schedule.at"] = at.strftime("%Y-%m-%dT%H:%M")
    reward = campaign.reward or {}
    if reward.get("points"):
        values |= {"reward.type": "points", "reward.points": reward["points"]}
    elif reward.get("reward_id"):
        values |= {"reward.type": "coupon", "reward.reward_id": reward["reward_id"]}
    lists = {
        "audience.tiers": [str(t) for t in a.get("tiers") or []],
        "audience.store_ids": [str(t) for t in a.get("store_ids") or []],
        "audience.abc_class": list(a.get("abc_class") or []),
        "audience.rfm_segment": list(a.get("rfm_segment") or []),
    }
    return CampaignForm(values, lists)


def schedule_text(kind: str, schedule: dict[str, Any], timezone: str) -> str:
    """A one-line description of when a campaign sends."""
    if kind == Kind.one_off and schedule.get("at"):
        at = datetime.fromisoformat(schedule["at"]).astimezone(ZoneInfo(timezone))
        return f"Once, {at:%Y-%m-%d %H:%M}"
    if kind == Kind.recurring:
        return f"{schedule.get('rrule', '')} ({schedule.get('timezone', '')})"
    if kind == Kind.birthday:
        return f"On each member's birthday at {schedule.get('local_time', '')}"
    if kind == Kind.member_day:
        return f"Every member day at {schedule.get('local_time', '')}"
    if kind == Kind.points_expiring:
        return f"{schedule.get('days_before', 7)} days before points expire"
    if kind == Kind.lapsed:
        return f"Daily at {schedule.get('local_time', '')} to newly lapsed members"
    return "When a member joins"


async def choices(db: AsyncSession) -> dict[str, Any]:
    """What the form's selects and checkboxes offer."""
    rewards = await rewards_service.list_rewards(db, offered_only=True)
    return {
        "months": [("", "Any"), *((str(m), calendar.month_name[m]) for m in range(1, 13))],
        "reward_options": [
            ("", "—"),
            *((str(r.id), f"{r.name} ({r.points_cost} pts)") for r in rewards),
        ],
        "kinds": KIND_LABELS,
        "weekdays": WEEKDAYS,
        "tiers": await program_service.list_tiers(db),
        "stores": await org_service.list_stores(db),
        "segments": SEGMENTS,
    }


def blank(timezone: str) -> CampaignForm:
    """A new campaign's form: tomorrow 10:00, 10% holdout."""
    tomorrow = clock.now().astimezone(ZoneInfo(timezone)) + timedelta(days=1)
    values = {
        "schedule.at": tomorrow.replace(hour=10, minute=0).strftime("%Y-%m-%dT%H:%M"),
        "schedule.local_time": "09:00",
        "schedule.timezone": timezone,
        "holdout_percent": "10",
    }
    return CampaignForm(values, {})
