"""Reusable input constraints for request schemas."""

from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator

MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID, description="A row id")]
Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:#-]{1,64}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
Points = Annotated[int, Field(ge=1, le=100_000_000)]
Money = Annotated[int, Field(ge=0, le=10**13, description="minor units")]


def _refuse_null(cls: type, value: Any) -> Any:
    if value is None:
        raise ValueError("leave the field out to keep it; it cannot be null")
    return value


def not_null(*fields: str) -> Any:
    """A validator for update schemas: these fields may be left out, but not sent as null."""
    return field_validator(*fields)(classmethod(_refuse_null))  # type: ignore[arg-type]
