"""The demo programme: a believable supermarket + fuel-station network in China, reproducibly.

`loyalty demo` and `loyalty serve --demo` load it. Each part is one function that takes what the
earlier parts built and returns what later parts need (`_org` → `_staff` → `_members`); purchase
history and campaigns arrive as further parts in `_build`. Everything goes through the domain
services in one transaction; terminal keys and staff passwords are printed once, after the commit.
The passwords are well known, so the demo refuses to load when LOYALTY_ENV=production.
"""

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

import phonenumbers
from sqlalchemy.ext.asyncio import AsyncSession

from api import demo_history
from api.core import clock
from api.core.config import Settings
from api.core.db import make_engine, make_sessionmaker, run_in_transaction
from api.core.pagination import PageParams
from api.members import service as members_service
from api.members.models import Member
from api.members.schemas import ConsentsIn, MemberCreate
from api.org import service as org_service
from api.org.models import Region, Role, StoreKind
from api.org.schemas import RegionCreate, StaffCreate, StoreCreate
from api.org.scope import GLOBAL
from api.push import demo as push_demo

SEED = 20261122
MEMBER_COUNT = 300
TIMEZONE = "Asia/Shanghai"
EMAIL_DOMAIN = "demo.loyalty"
ADMIN_EMAIL = f"admin@{EMAIL_DOMAIN}"
ADMIN_PASSWORD = "loyalty-demo-admin"

REGIONS = ("华东 East China", "华南 South China")
# (code, name, region index, kind, share of members whose home store it is)
STORES = (
    ("SH-SM01", "上海徐汇超市 Xuhui Supermarket", 0, StoreKind.supermarket, 45),
    ("SH-FS01", "上海浦东加油站 Pudong Fuel Station", 0, StoreKind.fuel_station, 30),
    ("GZ-FS01", "广州天河加油站 Tianhe Fuel Station", 1, StoreKind.fuel_station, 25),
)
# (role, e-mail, password, name, store code for store staff)
STAFF = (
    (Role.admin, ADMIN_EMAIL, ADMIN_PASSWORD, "系统管理员 Administrator", None),
    (Role.marketer, f"marketer@{EMAIL_DOMAIN}", "loyalty-demo-marketer", "市场部 陈思雨", None),
    (
        Role.store_manager,
        f"manager@{EMAIL_DOMAIN}",
        "loyalty-demo-manager",
        "店长 王建国",
        "SH-SM01",
    ),
    (Role.cashier, f"cashier@{EMAIL_DOMAIN}", "loyalty-demo-cashier", "收银员 李娜", "SH-SM01"),
)

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程"
    "魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付方邹熊白孟秦邱侯江尹薛段雷龙黎史陶贺毛郝顾龚"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "上官", "诸葛")
GIVEN = {
    "male": "伟强磊军勇杰涛明超辉刚鹏华飞斌宇浩俊鑫波峰建文博志晨昊轩睿凯毅诚磊翔哲然",
    "female": "芳娜敏静丽艳秀娟霞婷雪琳燕玲萍红颖倩欣怡佳悦涵诗雨思梦琪瑶璐晴妍蕾洁",
}
MOBILE_PREFIXES = (*range(130, 140), *range(150, 154), *range(155, 160), *range(180, 190))
# Plate province (and city letters) by home region, most drivers local.
PLATE_PROVINCES = (
    (("沪", "ABDE"), ("沪", "ABDE"), ("沪", "ABDE"), ("苏", "ABE"), ("浙", "AB")),
    (("粤", "AB"), ("粤", "ABES"), ("粤", "A"), ("桂", "A"), ("湘", "A")),
)
PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on Chinese plates


class DemoRefused(RuntimeError):
    """The demo is not loaded into a production deployment."""


@dataclass
class DemoOrg:
    regions: list[Region]
    store_ids: dict[str, int]  # by store code
    kinds: dict[str, StoreKind]
    keys: dict[str, str] = field(default_factory=dict)  # terminal API key by store code


@dataclass
class StaffLogin:
    role: Role
    email: str
    password: str
    store_code: str | None


@dataclass
class DemoMember:
    member: Member  # created_at is the (back-dated) enrolment time
    store_code: str  # home store
    plate: str | None


@dataclass
class Demo:
    org: DemoOrg
    staff: list[StaffLogin]
    members: list[DemoMember]
    history: dict[str, int] = field(default_factory=dict)


