"""Settings from the environment (prefix LOYALTY_)."""

import ipaddress
import math
import re
from collections import Counter
from functools import lru_cache
from typing import Literal

from pydantic import Field, computed_field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "development-only-secret-change-me"
_TEST_PHONE_CODE = re.compile(r"^\+\d{6,15}\s*:\s*\d{6}$")

# What a secret must have outside development (see secret_problem and docs/security-auth.md).
SECRET_MIN_LENGTH = 32
SECRET_MIN_DISTINCT = 10
SECRET_MIN_BITS = 128
# Words that mark a value copied from documentation, compared without case or punctuation.
_PLACEHOLDER_MARKERS = (
    "changeme",
    "replaceme",
    "placeholder",
    "yoursecret",
    "secrethere",
    "example",
    "developmentonly",
)
# The test suite's secret (tests/conftest.py): fine for `test`, never for production.
_TEST_SUITE_SECRET_PREFIX = "test-secret-key"
GENERATE_SECRET = "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"


class InsecureSecretError(ValueError):
    pass


def estimated_bits(secret: str) -> float:
    """Length × the Shannon entropy of the secret's own character frequencies (an upper bound
    on what a guesser faces for a random string, far too generous for words)."""
    if not secret:
        return 0.0
    n = len(secret)
    per_char = -sum(c / n * math.log2(c / n) for c in Counter(secret).values())
    return per_char * n


def secret_problem(secret: str, *, env: str = "production") -> str | None:
    """Why `secret` may not sign tokens outside development, or None when it may."""
    folded = re.sub(r"[^a-z0-9]", "", secret.lower())
    if secret == DEV_SECRET:
        return "it is the development default"
    if any(marker in folded for marker in _PLACEHOLDER_MARKERS):
        return "it is a placeholder from the documentation"
    if env == "production" and secret.startswith(_TEST_SUITE_SECRET_PREFIX):
        return "it is the test suite's secret"
    if len(secret) < SECRET_MIN_LENGTH:
        return f"it is shorter than {SECRET_MIN_LENGTH} characters"
    if len(set(secret)) < SECRET_MIN_DISTINCT:
        return f"it has fewer than {SECRET_MIN_DISTINCT} different characters"
    if estimated_bits(secret) < SECRET_MIN_BITS:
        return f"it has less than an estimated {SECRET_MIN_BITS} bits of entropy"
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address) only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOYALTY_",
        env_file=".env",
        extra="ignore",
        hide_input_in_errors=True,  # a refused start-up must not print the secrets it read
    )

    env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./loyalty.db"
    secret_key: str = DEV_SECRET
    log_level: str = "INFO"

    bootstrap_admin_email: str | None = None
    bootstrap_admin_password: str | None = None

    default_phone_region: str = "CN"
    test_phone_codes: str = ""
    allow_test_phone_codes: bool = False

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
    refresh_grace_seconds: int = Field(30, ge=0, le=300)

    signin_failures_per_account: int = Field(5, ge=1)
    signin_failures_per_ip: int = Field(20, ge=1)
    signin_lockout_seconds: int = Field(60, ge=1)
    signin_lockout_max_seconds: int = Field(3600, ge=1)
    signin_forget_hours: int = Field(24, ge=1)

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
        if self.env == "development":
            return self
        problem = secret_problem(self.secret_key, env=self.env)
        if problem:
            raise InsecureSecretError(
                f"LOYALTY_SECRET_KEY is refused when LOYALTY_ENV={self.env}: {problem}. It must "
                f"be random: at least {SECRET_MIN_LENGTH} characters, {SECRET_MIN_DISTINCT} "
                f"different ones and an estimated {SECRET_MIN_BITS} bits; generate one with "
                f"`{GENERATE_SECRET}`"
            )
        return self

    @model_validator(mode="after")
    def _refuse_test_phones_in_production(self) -> "Settings":
        in_production = self.env == "production" and self.test_phone_codes.strip()
        if in_production and not self.allow_test_phone_codes:
            raise ValueError(
                "LOYALTY_TEST_PHONE_CODES is set while LOYALTY_ENV=production: those phones "
                "sign in with a fixed code. Remove it, or set "
                "LOYALTY_ALLOW_TEST_PHONE_CODES=true if an app-store review needs it"
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
