import unicodedata
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    computed_field,
    field_validator,
)

from api.core import clock
from api.core.fields import Id
from api.core.schemas import RequestModel

Gender = Literal["female", "male", "other"]
PhoneIn = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)]
PlateIn = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=24)]


def _printable(value: str) -> str:
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise ValueError("a name may not contain control characters (newlines, tabs, escapes)")
    return value


NameIn = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
    AfterValidator(_printable),
]


class ConsentsIn(RequestModel):
    push: bool | None = None
    sms: bool | None = None
    email: bool | None = None


class ConsentRead(BaseModel):
    granted: bool
    updated_at: datetime
    source: str


def _check_birthday(value: date | None) -> date | None:
    if value is not None and not (date(1900, 1, 1) <= value <= clock.now().date()):
        raise ValueError("birthday must be between 1900-01-01 and today")
    return value


class MemberCreate(RequestModel):
    phone: PhoneIn
    name: NameIn | None = None
    birthday: date | None = None
    gender: Gender | None = None
    email: EmailStr | None = None
    consents: ConsentsIn | None = None
    plate: PlateIn | None = None
    home_store_id: Id | None = Field(None, description="Defaults to the enrolling terminal's store")

    _birthday = field_validator("birthday")(_check_birthday)


class MeUpdate(RequestModel):
    name: NameIn | None = None
    birthday: date | None = None
    gender: Gender | None = None
    email: EmailStr | None = None
    consents: ConsentsIn | None = None
    home_store_id: Id | None = None

    _birthday = field_validator("birthday")(_check_birthday)


class VehicleCreate(RequestModel):
    plate: PlateIn


class VehicleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    plate: str
    created_at: datetime
    verified_at: datetime | None = Field(None, exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verified(self) -> bool:
        """Confirmed at a till: only a verified plate identifies the member at a fuel till."""
        return self.verified_at is not None


class MemberRead(BaseModel):
    id: int
    card_number: str
    phone: str
    name: str | None
    gender: str | None
    birthday: date | None
    email: str | None
    home_store_id: int | None
    status: str
    enrolled_via: str
    created_at: datetime
    consents: dict[str, ConsentRead]
    vehicles: list[VehicleRead]


class MemberSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    card_number: str
    phone: str
    name: str | None
    home_store_id: int | None
    status: str


class TotpParams(BaseModel):
    secret: str
    period: int
    digits: int
    algorithm: str = "SHA1"


class CardRead(BaseModel):
    card_number: str
    code: str = Field(description="The current rotating QR payload: LY1.<card_number>.<totp>")
    expires_at: datetime
    totp: TotpParams
    payload_format: str = "LY1.{card_number}.{totp}"


class OtpRequest(RequestModel):
    phone: PhoneIn


class OtpSent(BaseModel):
    expires_in: int


class OtpVerify(RequestModel):
    phone: PhoneIn
    code: Annotated[str, StringConstraints(pattern=r"^\d{6}$")]


class MemberTokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
    member_id: int
    is_new: bool = False


class RefreshRequest(RequestModel):
    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=200)]
