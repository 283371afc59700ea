from datetime import datetime
from functools import lru_cache
from typing import Annotated
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

from api.core.fields import Id
from api.core.schemas import RequestModel
from api.org.models import Role, StoreKind

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _valid_zone(value: str) -> str:
    if value not in _zones():
        raise ValueError(f"unknown IANA time zone {value!r} (e.g. 'Asia/Shanghai')")
    return value


TimeZoneName = Annotated[str, AfterValidator(_valid_zone)]


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class RegionCreate(RequestModel):
    name: Name


class RegionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


class StoreCreate(RequestModel):
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    name: Name
    region_id: Id
    timezone: TimeZoneName
    kind: StoreKind


class StoreUpdate(RequestModel):
    name: Name | None = None
    timezone: TimeZoneName | None = None
    active: bool | None = None

    @field_validator("name", "timezone", "active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave the field out to keep it; it cannot be null")
        return value


class StoreRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    code: str
    name: str
    region_id: int
    timezone: str
    kind: StoreKind
    active: bool


class TerminalCreate(RequestModel):
    name: Name


class TerminalRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    store_id: int
    name: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


class TerminalCreated(TerminalRead):
    api_key: str = Field(description="Shown once; only its hash is stored.")


class StaffCreate(RequestModel):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=10, max_length=128)]
    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)] = ""
    role: Role
    region_id: Id | None = None
    store_id: Id | None = None


class StaffUpdate(BaseModel):
    """Only the fields given change; `active: false` ends the account's tokens and sessions."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, max_length=120)] | None = None
    role: Role | None = None
    region_id: Id | None = None
    store_id: Id | None = None
    active: bool | None = None

    @field_validator("name", "role", "active")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave the field out to keep it; it cannot be null")
        return value


class StaffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    name: str
    role: Role
    region_id: int | None
    store_id: int | None
    active: bool
