"""Chart.js configurations built from service results; the page embeds them as JSON."""

from collections.abc import Sequence
from datetime import date
from typing import Any

from api.insights.schemas import AbcRead, KpisRead, LiabilityRead
from api.push.schemas import ReportRead

INDIGO, TEAL, AMBER, ROSE, SLATE = "#4f46e5", "#0d9488", "#f59e0b", "#e11d48", "#94a3b8"


def _legend_bottom() -> dict[str, Any]:
    return {"legend": {"position": "bottom"}}


def pareto(abc: AbcRead) -> dict[str, Any]:
    """Cumulative share of spend against cumulative share of members, classes A → C."""
    points = [{"x": 0, "y": 0}]
    members = spend = 0.0
    for cls in abc.classes:
        members += cls.member_share
        spend += cls.spend_share
        points.append({"x": round(members, 4), "y": round(spend, 4)})
    return {
        "type": "line",
        "data": {
            "datasets": [
                {
                    "label": "Share of spend",
                    "data": points,
                    "color": INDIGO,
                    "fill": True,
                    "tension": 0.25,
                    "pointRadius": 5,
                },
                {
                    "label": "Even spread",
                    "data": [{"x": 0, "y": 0}, {"x": 1, "y": 1}],
                    "color": SLATE,
                    "borderDash": [5, 5],
                    "pointRadius": 0,
                },
            ]
        },
        "options": {
            "parsing": True,
            "scales": {
                "x": {
                    "type": "linear",
                    "min": 0,
                    "max": 1,
                    "title": {"display": True, "text": "Members (cumulative, top spenders first)"},
                },
                "y": {"min": 0, "max": 1, "title": {"display": True, "text": "Spend (cumulative)"}},
            },
            "plugins": _legend_bottom(),
        },
        "format": {"x": "percent", "y": "percent"},
    }


def _month(value: date) -> str:
    return value.strftime("%b %Y")


def points_by_month(kpis: KpisRead) -> dict[str, Any]:
    """Points issued and redeemed per month, side by side."""
    return {
        "type": "bar",
        "data": {
            "labels": [_month(m.month) for m in kpis.points],
            "datasets": [
                {"label": "Issued", "data": [m.issued for m in kpis.points], "color": INDIGO},
                {"label": "Redeemed", "data": [m.redeemed for m in kpis.points], "color": TEAL},
            ],
        },
        "options": {"plugins": _legend_bottom(), "borderRadius": 4},
        "format": {"y": "number"},
    }


def liability(report: LiabilityRead) -> dict[str, Any]:
    """Outstanding and pending points value, and what expires within 30 / 60 / 90 days."""
    labels = ["Outstanding", "Pending", *(f"Expiring ≤{e.within_days} d" for e in report.expiring)]
    values = [
        report.outstanding_value,
        report.pending_value,
        *(e.value for e in report.expiring),
    ]
    colors = [INDIGO, SLATE, *([AMBER] * len(report.expiring))]
    return {
        "type": "bar",
        "data": {
            "labels": labels,
            "datasets": [
                {
                    "label": "Value",
                    "data": values,
                    "backgroundColor": colors,
                    "borderColor": colors,
                    "borderRadius": 6,
                }
            ],
        },
        "options": {"plugins": {"legend": {"display": False}}},
        "format": {"y": "money", "currency": report.currency},
    }


def member_day(kpis: KpisRead, currency: str) -> dict[str, Any]:
    """Sales per store-day on member days against the same weekdays that were not."""
    md = kpis.member_day
    return {
        "type": "bar",
        "data": {
            "labels": ["Member days", "Other days (same weekdays)"],
            "datasets": [
                {
                    "label": "Sales per store-day",
                    "data": [md.sales_per_member_day or 0, md.sales_per_base_day or 0],
                    "backgroundColor": [INDIGO, SLATE],
                    "borderColor": [INDIGO, SLATE],
                    "borderRadius": 6,
                }
            ],
        },
        "options": {"indexAxis": "y", "plugins": {"legend": {"display": False}}},
        "format": {"x": "money", "currency": currency},
    }


def funnel(report: ReportRead) -> dict[str, Any]:
    """Targeted → delivered to the inbox → pushed → read → converted."""
    suppressed = sum(report.suppressed.values())
    labels = [
        "Targeted",
        "Held out",
        "Suppressed",
        "Reached (inbox)",
        "Pushed",
        "Read",
        "Converted",
    ]
    values = [
        report.targeted,
        report.holdout.size,
        suppressed,
        report.treated,
        report.sent,
        report.read,
        report.converted,
    ]
    colors = [SLATE, "#cbd5e1", ROSE, INDIGO, "#6366f1", TEAL, "#059669"]
    return {
        "type": "bar",
        "data": {
            "labels": labels,
            "datasets": [
                {
                    "label": "Members",
                    "data": values,
                    "backgroundColor": colors,
                    "borderColor": colors,
                    "borderRadius": 6,
                }
            ],
        },
        "options": {"indexAxis": "y", "plugins": {"legend": {"display": False}}},
        "format": {"x": "number"},
    }


def conversions(
    days: Sequence[date], treated: Sequence[float], holdout: Sequence[float]
) -> dict[str, Any]:
    """Cumulative conversion rate by day, treated members against the holdout."""
    return {
        "type": "line",
        "data": {
            "labels": [d.strftime("%m-%d") for d in days],
            "datasets": [
                {
                    "label": "Received the campaign",
                    "data": list(treated),
                    "color": INDIGO,
                    "tension": 0.3,
                    "fill": True,
                },
                {
                    "label": "Holdout",
                    "data": list(holdout),
                    "color": AMBER,
                    "tension": 0.3,
                    "borderDash": [6, 4],
                },
            ],
        },
        "options": {"plugins": _legend_bottom(), "scales": {"y": {"min": 0}}},
        "format": {"y": "percent"},
    }
