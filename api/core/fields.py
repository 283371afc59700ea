"""Reusable input constraints for request schemas."""

from typing import Annotated, Any

from pydantic import Field, field_validator

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID, description="A row id")]


def _refuse_null(cls: type, value: Any) -> Any:
    if value is None:
        raise ValueError("leave the field out to keep it; it cannot be null")
    return value


def not_null(*fields: str) -> Any:
    """A validator for update schemas: these fields may be left out, but not sent as null."""
    return field_validator(*fields)(classmethod(_refuse_null))  # type: ignore[arg-type]