async def load(settings: Settings) -> bool:
    """Load the demo programme in one transaction and print its keys and passwords."""
    return await _run(settings, only_if_empty=False)


async def load_if_empty(settings: Settings) -> bool:
    """Load the demo only when the database has neither staff nor members; True if loaded."""
    return await _run(settings, only_if_empty=True)


async def _run(settings: Settings, *, only_if_empty: bool) -> bool:
    if settings.env == "production":
        raise DemoRefused(
            "the demo has well-known passwords and is not loaded when LOYALTY_ENV=production"
        )

    async def work(session: AsyncSession) -> Demo | None:
        if only_if_empty and not await _is_empty(session, settings):
            return None
        return await _build(session, settings, random.Random(SEED))

    engine = make_engine(settings.database_url)
    try:
        demo = await run_in_transaction(make_sessionmaker(engine), work)
    finally:
        await engine.dispose()
    if demo is None:
        return False
    _report(demo)
    return True


async def _is_empty(session: AsyncSession, settings: Settings) -> bool:
    if await org_service.staff_count(session):
        return False
    some = await members_service.search(
        session, settings=settings, q=None, scope=GLOBAL, page=PageParams(limit=1)
    )
    return not some.items


async def _build(session: AsyncSession, settings: Settings, rng: random.Random) -> Demo:
    org = await _org(session)
    staff = await _staff(session, org)
    members = await _members(session, settings, org, rng)
    demo = Demo(org=org, staff=staff, members=members)
    await _history(session, settings, demo, rng)
    return demo


async def _history(
    session: AsyncSession, settings: Settings, demo: Demo, rng: random.Random
) -> None:
    """Rules, tiers, rewards and a year of receipts, returns, redemptions and claims."""
    await demo_history.configure(session)
    stores = await org_service.list_stores(session)
    terminals = {}
    for store in stores:
        terminals[store.id] = (await org_service.list_terminals(session, store_id=store.id))[0].id
    demo.history = await demo_history.replay(
        session, settings, rng, [m.member for m in demo.members], stores, terminals
    )
    campaigns = await push_demo.load_demo_campaigns(session, settings=settings)
    demo.history["campaigns"] = len(
        (campaigns.member_day, campaigns.birthday, campaigns.past_offer)
    )


async def _org(session: AsyncSession) -> DemoOrg:
    """Two regions, a supermarket and two fuel stations, one POS terminal each."""
    regions = [await org_service.create_region(session, data=RegionCreate(name=n)) for n in REGIONS]
    org = DemoOrg(regions=regions, store_ids={}, kinds={})
    for code, name, region, kind, _share in STORES:
        store = await org_service.create_store(
            session,
            data=StoreCreate(
                code=code, name=name, region_id=regions[region].id, timezone=TIMEZONE, kind=kind
            ),
        )
        org.store_ids[code], org.kinds[code] = store.id, kind
        _, org.keys[code] = await org_service.create_terminal(
            session, store_id=store.id, name=f"{code} till 1"
        )
    return org


async def _staff(session: AsyncSession, org: DemoOrg) -> list[StaffLogin]:
    """An admin, a marketer, and the supermarket's manager and cashier."""
    logins = []
    for role, email, password, name, store_code in STAFF:
        store_id = org.store_ids[store_code] if store_code else None
        await org_service.create_staff(
            session,
            data=StaffCreate(
                email=email, password=password, name=name, role=role, store_id=store_id
            ),
        )
        logins.append(StaffLogin(role, email, password, store_code))
    return logins


