"""Phone numbers (E.164), licence plates and how to show them in logs."""

import re
import unicodedata

import phonenumbers

from api.members.exceptions import InvalidPhone, InvalidPlate

_PLATE_SEPARATORS = re.compile(r"[\s·.\-_•・]+")
_PLATE_ALLOWED = re.compile(r"^[0-9A-Z\u4e00-\u9fff]{4,12}$")


def normalise_phone(raw: str, default_region: str) -> str:
    """E.164 form of a phone number written locally or internationally."""
    try:
        number = phonenumbers.parse(raw.strip(), default_region)
    except phonenumbers.NumberParseException as e:
        raise InvalidPhone(f"not a phone number: {e}") from e
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def looks_like_phone(raw: str) -> bool:
    digits = re.sub(r"[\s\-()]", "", raw)
    return digits.startswith("+") or (digits.isdigit() and 7 <= len(digits) <= 15)


def mask_phone(phone: str) -> str:
    """For logs: never the full number."""
    return phone[:4] + "****" + phone[-2:] if len(phone) > 6 else "****"


def normalise_plate(raw: str) -> str:
    """Upper-case, full-width folded, separators removed: '沪a·123 45' → '沪A12345'."""
    plate = unicodedata.normalize("NFKC", raw).upper()
    plate = _PLATE_SEPARATORS.sub("", plate)
    if not _PLATE_ALLOWED.match(plate):
        raise InvalidPlate("a plate has 4–12 letters, digits or province characters")
    return plate
