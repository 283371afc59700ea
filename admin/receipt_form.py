"""The till's receipt form (lines typed by the cashier) read into a PurchaseIn."""

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from admin.web import Page, field_errors
from api.loyalty.till.schemas import PurchaseIn

FUEL_GRADES = ("92#", "95#", "98#", "0# diesel")


def _decimal(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() and value > 0 else None


def _receipt(page: Page, form: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The receipt form as a PurchaseIn payload, or the field errors."""
    errors: dict[str, str] = {}
    lines = []
    indexes = sorted({int(k.split("-")[1]) for k in form if k.startswith("lines-")})
    for number, i in enumerate(indexes, start=1):
        get = lambda name, i=i: str(form.get(f"lines-{i}-{name}", "")).strip()  # noqa: E731
        if not get("amount") and not get("litres") and not get("category"):
            continue
        try:
            amount = page.parse_money(get("amount") or "0")
        except ValueError as e:
            errors[f"lines-{i}-amount"] = str(e)
            amount = 0
        line: dict[str, Any] = {"line_no": number, "amount": amount}
        if get("type") == "fuel":
            litres = _decimal(get("litres"))
            if litres is None:
                errors[f"lines-{i}-litres"] = "litres, e.g. 40.5"
            grade = get("fuel_grade") or FUEL_GRADES[0]
            line |= {
                "category": "fuel",
                "sku": f"FUEL-{grade}".replace(" ", "")[:64],
                "fuel_grade": grade,
                "volume_ml": int((litres or 0) * 1000),
            }
        else:
            category = get("category") or "grocery"
            quantity = _decimal(get("quantity") or "1")
            if quantity is None:
                errors[f"lines-{i}-quantity"] = "a quantity above 0"
            line |= {
                "category": category,
                "sku": get("sku") or category.upper()[:64],
                "quantity": str(quantity or 1),
            }
        lines.append(line)
    if not lines:
        errors["lines"] = "add at least one line"
    try:
        total = page.parse_money(str(form.get("total", "")) or "0")
    except ValueError as e:
        errors["total"] = str(e)
        total = 0
    body = {
        "receipt_no": str(form.get("receipt_no", "")).strip(),
        "member_code": str(form.get("till_token", "")) or None,
        "currency": page.currency,
        "total": total,
        "lines": lines,
    }
    return body, errors


async def read(page: Page, form: Any) -> tuple[PurchaseIn | None, dict[str, str]]:
    body, errors = _receipt(page, form)
    if errors:
        return None, errors
    try:
        return PurchaseIn.model_validate(body), {}
    except ValidationError as e:
        found = field_errors(e)
        return None, {k.replace("lines.", "lines-").replace(".", "-"): v for k, v in found.items()}
