"""What staff read about signing in, kept in one place for translation (zh_CN beside English;
the API and the console answer in English for now)."""

from typing import Literal

Locale = Literal["en", "zh_CN"]

TEXTS: dict[str, dict[Locale, str]] = {
    "bad_credentials": {
        "en": "Incorrect e-mail or password.",
        "zh_CN": "电子邮箱或密码不正确。",
    },
    "locked": {
        "en": "Too many failed sign-ins. For your security, try again in {wait}.",
        "zh_CN": "登录失败次数过多。为了您的账户安全，请在{wait}后重试。",
    },
    "signed_out": {"en": "You are signed out.", "zh_CN": "您已退出登录。"},
    "signed_out_everywhere": {
        "en": "You are signed out on every device.",
        "zh_CN": "您已在所有设备上退出登录。",
    },
}

_UNITS: dict[Locale, tuple[str, str, str, str]] = {
    "en": ("second", "seconds", "minute", "minutes"),
    "zh_CN": ("秒", "秒", "分钟", "分钟"),
}


def wait_text(seconds: int, locale: Locale = "en") -> str:
    """45 → '45 seconds', 60 → '1 minute', 61 → '2 minutes' (rounded up)."""
    one_s, many_s, one_m, many_m = _UNITS[locale]
    sep = " " if locale == "en" else ""
    if seconds < 60:
        return f"{seconds}{sep}{one_s if seconds == 1 else many_s}"
    minutes = -(-seconds // 60)
    return f"{minutes}{sep}{one_m if minutes == 1 else many_m}"


def text(key: str, locale: Locale = "en", **values: object) -> str:
    return TEXTS[key][locale].format(**values)
