"""Turning submitted forms into service inputs, with errors keyed by form field."""

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError
from starlette.datastructures import ImmutableMultiDict

from admin.web import field_errors, parse_money


class Form:
    """Submitted values as typed, and the errors found while reading them."""

    def __init__(self, raw: Any = None) -> None:
        raw = raw if raw is not None else ImmutableMultiDict()
        self.values: dict[str, str] = {k: v for k, v in raw.items() if isinstance(v, str)}
        self.lists: dict[str, list[str]] = {
            k: [v for v in raw.getlist(k) if isinstance(v, str)] for k in raw
        }
        self.errors: dict[str, str] = {}

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default).strip()

    def text(self, name: str) -> str | None:
        return self.get(name) or None

    def money(self, name: str, currency: str) -> int | None:
        if not self.get(name):
            return None
        try:
            return parse_money(self.get(name), currency)
        except ValueError as e:
            self.errors[name] = str(e)
            return None

    def local_datetime(self, name: str, timezone: str) -> str | None:
        """A datetime-local field read in the programme's time zone, as ISO 8601 with offset."""
        if not self.get(name):
            return None
        try:
            local = datetime.fromisoformat(self.get(name))
        except ValueError:
            self.errors[name] = "pick a date and time"
            return None
        return local.replace(tzinfo=ZoneInfo(timezone)).isoformat()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.get(name) or "{}")
        except ValueError as e:
            self.errors[name] = f"not valid JSON: {e}"
            return None

    def ints(self, name: str) -> list[int]:
        return [int(v) for v in self.lists.get(name, []) if v.isdigit()]

    def checked(self, name: str, value: object) -> bool:
        return str(value) in self.lists.get(name, [])

    def validate(self, model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> Any:
        """The model, or None with the errors added (first error per field wins)."""
        try:
            return model.model_validate(data)
        except ValidationError as e:
            for key, message in field_errors(e, prefix).items():
                self.errors.setdefault(key, message)
            return None


def values_of(obj: Any, names: Iterable[str]) -> dict[str, str]:
    """An object's attributes as form values ('' for None)."""
    found = {}
    for name in names:
        value = getattr(obj, name, None)
        found[name] = "" if value is None else str(value)
    return found


def form_of(values: dict[str, Any], lists: dict[str, list[str]] | None = None) -> Form:
    """A Form holding saved values (to show an edit form before anything is submitted)."""
    pairs = [(k, str(v)) for k, v in values.items() if v is not None]
    pairs += [(k, v) for k, items in (lists or {}).items() for v in items]
    return Form(ImmutableMultiDict(pairs))
