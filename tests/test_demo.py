"""The demo programme, loaded into its own fresh database (a SQLite file, or a throwaway
PostgreSQL database on the PostgreSQL run) exactly as `loyalty demo` does."""

import asyncio
import contextlib
import io
import re
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import phonenumbers
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from api import demo
from api.core import migrate
from api.core.config import Settings
from api.core.db import make_engine, make_sessionmaker
from api.loyalty.ledger.check import check_ledger
from api.loyalty.program import service as program_service
from api.loyalty.till.models import Purchase, PurchaseLine
from api.main import create_app
from api.members.models import Member, MemberConsent, Vehicle
from api.org import service as org_service
from tests.conftest import DATABASE_URL, IS_POSTGRES, make_settings

CHINESE_NAME = re.compile(r"^[\u4e00-\u9fff]{2,4}$")
NORMALISED_PLATE = re.compile(r"^[\u4e00-\u9fff][A-Z][0-9A-Z]{5,6}$")


@dataclass
class Loaded:
    settings: Settings
    output: str


HISTORY_DAYS = 45


@contextlib.asynccontextmanager
async def fresh_database(tmp: Path) -> AsyncIterator[str]:
    """A new, empty database URL of the kind this run tests, dropped afterwards."""
    if not IS_POSTGRES:
        yield f"sqlite+aiosqlite:///{tmp}/demo.db"
        return
    name = f"loyalty_demo_{uuid.uuid4().hex[:8]}"
    admin = make_engine(DATABASE_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(DATABASE_URL).set(database=name).render_as_string(hide_password=False)
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="module")
async def loaded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Loaded]:
    async with fresh_database(tmp_path_factory.mktemp("demo")) as url:
        await asyncio.to_thread(migrate.upgrade_head, url)
        # a shorter history keeps this fast; its shape is the same as the full year's
        settings = make_settings(database_url=url, demo_history_days=HISTORY_DAYS)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert await demo.load_if_empty(settings) is True
        yield Loaded(settings, stdout.getvalue())


@pytest.fixture
async def db(loaded: Loaded) -> AsyncIterator[AsyncSession]:
    """A read-only look at the demo database (on SQLite, without holding the write lock)."""
    engine = make_engine(
        loaded.settings.database_url, execution_options={"sqlite_begin": "DEFERRED"}
    )
    try:
        async with make_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


