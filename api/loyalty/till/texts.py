"""What a cashier, a POS vendor or a shopper reads about receipts, kept in one place for
translation (zh_CN beside English; the API answers in English for now)."""

from typing import Literal

Locale = Literal["en", "zh_CN"]

TEXTS: dict[str, dict[Locale, str]] = {
    "fuel_needs_volume": {
        "en": "line {line_no}: a fuel line (fuel_grade {grade}) needs volume_ml",
        "zh_CN": "第{line_no}行：油品行（油品{grade}）必须提供 volume_ml（毫升）",
    },
    "fuel_needs_grade": {
        "en": "line {line_no}: volume_ml is only for fuel lines; give fuel_grade too",
        "zh_CN": "第{line_no}行：只有油品行可以提供 volume_ml，请同时提供 fuel_grade",
    },
    "fuel_amount_zero": {
        "en": "line {line_no}: a fuel line must have an amount above 0",
        "zh_CN": "第{line_no}行：油品行金额必须大于 0",
    },
    "fuel_price_out_of_bounds": {
        "en": (
            "line {line_no}: {price} fen per litre is not a plausible price for {grade}"
            " (allowed {min_price}–{max_price})"
        ),
        "zh_CN": (
            "第{line_no}行：{grade} 每升 {price} 分不是合理价格（允许 {min_price}–{max_price}）"
        ),
    },
    "fuel_too_many_litres": {
        "en": "line {line_no}: {volume_ml} ml is more than the {max_ml} ml allowed per fuel line",
        "zh_CN": "第{line_no}行：{volume_ml} 毫升超过每行允许的 {max_ml} 毫升",
    },
    "unknown_fuel_grade": {
        "en": "line {line_no}: unknown fuel grade {grade!r}; the grades known here are {known}",
        "zh_CN": "第{line_no}行：未知油品 {grade!r}；本站可用的油品为 {known}",
    },
    "points_cap": {
        "en": "this receipt would earn {points} points, above the {cap} allowed per receipt",
        "zh_CN": "此小票将获得 {points} 积分，超过每张小票上限 {cap} 积分",
    },
    "offline_code_too_old": {
        "en": (
            "a rotating code scanned offline is accepted for {hours} hours after occurred_at;"
            " identify this receipt by card number instead"
        ),
        "zh_CN": "离线扫描的动态码在交易时间后 {hours} 小时内有效；请改用会员卡号识别此小票",
    },
    "receipt_not_claimable": {
        "en": (
            "No unclaimed receipt matches this store, receipt number, total and claim code"
            " within the claim window."
        ),
        "zh_CN": "在补录期限内没有与此门店、小票号、金额和补录码相符的未补录小票。",
    },
    "claims_locked": {
        "en": "Too many failed receipt claims. Try again in {wait}.",
        "zh_CN": "补录小票失败次数过多。请在{wait}后重试。",
    },
    "reservation_open": {
        "en": (
            "receipt {receipt_no} already holds an open reservation of {points} points"
            " (redemption {redemption_id}); confirm or cancel it first"
        ),
        "zh_CN": (
            "小票 {receipt_no} 已有一笔 {points} 积分的未完成预留"
            "（兑换 {redemption_id}），请先确认或取消"
        ),
    },
    "plate_needs_rotating_code": {
        "en": "confirming a plate needs the member's rotating QR code (or its till token)",
        "zh_CN": "确认车牌需要会员的动态二维码（或其收银令牌）",
    },
    # the console till's receipt result
    "claim_code_label": {"en": "Claim code", "zh_CN": "补录码"},
    "claim_code_hint": {
        "en": (
            "Print it on the receipt: the shopper claims the points in the app with the store,"
            " receipt number, total and this code. It is shown only once."
        ),
        "zh_CN": (
            "请打印在小票上：顾客可在应用中凭门店、小票号、金额和此码补录积分。此码仅显示一次。"
        ),
    },
}

_UNITS: dict[Locale, tuple[str, str]] = {"en": ("minute", "minutes"), "zh_CN": ("分钟", "分钟")}


def wait_text(seconds: int, locale: Locale = "en") -> str:
    """90 → '2 minutes' (rounded up, at least one)."""
    minutes = max(1, -(-seconds // 60))
    one, many = _UNITS[locale]
    return f"{minutes}{' ' if locale == 'en' else ''}{one if minutes == 1 else many}"


def text(key: str, locale: Locale = "en", **values: object) -> str:
    """The text of `key` in `locale` (English when that locale lacks it), filled in."""
    entry = TEXTS[key]
    return (entry.get(locale) or entry["en"]).format(**values)
