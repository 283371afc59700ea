"""The `loyalty` console script on the embedded SQLite default: in-process through click's
runner, and `loyalty serve --demo` for real as a subprocess."""

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from api import demo
from api.cli import main
from api.core.config import Settings, get_settings
from tests.conftest import sqlite_only


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """LOYALTY_DATABASE_URL points at a fresh SQLite file for the commands under test."""
    path = tmp_path / "cli.db"
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    monkeypatch.setenv("LOYALTY_DEMO_HISTORY_DAYS", "14")
    monkeypatch.setenv("LOYALTY_ENV", "development")
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=input)
    return result.exit_code, result.output


def test_migrate_creates_the_database(cli_db: Path):
    code, out = run("migrate")
    assert code == 0, out
    assert "latest schema" in out
    assert cli_db.exists()
    assert run("migrate")[0] == 0  # idempotent


def test_demo_loads_once(cli_db: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(demo, "MEMBER_COUNT", 20)  # the full demo is tested in test_demo.py
    run("migrate")
    code, out = run("demo")
    assert code == 0, out
    assert len(re.findall(r"\blk_\S+", out)) == 3
    assert f"{demo.ADMIN_EMAIL}" in out and demo.ADMIN_PASSWORD in out

    code, out = run("demo")
    assert code == 0 and "already holds data" in out and "lk_" not in out

    code, out = run("demo", "--force")  # the same demo again clashes, cleanly
    assert code == 1 and "clashes with existing data" in out and "Traceback" not in out


def test_demo_refused_in_production(cli_db: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOYALTY_ENV", "production")
    monkeypatch.setenv("LOYALTY_SECRET_KEY", secrets.token_urlsafe(48))
    get_settings.cache_clear()
    code, out = run("demo")
    assert code == 1 and "LOYALTY_ENV=production" in out and "demo" in out


def test_a_refused_setting_is_a_clean_message(cli_db: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOYALTY_ENV", "production")
    monkeypatch.setenv("LOYALTY_SECRET_KEY", "x" * 40)  # long, but one character repeated
    get_settings.cache_clear()
    code, out = run("migrate")
    assert code == 1 and "LOYALTY_SECRET_KEY is refused" in out and "Traceback" not in out
    assert "different" in out and "secrets.token_urlsafe" in out


def test_create_admin(cli_db: Path):
    run("migrate")
    code, out = run("create-admin", "--email", "Boss@Example.com", "--password", "long-enough-1")
    assert code == 0, out
    assert "admin Boss@Example.com created" in out

    code, out = run("create-admin", "--email", "boss@example.com", "--password", "long-enough-2")
    assert code == 1 and "already exists" in out

    code, out = run("create-admin", "--email", "short@example.com", "--password", "short")
    assert code == 1 and "at least 10 characters" in out


def test_create_admin_prompts_for_the_password(cli_db: Path, monkeypatch: pytest.MonkeyPatch):
    run("migrate")
    answers = iter(["typed-password-1", "typed-password-2"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, out = run("create-admin", "--email", "typo@example.com")
    assert code == 1 and "passwords differ" in out


def test_readme_documents_every_setting_and_command():
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert not [f for f in Settings.model_fields if f"`LOYALTY_{f.upper()}`" not in readme]
    assert not [c for c in main.commands if f"`loyalty {c}" not in readme]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _text(log: Path) -> str:
    return log.read_text(encoding="utf-8", errors="replace")


STARTUP_SECONDS = 60  # migrate + demo + start-up takes ~6 s; leave room for a busy CI machine


def _wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"loyalty serve exited with {process.returncode}:\n{_text(log)}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"loyalty serve did not answer within {STARTUP_SECONDS} s:\n{_text(log)}")


@sqlite_only
def test_serve_demo_for_real(tmp_path: Path):
    port = _free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "LOYALTY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        "LOYALTY_ENV": "development",
        "LOYALTY_DEMO_HISTORY_DAYS": "14",
    }
    loyalty = Path(sys.executable).with_name("loyalty")
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(loyalty), "serve", "--demo", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log)
        assert httpx.get(f"{base}/readyz").json() == {"status": "ok", "database": "ok"}
        assert httpx.get(f"{base}/docs").status_code == 200
        assert "/v1/auth/token" in httpx.get(f"{base}/openapi.json").json()["paths"]
        console = httpx.get(f"{base}/admin/", follow_redirects=True)  # → the sign-in page
        assert console.status_code == 200 and "Sign in" in console.text
        output = _text(log)
        assert output.count("lk_") == 3
        password = re.search(rf"{re.escape(demo.ADMIN_EMAIL)}\s+password (\S+)", output)
        assert password, output
        r = httpx.post(
            f"{base}/v1/auth/token",
            data={"username": demo.ADMIN_EMAIL, "password": password.group(1)},
        )
        assert r.status_code == 200, r.text
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def no_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record what `loyalty serve` would have served instead of serving it."""
    import uvicorn

    calls: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "loyalty.example.com"])
def test_serve_refuses_an_open_address_with_the_development_secret(
    cli_db: Path, no_uvicorn: list[dict], monkeypatch: pytest.MonkeyPatch, host: str
):
    monkeypatch.delenv("LOYALTY_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    code, out = run("serve", "--host", host)
    assert code == 1, out
    assert f"refusing to listen on {host}" in out and "LOYALTY_SECRET_KEY" in out
    assert "export LOYALTY_SECRET_KEY=$(python3 -c" in out and "127.0.0.1" in out
    assert no_uvicorn == [] and not cli_db.exists()  # refused before anything was done


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_serve_on_loopback_keeps_the_development_secret(
    cli_db: Path, no_uvicorn: list[dict], monkeypatch: pytest.MonkeyPatch, host: str
):
    monkeypatch.delenv("LOYALTY_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    code, out = run("serve", "--host", host, "--port", "8123")
    assert code == 0, out
    assert [(c["host"], c["port"]) for c in no_uvicorn] == [(host, 8123)]


def test_serve_on_an_open_address_with_a_real_secret(
    cli_db: Path, no_uvicorn: list[dict], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LOYALTY_SECRET_KEY", secrets.token_urlsafe(48))
    get_settings.cache_clear()
    code, out = run("serve", "--host", "0.0.0.0")
    assert code == 0, out
    assert [c["host"] for c in no_uvicorn] == ["0.0.0.0"]