@pytest.fixture
async def demo_client(loaded: Loaded) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(loaded.settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await app.state.engine.dispose()


def printed_keys(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+([A-Z]{2}-[A-Z]{2}\d{2})\s+(lk_\S+)$", output, re.MULTILINE))


def printed_password(output: str, email: str) -> str:
    match = re.search(rf"{re.escape(email)}\s+password (\S+)", output)
    assert match, f"no password printed for {email}"
    return match.group(1)


async def test_regions_stores_and_terminals(loaded: Loaded, db: AsyncSession):
    regions = await org_service.list_regions(db)
    assert [r.name for r in regions] == ["华东 East China", "华南 South China"]
    stores = {s.code: s for s in await org_service.list_stores(db)}
    assert {code: s.kind for code, s in stores.items()} == {
        "SH-SM01": "supermarket",
        "SH-FS01": "fuel_station",
        "GZ-FS01": "fuel_station",
    }
    assert {s.timezone for s in stores.values()} == {"Asia/Shanghai"}
    assert stores["SH-SM01"].region_id == stores["SH-FS01"].region_id == regions[0].id
    assert stores["GZ-FS01"].region_id == regions[1].id
    for store in stores.values():
        assert len(await org_service.list_terminals(db, store_id=store.id)) == 1


async def test_each_terminal_key_printed_once_and_accepted(loaded: Loaded, db: AsyncSession):
    keys = printed_keys(loaded.output)
    assert set(keys) == {"SH-SM01", "SH-FS01", "GZ-FS01"}
    for code, key in keys.items():
        assert loaded.output.count(key) == 1
        _, store = await org_service.authenticate_terminal(db, key)
        assert store.code == code


async def test_staff_roles_and_scope(db: AsyncSession):
    staff = {s.role: s for s in await org_service.list_staff(db)}
    assert set(staff) == {"admin", "marketer", "store_manager", "cashier"}
    assert staff["admin"].email == demo.ADMIN_EMAIL
    supermarket = await org_service.get_store_by_code(db, "SH-SM01")
    assert staff["store_manager"].store_id == staff["cashier"].store_id == supermarket.id


async def test_members_are_believable(db: AsyncSession):
    members = list((await db.execute(select(Member))).scalars())
    assert len(members) == demo.MEMBER_COUNT
    assert all(m.name and CHINESE_NAME.match(m.name) for m in members)
    assert len({m.name[0] for m in members}) > 50  # many surnames
    assert len({m.phone for m in members}) == len(members)
    for m in members:
        number = phonenumbers.parse(m.phone)
        assert number.country_code == 86 and m.phone[3:5] in {"13", "15", "18"}
        assert phonenumbers.is_valid_number(number), m.phone
    months = Counter(m.birthday.month for m in members if m.birthday)
    assert set(months) == set(range(1, 13))
    assert min(months.values()) >= 10  # spread, not clustered
    assert any((m.birthday.month, m.birthday.day) == (2, 29) for m in members if m.birthday)
    homes = Counter(m.home_store_id for m in members)
    assert len(homes) == 3 and min(homes.values()) >= demo.MEMBER_COUNT // 10


async def test_consents_are_mixed_mostly_push(db: AsyncSession):
    stmt = select(MemberConsent.channel, MemberConsent.granted, func.count()).group_by(
        MemberConsent.channel, MemberConsent.granted
    )
    counts = {(channel, granted): n for channel, granted, n in await db.execute(stmt)}
    assert counts[("push", True)] > 0.7 * demo.MEMBER_COUNT
    assert counts[("push", False)] > 0
    assert counts[("sms", True)] > 0 and counts[("sms", False)] > 0


async def test_fuel_customers_have_normalised_plates(db: AsyncSession):
    fuel_members = select(Member.id).where(
        Member.home_store_id.in_(
            [(await org_service.get_store_by_code(db, code)).id for code in ("SH-FS01", "GZ-FS01")]
        )
    )
    fuel_ids = set((await db.execute(fuel_members)).scalars())
    plates = {
        member_id: plate
        for member_id, plate in await db.execute(select(Vehicle.member_id, Vehicle.plate))
    }
    assert fuel_ids and fuel_ids <= set(plates)
    assert all(NORMALISED_PLATE.match(p) for p in plates.values()), plates
    provinces = Counter(p[0] for p in plates.values())
    assert provinces["沪"] and provinces["粤"]


async def test_load_if_empty_does_nothing_the_second_time(
    loaded: Loaded, db: AsyncSession, capsys: pytest.CaptureFixture[str]
):
    assert await demo.load_if_empty(loaded.settings) is False
    assert "lk_" not in capsys.readouterr().out
    count = (await db.execute(select(func.count()).select_from(Member))).scalar_one()
    assert count == demo.MEMBER_COUNT


async def test_printed_admin_password_signs_in(loaded: Loaded, demo_client: httpx.AsyncClient):
    password = printed_password(loaded.output, demo.ADMIN_EMAIL)
    r = await demo_client.post(
        "/v1/auth/token", data={"username": demo.ADMIN_EMAIL, "password": password}
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    me = await demo_client.get("/v1/staff/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "admin"


async def test_printed_key_identifies_a_driver_by_plate(
    loaded: Loaded, db: AsyncSession, demo_client: httpx.AsyncClient
):
    store = await org_service.get_store_by_code(db, "GZ-FS01")
    driver = (
        await db.execute(
            select(Member.id, Vehicle.plate)
            .join(Vehicle, Vehicle.member_id == Member.id)
            .where(Member.home_store_id == store.id)
            .order_by(Member.id)
            .limit(1)
        )
    ).one()
    plate_as_typed = f"{driver.plate[:2]}·{driver.plate[2:].lower()}"
    r = await demo_client.post(
        "/v1/pos/identify",
        json={"code": plate_as_typed},
        headers={"X-API-Key": printed_keys(loaded.output)["GZ-FS01"]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == driver.id


async def test_refused_in_production():
    settings = make_settings(
        env="production",
        database_url="sqlite+aiosqlite:///unused.db",
        secret_key=secrets.token_urlsafe(48),
        test_phone_codes="",
    )
    with pytest.raises(demo.DemoRefused):
        await demo.load(settings)


async def test_history_is_consistent_and_believable(loaded: Loaded, db: AsyncSession):
    purchases = (await db.execute(select(func.count()).select_from(Purchase))).scalar_one()
    with_member = (
        await db.execute(select(func.count()).where(Purchase.member_id.is_not(None)))
    ).scalar_one()
    fuel_lines = (
        await db.execute(select(func.count()).where(PurchaseLine.volume_ml.is_not(None)))
    ).scalar_one()
    assert purchases > 100 and 0 < with_member < purchases
    assert fuel_lines > 10
    assert "receipts" in loaded.output
    assert await check_ledger(db) == []
    codes = {r.code for r in await program_service.list_rules(db)}
    assert {"member-day-wed", "birthday-month", "fuel-per-litre"} <= codes
    assert [t.code for t in await program_service.list_tiers(db)] == ["silver", "gold", "platinum"]
