import os
import secrets

import pytest
from pydantic import ValidationError

from api.core.config import DEV_SECRET, Settings, get_settings

STRONG_SECRET = secrets.token_urlsafe(48)


def settings_from_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name in list(os.environ):
        if name.startswith("LOYALTY_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(f"LOYALTY_{name.upper()}", value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("secret", [None, DEV_SECRET, "s" * 31])
def test_production_refuses_default_or_short_secret(monkeypatch, secret):
    env = {"env": "production"} | ({"secret_key": secret} if secret else {})
    with pytest.raises(ValidationError) as caught:
        settings_from_env(monkeypatch, **env)
    assert "LOYALTY_SECRET_KEY" in str(caught.value)
    assert "LOYALTY_ENV=production" in str(caught.value)


def test_production_accepts_a_strong_secret(monkeypatch):
    settings = settings_from_env(monkeypatch, env="production", secret_key=STRONG_SECRET)
    assert settings.env == "production"
    assert settings.secret_key == STRONG_SECRET


def test_development_accepts_the_default_secret(monkeypatch):
    settings = settings_from_env(monkeypatch)
    assert settings.env == "development"
    assert settings.secret_key == DEV_SECRET


def test_test_env_is_outside_development_and_needs_a_secret(monkeypatch):
    with pytest.raises(ValidationError, match="LOYALTY_SECRET_KEY"):
        settings_from_env(monkeypatch, env="test")
    assert settings_from_env(monkeypatch, env="test", secret_key=STRONG_SECRET).env == "test"


def test_unknown_env_is_refused(monkeypatch):
    with pytest.raises(ValidationError, match="env"):
        settings_from_env(monkeypatch, env="staging", secret_key=STRONG_SECRET)


def test_api_md_names_are_read_from_the_environment(monkeypatch):
    settings = settings_from_env(
        monkeypatch,
        database_url="postgresql+asyncpg://db/loyalty",
        bootstrap_admin_email="root@example.com",
        bootstrap_admin_password="a-long-password",
        default_phone_region="HK",
        firebase_credentials="/etc/loyalty/fcm.json",
    )
    assert settings.database_url == "postgresql+asyncpg://db/loyalty"
    assert not settings.is_sqlite and not settings.run_worker_in_process
    assert settings.bootstrap_admin_email == "root@example.com"
    assert settings.bootstrap_admin_password == "a-long-password"
    assert settings.default_phone_region == "HK"
    assert settings.firebase_credentials == "/etc/loyalty/fcm.json"


def test_defaults(monkeypatch):
    settings = settings_from_env(monkeypatch)
    assert settings.is_sqlite and settings.run_worker_in_process
    assert settings.default_phone_region == "CN"
    assert settings.otp_ttl_seconds == 300
    assert settings.otp_max_attempts == 5
    assert settings.member_token_minutes == 15
    assert settings.test_phone_code_map == {}


def test_get_settings_is_cached_until_cleared(monkeypatch):
    monkeypatch.setenv("LOYALTY_DEFAULT_PHONE_REGION", "HK")
    get_settings.cache_clear()
    try:
        first = get_settings()
        assert first.default_phone_region == "HK"
        monkeypatch.setenv("LOYALTY_DEFAULT_PHONE_REGION", "SG")
        assert get_settings() is first
        get_settings.cache_clear()
        assert get_settings().default_phone_region == "SG"
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("+8613800000000:123456", {"+8613800000000": "123456"}),
        (
            " +8613800000000 : 123456 ,+8613800000001:654321,, ",
            {"+8613800000000": "123456", "+8613800000001": "654321"},
        ),
    ],
)
def test_test_phone_code_map_parsing(monkeypatch, raw, expected):
    assert settings_from_env(monkeypatch, test_phone_codes=raw).test_phone_code_map == expected


@pytest.mark.parametrize(
    "raw",
    [
        "+8613800000000",  # no code: the phone would silently never get a real SMS
        "+8613800000000:12345",  # five digits: the verify endpoint only takes six
        "+8613800000000:abcdef",
        "13800000000:123456",  # not E.164: sign-in looks phones up in E.164
    ],
)
def test_malformed_test_phone_codes_are_refused(monkeypatch, raw):
    with pytest.raises(ValidationError, match="LOYALTY_TEST_PHONE_CODES"):
        settings_from_env(monkeypatch, test_phone_codes=raw)
