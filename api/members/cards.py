"""Card numbers (random, Luhn) and the rotating QR payload (per-member TOTP, RFC 6238).

Payload format shown in the QR code: ``LY1.<card_number>.<code>`` where ``code`` is the
member's current TOTP (SHA-1, ``totp_digits`` digits, ``totp_period`` seconds). The app can
compute it offline from the secret in ``GET /v1/me/card``.
"""

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp

PAYLOAD_PREFIX = "LY1"
# ASCII only: str.isdigit() also accepts "²" or "١", which int() or compare_digest reject.
_DIGITS = re.compile(r"[0-9]+")
_CARD_SEPARATORS = re.compile(r"[\s-]+")


def _all_digits(value: str) -> bool:
    return _DIGITS.fullmatch(value) is not None


def luhn_check_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return _all_digits(number) and len(number) > 1 and luhn_check_digit(number[:-1]) == number[-1]


def new_card_number(prefix: str, length: int) -> str:
    """A random card number: prefix, random digits, Luhn check digit."""
    body_len = length - len(prefix) - 1
    body = "".join(str(secrets.randbelow(10)) for _ in range(body_len))
    number = prefix + body
    return number + luhn_check_digit(number)


def is_card_number(value: str, prefix: str, length: int) -> bool:
    return len(value) == length and value.startswith(prefix) and luhn_valid(value)


def compact_card_number(value: str) -> str:
    """A card number as typed from the printed card: '8860 1234-5678 9012' → '8860123456789012'."""
    return _CARD_SEPARATORS.sub("", value)


def new_totp_secret() -> str:
    return pyotp.random_base32(32)


def _totp(secret: str, period: int, digits: int) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=digits, interval=period)


def current_code(secret: str, at: datetime, *, period: int, digits: int) -> str:
    return _totp(secret, period, digits).at(at)


def payload(card_number: str, code: str) -> str:
    return f"{PAYLOAD_PREFIX}.{card_number}.{code}"


@dataclass(frozen=True)
class ParsedPayload:
    card_number: str
    code: str


def parse_payload(value: str) -> ParsedPayload | None:
    parts = value.strip().split(".")
    if len(parts) != 3 or parts[0] != PAYLOAD_PREFIX:
        return None
    if not (_all_digits(parts[1]) and _all_digits(parts[2])):
        return None
    return ParsedPayload(card_number=parts[1], code=parts[2])


def step_of(at: datetime, period: int) -> int:
    return int(at.timestamp()) // period


def matching_step(
    secret: str, code: str, at: datetime, *, period: int, digits: int, back: int, forward: int
) -> int | None:
    """The time step in [now-back, now+forward] whose code equals `code`, if any."""
    if len(code) != digits:
        return None
    totp = _totp(secret, period, digits)
    now_step = step_of(at, period)
    for step in range(now_step + forward, now_step - back - 1, -1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None
