import base64
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.core.config import DEV_SECRET, Settings, estimated_bits, get_settings, secret_problem
from tests.conftest import make_settings

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


# --- secrets outside development ---------------------------------------------------------------

ROOT = Path(__file__).parents[2]
TEST_SUITE_SECRET = make_settings().secret_key


def documented_secrets() -> list[str]:
    """Every value the README and docs/ write for LOYALTY_SECRET_KEY, and every CHANGE-ME
    placeholder they show: someone will paste one."""
    found: set[str] = set()
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        text = doc.read_text(encoding="utf-8")
        found |= set(re.findall(r"LOYALTY_SECRET_KEY=([^\s'\"`)]+)", text))
        found |= set(re.findall(r"[\w-]*CHANGE-ME[\w-]*", text, flags=re.IGNORECASE))
    return sorted(value for value in found if not value.startswith("$("))


def test_the_docs_still_show_placeholders_to_check():
    assert DEV_SECRET == "development-only-secret-change-me"
    assert documented_secrets(), "the docs show no secret value; keep this test meaningful"


@pytest.mark.parametrize(
    "secret",
    [
        DEV_SECRET,
        "CHANGE-ME-to-48-random-characters",  # the old docs/deployment.md placeholder
        pytest.param("please-change-me-" + secrets.token_hex(16), id="change-me-marker"),
        pytest.param("replace_me_" + secrets.token_urlsafe(32), id="replace-me-marker"),
        TEST_SUITE_SECRET,
        "x" * 40,  # long but one character
        "ab" * 24,  # two characters
        "0123456789" * 3 + "01",  # 32 characters but ten digits: ~106 bits estimated
        pytest.param(secrets.token_hex(16), id="hex-32"),  # ~120 bits estimated, under 128
        pytest.param(secrets.token_urlsafe(16), id="urlsafe-22-characters"),
    ],
)
def test_production_refuses_placeholders_and_weak_secrets(monkeypatch, secret):
    with pytest.raises(ValidationError) as caught:
        settings_from_env(monkeypatch, env="production", secret_key=secret)
    message = str(caught.value)
    assert "LOYALTY_SECRET_KEY is refused when LOYALTY_ENV=production" in message
    assert "secrets.token_urlsafe(48)" in message  # and says how to make one
    assert secret not in message  # nor echoes it


@pytest.mark.parametrize("value", documented_secrets() or ["none"])
def test_no_value_from_the_docs_passes_as_a_production_secret(monkeypatch, value):
    assert secret_problem(value) is not None, value


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(secrets.token_urlsafe(48), id="token_urlsafe-48"),
        pytest.param(secrets.token_urlsafe(32), id="token_urlsafe-32"),
        pytest.param(secrets.token_hex(32), id="openssl-rand-hex-32"),
        pytest.param(base64.b64encode(os.urandom(32)).decode(), id="openssl-rand-base64-32"),
    ],
)
def test_production_accepts_random_secrets(monkeypatch, secret):
    assert secret_problem(secret) is None
    assert settings_from_env(monkeypatch, env="production", secret_key=secret).secret_key == secret


def test_the_test_suites_secret_is_only_for_tests(monkeypatch):
    assert settings_from_env(monkeypatch, env="test", secret_key=TEST_SUITE_SECRET).env == "test"
    with pytest.raises(ValidationError, match="test suite"):
        settings_from_env(monkeypatch, env="production", secret_key=TEST_SUITE_SECRET)


def test_estimated_bits_is_length_times_shannon_entropy():
    assert estimated_bits("") == 0
    assert estimated_bits("a" * 64) == 0
    assert estimated_bits("ab" * 16) == pytest.approx(32)
    assert estimated_bits("0123456789abcdef" * 2) == pytest.approx(128)


def test_the_deployment_guide_generates_the_secret_into_the_env_file():
    guide = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    line = next(x for x in guide.splitlines() if x.startswith("LOYALTY_SECRET_KEY="))
    command = re.fullmatch(r"LOYALTY_SECRET_KEY=\$\((.+)\)", line)
    assert command, f"the env file gets a generated secret, not a placeholder: {line}"
    assert "CHANGE-ME" not in guide.split("## 2.")[0].split("LOYALTY_SECRET_KEY")[1][:80]
    generated = subprocess.run(
        ["sh", "-c", command.group(1)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert secret_problem(generated) is None
    other = subprocess.run(["sh", "-c", command.group(1)], capture_output=True, text=True)
    assert other.stdout.strip() != generated  # random, not a constant
