"""Legacy member CSV files read row by row, with no database: normalised values or the
reasons a row cannot be imported (api.members.importer checks the rest against the members)."""

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from api.core.errors import InvalidInput
from api.members.exceptions import InvalidPhone, InvalidPlate
from api.members.identifiers import normalise_phone, normalise_plate
from api.members.schemas import ConsentsIn, MemberCreate

COLUMNS = (
    "phone",
    "name",
    "birthday",
    "gender",
    "email",
    "plate",
    "home_store_code",
    "consent_push",
    "consent_sms",
    "consent_email",
    "points",
)
MAX_ROWS = 200_000
MAX_POINTS = 10_000_000
_TRUE = {"1", "y", "yes", "true", "t", "是", "同意"}
_FALSE = {"", "0", "n", "no", "false", "f", "否", "不同意"}
_GENDER = {
    "f": "female",
    "female": "female",
    "w": "female",
    "女": "female",
    "m": "male",
    "male": "male",
    "男": "male",
    "other": "other",
    "o": "other",
    "其他": "other",
}
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d")


class InvalidImportFile(InvalidInput):
    """The file is not a member CSV this import understands."""


@dataclass
class ParsedRow:
    line_no: int
    phone: str | None
    data: dict[str, Any] | None = None
    errors: list[dict[str, str]] = field(default_factory=list)
    store_code: str | None = None
    plate: str | None = None

    def fail(self, field_name: str, message: str) -> None:
        self.errors.append({"field": field_name, "message": message})


def decode(raw: bytes) -> str:
    """Legacy exports come as UTF-8 (with or without BOM) or as GB18030 from Chinese systems."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InvalidImportFile("the file is neither UTF-8 nor GB18030 text")


def _flag(value: str, name: str, row: ParsedRow) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text not in _FALSE:
        row.fail(name, f"{value!r} is not yes/no (use 1/0, yes/no or true/false)")
    return False


def _birthday(value: str, row: ParsedRow) -> date | None:
    text = value.strip()
    if not text:
        return None
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    row.fail("birthday", f"{text!r} is not a date (use YYYY-MM-DD)")
    return None


def _points(value: str, row: ParsedRow) -> int:
    text = value.strip().replace(",", "")
    if not text:
        return 0
    if not text.isdigit() or int(text) > MAX_POINTS:
        row.fail("points", f"{value!r} is not a whole number of points from 0 to {MAX_POINTS}")
        return 0
    return int(text)


def parse_row(line_no: int, record: dict[str, str], region: str) -> ParsedRow:
    """One CSV record checked on its own (no database): normalised values or the errors."""
    value = {k: (record.get(k) or "").strip() for k in COLUMNS}
    row = ParsedRow(line_no=line_no, phone=value["phone"] or None)
    try:
        row.phone = normalise_phone(value["phone"], region) if value["phone"] else None
        if row.phone is None:
            row.fail("phone", "a phone number is required")
    except InvalidPhone:
        row.fail("phone", f"{value['phone']!r} is not a valid phone number")
    if value["plate"]:
        try:
            row.plate = normalise_plate(value["plate"])
        except InvalidPlate:
            row.fail("plate", f"{value['plate']!r} is not a licence plate")
    gender = _GENDER.get(value["gender"].lower()) if value["gender"] else None
    if value["gender"] and gender is None:
        row.fail("gender", f"{value['gender']!r} is not female, male or other")
    consents = {
        "push": _flag(value["consent_push"], "consent_push", row),
        "sms": _flag(value["consent_sms"], "consent_sms", row),
        "email": _flag(value["consent_email"], "consent_email", row),
    }
    birthday = _birthday(value["birthday"], row)
    points = _points(value["points"], row)
    row.store_code = value["home_store_code"] or None
    if row.errors or row.phone is None:
        return row
    try:
        member = MemberCreate(
            phone=row.phone,
            name=value["name"] or None,
            birthday=birthday,
            gender=gender,
            email=value["email"] or None,
            consents=ConsentsIn(**consents),
            plate=row.plate,
        )
    except ValidationError as e:
        for err in e.errors():
            row.fail(str(err["loc"][0]) if err["loc"] else "row", err["msg"])
        return row
    row.data = {**member.model_dump(mode="json", exclude_none=True), "points": points}
    return row


def parse(text: str, *, region: str) -> list[ParsedRow]:
    """Every data line of the file, checked alone and against earlier lines (phone, plate)."""
    reader = csv.DictReader(io.StringIO(text))
    headers = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "phone" not in headers:
        raise InvalidImportFile(
            f"the first line must name the columns, including phone (known: {', '.join(COLUMNS)})"
        )
    reader.fieldnames = headers
    rows: list[ParsedRow] = []
    first_phone: dict[str, int] = {}
    first_plate: dict[str, int] = {}
    for record in reader:
        if not any((v or "").strip() for k, v in record.items() if k is not None):
            continue  # a blank line
        if len(rows) >= MAX_ROWS:
            raise InvalidImportFile(f"at most {MAX_ROWS} rows per file; split it")
        row = parse_row(reader.line_num, record, region)
        if row.phone and row.phone in first_phone:
            row.fail("phone", f"the same phone as line {first_phone[row.phone]}")
            row.data = None
        elif row.phone:
            first_phone[row.phone] = row.line_no
        if row.plate and row.plate in first_plate:
            row.fail("plate", f"the same plate as line {first_plate[row.plate]}")
            row.data = None
        elif row.plate:
            first_plate[row.plate] = row.line_no
        rows.append(row)
    return rows