async def _members(
    session: AsyncSession, settings: Settings, org: DemoOrg, rng: random.Random
) -> list[DemoMember]:
    """Members with Chinese names, valid CN mobiles, birthdays in every month, plates for drivers.

    Enrolment dates spread over the last three years, most before the last twelve months, so
    purchase history can be added after them.
    """
    codes = [code for code, *_ in STORES]
    shares = [share for *_, share in STORES]
    now = clock.now()
    phones: set[str] = set()
    plates: set[str] = set()
    # Thirteen members chosen at random guarantee every month and one 29 February.
    fixed_months = dict(zip(rng.sample(range(MEMBER_COUNT), 13), range(1, 14), strict=True))
    members = []
    for i in range(MEMBER_COUNT):
        code = rng.choices(codes, weights=shares)[0]
        gender = rng.choice(("female", "male"))
        drives = org.kinds[code] == StoreKind.fuel_station or rng.random() < 0.2
        plate = _plate(rng, region=STORES[codes.index(code)][2], taken=plates) if drives else None
        email = f"member{i + 1:04d}@{EMAIL_DOMAIN}" if rng.random() < 0.25 else None
        data = MemberCreate(
            phone=_phone(rng, phones),
            name=_name(rng, gender),
            gender=gender,
            birthday=_birthday(rng, month=fixed_months.get(i)),
            email=email,
            consents=ConsentsIn(
                push=rng.random() < 0.85,
                sms=rng.random() < 0.45,
                email=email is not None and rng.random() < 0.6,
            ),
            plate=plate,
            home_store_id=org.store_ids[code],
        )
        via = rng.choices(("pos", "app", "staff"), weights=(55, 35, 10))[0]
        member = await members_service.enrol(session, settings=settings, data=data, via=via)
        if plate:  # as if each driver's car had been confirmed at a till
            await members_service.verify_plate(session, member, plate=plate, by="demo")
        member.created_at = member.updated_at = now - timedelta(
            days=rng.randrange(360, 1095) if rng.random() < 0.85 else rng.randrange(1, 360),
            seconds=rng.randrange(86_400),
        )
        members.append(DemoMember(member, code, plate))
    await session.flush()
    return members


def _name(rng: random.Random, gender: str) -> str:
    surname = rng.choice(COMPOUND_SURNAMES) if rng.random() < 0.02 else rng.choice(SURNAMES)
    given = "".join(rng.choice(GIVEN[gender]) for _ in range(rng.choice((1, 2, 2, 2))))
    return surname + given


def _phone(rng: random.Random, taken: set[str]) -> str:
    while True:
        phone = f"+86{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
        if phone in taken or phone.startswith("+86138000000"):  # the usual test-number block
            continue
        if phonenumbers.is_valid_number(phonenumbers.parse(phone)):
            taken.add(phone)
            return phone


def _birthday(rng: random.Random, *, month: int | None) -> date | None:
    """Ages 18–78; `month` 1–12 fixes the month, 13 means 29 February; a few give none."""
    year = date.today().year - rng.randint(18, 78)
    if month == 13:
        return date(year - year % 4, 2, 29)  # every multiple of 4 from 1944 to 2008 is a leap year
    if month is None:
        if rng.random() < 0.05:
            return None
        month = rng.randint(1, 12)
    last_day = 28 if month == 2 else 30 if month in (4, 6, 9, 11) else 31
    return date(year, month, rng.randint(1, last_day))


def _plate(rng: random.Random, *, region: int, taken: set[str]) -> str:
    """A plate as people type it (粤B12345, 沪A·D12345, 苏E 7K2Q9); the service normalises it."""
    while True:
        province, cities = rng.choice(PLATE_PROVINCES[region])
        city = rng.choice(cities)
        if rng.random() < 0.2:  # new-energy: D (electric) or F (hybrid) + five digits
            serial = rng.choice("DF") + f"{rng.randrange(10**5):05d}"
        else:
            chars = [rng.choice("0123456789") for _ in range(5)]
            for pos in rng.sample(range(5), rng.choice((0, 0, 1, 2))):
                chars[pos] = rng.choice(PLATE_LETTERS)
            serial = "".join(chars)
        if province + city + serial in taken:
            continue
        taken.add(province + city + serial)
        return f"{province}{city}{rng.choice(('', '', '·', ' '))}{serial}"


def _report(demo: Demo) -> None:
    members = demo.members
    drivers = sum(1 for m in members if m.plate)
    lines = [
        "",
        "Demo programme loaded (demo credentials: never use them for real data)",
        f"  regions: {', '.join(r.name for r in demo.org.regions)}",
        f"  members: {len(members)} ({drivers} with a vehicle plate)",
        "  history: "
        + ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in demo.history.items()),
        "",
        "POS terminal API keys (shown once; send as the X-API-Key header):",
        *(f"  {code:<8} {key}" for code, key in demo.org.keys.items()),
        "",
        "Staff sign-in (POST /v1/auth/token, console at /admin):",
        *(
            f"  {s.role.value:<14} {s.email:<24} password {s.password}"
            + (f"  (store {s.store_code})" if s.store_code else "")
            for s in demo.staff
        ),
        "",
    ]
    print("\n".join(lines), flush=True)
