"""Settings from the environment (prefix LOYALTY_)."""

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "development-only-secret-change-me"
_TEST_PHONE_CODE = re.compile(r"^\+\d{6,15}\s*:\s*\d{6}$")


class InsecureSecretError(ValueError):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./loyalty.db"
    secret_key: str = DEV_SECRET
    log_level: str = "INFO"

    bootstrap_admin_email: str | None = None
    bootstrap_admin_password: str | None = None

    default_phone_region: str = "CN"
    test_phone_codes: str = ""

    firebase_credentials: str | None = None
    fcm_url: str | None = Field(None, description="test only: base URL of a loopback fake FCM")
    push_send_rate: float = Field(5000.0, gt=0, le=10_000, description="messages/s per process")
    push_batch_size: int = Field(500, ge=1, le=500)
    push_max_retries: int = Field(5, ge=0, le=20)
    push_backoff_base_seconds: float = Field(0.5, ge=0)
    push_backoff_max_seconds: float = Field(30.0, ge=0)
    push_lease_seconds: int = Field(300, ge=5)
    push_quiet_hours: str = Field("21:00-08:00", pattern=r"^(\d{2}:\d{2}-\d{2}:\d{2})?$")
    push_frequency_cap: int = Field(3, ge=0, description="marketing pushes per member per 7 days")
    push_attribution_days: int = Field(7, ge=1, le=90)
    push_catch_up_hours: int = Field(6, ge=1, le=72)
    push_welcome_minutes: int = Field(15, ge=1, le=1440)

    staff_token_minutes: int = Field(60, ge=1)
    member_token_minutes: int = Field(15, ge=1)
    refresh_token_days: int = Field(60, ge=1)

    otp_ttl_seconds: int = Field(300, ge=30)
    otp_max_attempts: int = Field(5, ge=1)
    otp_resend_seconds: int = Field(60, ge=0)
    otp_per_phone_per_hour: int = Field(5, ge=1)
    otp_per_ip_per_hour: int = Field(20, ge=1)
    sms_webhook_url: str | None = None
    sms_webhook_token: str | None = None

    card_prefix: str = Field("8860", pattern=r"^\d{0,8}$")
    card_length: int = Field(16, ge=10, le=19)
    totp_period: int = Field(30, ge=15, le=120)
    totp_digits: int = Field(8, ge=6, le=10)
    till_token_seconds: int = Field(300, ge=30)
    identify_failures_per_minute: int = Field(10, ge=1)

    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="request body limit (413)")
    max_batch_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="offline batches")
    max_upload_bytes: int = Field(24 * 1024 * 1024, ge=1024, description="console file uploads")

    demo_history_days: int = Field(365, ge=0, le=730)

    worker_in_process: bool | None = None
    worker_interval_seconds: float = Field(5.0, gt=0)

    @field_validator("test_phone_codes")
    @classmethod
    def _check_test_phone_codes(cls, value: str) -> str:
        for item in filter(None, (i.strip() for i in value.split(","))):
            if not _TEST_PHONE_CODE.match(item):
                raise ValueError(
                    f"LOYALTY_TEST_PHONE_CODES entry {item!r} is not '+<E.164 phone>:<6 digits>'"
                )
        return value

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> "Settings":
        if self.env != "development" and (
            self.secret_key == DEV_SECRET or len(self.secret_key) < 32
        ):
            raise InsecureSecretError(
                "LOYALTY_SECRET_KEY must be set to a random value of at least 32 characters "
                f"when LOYALTY_ENV={self.env} (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)"
            )
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def run_worker_in_process(self) -> bool:
        return self.is_sqlite if self.worker_in_process is None else self.worker_in_process

    @property
    def test_phone_code_map(self) -> dict[str, str]:
        """Parse `+8613800000000:123456,+86...:654321` into {phone: code}."""
        pairs = {}
        for item in self.test_phone_codes.split(","):
            item = item.strip()
            if not item:
                continue
            phone, _, code = item.partition(":")
            pairs[phone.strip()] = code.strip()
        return pairs


@lru_cache
def get_settings() -> Settings:
    return Settings()
