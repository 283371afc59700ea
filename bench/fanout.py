"""Campaign fan-out: a one-off campaign to N members through the worker's push jobs to a
loopback fake FCM, against raw firebase-admin `send_each` of the same N messages (batches of
500) to the same fake. Goal: platform/raw ≥ 0.8.

The fake FCM (tests/fakes/fcm.py) runs in a child process, so neither side shares its GIL
with it. Both sides use the real firebase-admin SDK pointed at it as the tests do (FCM_URL,
the service account's token_uri, no regional access boundary lookup).

Platform: the campaign is created and scheduled through the campaign service with `at` = now
and committed; the clock starts, the worker's push jobs run as `loyalty worker --once` runs
them (api.worker.JOBS `push_schedule_runs` then `push_dispatch`, each through
run_in_transaction), and the clock stops when dispatch has nothing left. Every member must
end with exactly one delivery, sent, one inbox item, and exactly one accepted message at the
fake. Raw: prebuilt messaging.Message objects (building them is not timed) sent with
`messaging.send_each` 500 at a time from a default firebase_admin app.

`python -m bench fanout -- [--members N] [--repeat R] [--profile FILE]`
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import firebase_admin
from firebase_admin import credentials, messaging
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.core import clock
from api.core.config import Settings, get_settings
from api.core.db import make_engine, make_sessionmaker, run_in_transaction
from api.push import campaigns
from api.push import transport as push_transport
from api.push.models import Campaign, Delivery, InboxItem
from api.push.schemas import CampaignCreate
from api.worker import JOBS
from bench import _common as common

BATCH = 500
TITLE, BODY = "Hi {name}", "You have {points} points, this week only"
DATA = {"screen": "offers", "offer": "spring-sale"}

# Run in the child: the fake from tests/fakes/fcm.py plus GET /stats and GET /reset, so the
# bench can check what it accepted (one message per token) without sharing its process.
_SERVE = """
import json, sys
from collections import Counter
from tests.fakes import fcm

def do_GET(self):
    fake = self.owner
    if self.path.startswith("/reset"):
        fake.reset()
        self._reply(200, {})
        return
    with fake._lock:
        accepted = Counter(r.token for r in fake.requests if r.status == 200)
        total = len(fake.requests)
    self._reply(200, {"requests": total, "accepted": sum(accepted.values()),
                      "tokens": len(accepted), "max_per_token": max(accepted.values(), default=0)})

fcm._Handler.do_GET = do_GET
fake = fcm.FakeFCM().start()
print(fake.url, flush=True)
sys.stdin.read()
"""


@contextmanager
def fake_fcm() -> Iterator[str]:
    """The fake FCM in a child process; yields its base URL."""
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=root
    )
    try:
        assert child.stdout is not None
        yield child.stdout.readline().decode().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def fake_get(url: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _point_sdk_at(fcm_url: str) -> None:
    """As tests/push/conftest.py does through the transport: FCM_URL and no RAB lookup."""
    push_transport._use_loopback_fcm(fcm_url)


def raw_messages(tokens: list[tuple[int, str]]) -> list[messaging.Message]:
    """What the platform sends per member, built by hand (one per token)."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for n, (member_id, token) in enumerate(tokens, 1):
            tag = f"d{n}"
            out.append(
                messaging.Message(
                    token=token,
                    notification=messaging.Notification(
                        title=f"Hi Member {member_id}", body="You have 0 points, this week only"
                    ),
                    data={**DATA, "inbox_item_id": str(n), "campaign_id": "1", "push_id": tag},
                    android=messaging.AndroidConfig(
                        collapse_key=tag, notification=messaging.AndroidNotification(tag=tag)
                    ),
                    apns=messaging.APNSConfig(headers={"apns-collapse-id": tag}),
                    webpush=messaging.WebpushConfig(
                        notification=messaging.WebpushNotification(tag=tag)
                    ),
                )
            )
    return out


def raw_send(app: firebase_admin.App, messages: list[messaging.Message]) -> tuple[int, float]:
    """send_each, 500 at a time; (successes, seconds)."""
    ok = 0
    start = time.perf_counter()
    for i in range(0, len(messages), BATCH):
        ok += messaging.send_each(messages[i : i + BATCH], app=app).success_count
    return ok, time.perf_counter() - start


async def _new_campaign(session: AsyncSession, n: int) -> Campaign:
    data = CampaignCreate(
        name=f"Fan-out {n}",
        kind="one_off",
        schedule={"at": clock.now().isoformat()},
        audience={},
        message={"title": TITLE, "body": BODY, "data": DATA},
    )
    campaign = await campaigns.create_campaign(session, data=data, staff_id=None)
    await campaigns.schedule_campaign(session, campaign)
    return campaign


async def worker_push_pass(maker: async_sessionmaker[AsyncSession]) -> dict[str, float]:
    """The push jobs of one `loyalty worker --once` pass; seconds per job."""
    spent = {}
    for name, job in JOBS:
        if name.startswith("push_"):
            start = time.perf_counter()
            await run_in_transaction(maker, job)
            spent[name] = time.perf_counter() - start
    return spent


async def check_run(
    maker: async_sessionmaker[AsyncSession], campaign_id: int, members: int
) -> list[str]:
    """Problems with the run, if any: every member one delivery, sent, with one inbox item."""
    problems = []
    async with maker() as session:
        statuses = dict(
            (
                await session.execute(
                    select(Delivery.status, func.count())
                    .where(Delivery.campaign_id == campaign_id)
                    .group_by(Delivery.status)
                )
            ).all()
        )
        distinct = (
            await session.execute(
                select(func.count(func.distinct(Delivery.member_id))).where(
                    Delivery.campaign_id == campaign_id
                )
            )
        ).scalar_one()
        items = (
            await session.execute(
                select(func.count(), func.count(func.distinct(InboxItem.member_id))).where(
                    InboxItem.campaign_id == campaign_id
                )
            )
        ).one()
    if statuses != {"sent": members}:
        problems.append(f"delivery statuses {statuses}, want {{'sent': {members}}}")
    if distinct != members:
        problems.append(f"{distinct} members with a delivery, want {members}")
    if tuple(items) != (members, members):
        problems.append(f"inbox items (rows, members) {tuple(items)}, want {members} each")
    return problems


async def _between_runs(maker: async_sessionmaker[AsyncSession]) -> None:
    """Untimed: complete the finished campaign (a pass of the scheduler) and age its deliveries
    past the 7-day frequency-cap window, so every run meets the same state."""
    await worker_push_pass(maker)
    async with maker() as session, session.begin():
        await session.execute(
            update(Delivery).values(created_at=Delivery.created_at - text("interval '8 days'"))
        )
    await common.vacuum_analyze(maker, "push_delivery", "push_inbox_item")


async def platform_run(
    maker: async_sessionmaker[AsyncSession], n: int, members: int, fcm_url: str
) -> tuple[float, dict[str, float], list[str]]:
    async with maker() as session, session.begin():
        campaign = await _new_campaign(session, n)
    fake_get(fcm_url, "/reset")
    start = time.perf_counter()
    spent = await worker_push_pass(maker)
    seconds = time.perf_counter() - start
    problems = await check_run(maker, campaign.id, members)
    stats = fake_get(fcm_url, "/stats")
    if (stats["accepted"], stats["tokens"], stats["max_per_token"]) != (members, members, 1):
        problems.append(f"fake FCM saw {stats}, want one accepted message per member")
    await _between_runs(maker)
    return seconds, spent, problems


def _configure_environment(s: Settings) -> None:
    """The worker jobs read the process settings (environment), as `loyalty worker` does."""
    for key in ("database_url", "firebase_credentials", "fcm_url", "env", "secret_key"):
        os.environ[f"LOYALTY_{key.upper()}"] = str(getattr(s, key))
    os.environ["LOYALTY_PUSH_QUIET_HOURS"] = ""
    os.environ["LOYALTY_LOG_LEVEL"] = "WARNING"
    get_settings.cache_clear()


async def _setup(
    maker: async_sessionmaker[AsyncSession], s: Settings, members: int
) -> list[tuple[int, str]]:
    tag = common.run_tag()
    async with maker() as session, session.begin():
        org = await common.make_org(session, tag=tag)
        ids = await common.bulk_members(session, s, count=members, store_id=org.store.id, tag=tag)
    await common.vacuum_analyze(maker)
    return [(i, common.device_token(tag, i)) for i in ids]


async def _run(url: str, args: argparse.Namespace, fcm_url: str, account: Path) -> None:
    s = common.settings(url, firebase_credentials=str(account), fcm_url=fcm_url)
    _configure_environment(s)
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    try:
        with common.stopwatch() as setup:
            tokens = await _setup(maker, s, args.members)
        print(f"setup: {args.members} members with a device in {setup():.1f}s", flush=True)

        platform_transport = push_transport.process_transport(get_settings())
        raw_app = firebase_admin.initialize_app(
            credentials.Certificate(str(account)), name="bench-raw-send-each"
        )
        messages = raw_messages(tokens)
        # warm both: OAuth token, connections, the SDK's imports
        warm = [push_transport.PushMessage(t, "warm", "up", f"w{i}") for i, t in tokens[:BATCH]]
        await platform_transport.send(warm)
        raw_send(raw_app, messages[:BATCH])

        raw_rates, platform_rates, phases, problems = [], [], [], []
        for rep in range(args.repeat):
            fake_get(fcm_url, "/reset")
            ok, seconds = await asyncio.to_thread(raw_send, raw_app, messages)
            if ok != len(messages):
                problems.append(f"raw run {rep + 1}: {ok} of {len(messages)} accepted")
            raw_rates.append(common.rate_per_second(ok, seconds))

            profiler = cProfile.Profile() if args.profile else None
            if profiler:
                profiler.enable()
            seconds, spent, found = await platform_run(maker, rep + 1, args.members, fcm_url)
            if profiler:
                profiler.disable()
                profiler.dump_stats(f"{args.profile}.{rep + 1}")
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
                print(out.getvalue())
            problems += [f"platform run {rep + 1}: {p}" for p in found]
            platform_rates.append(common.rate_per_second(args.members, seconds))
            phases.append(spent)
            print(
                f"  rep {rep + 1}: raw {raw_rates[-1]:,.0f}/s  platform {platform_rates[-1]:,.0f}/s"
                f"  ({', '.join(f'{k} {v:.2f}s' for k, v in spent.items())})  load {common.load()}",
                flush=True,
            )

        raw, platform = common.median(raw_rates), common.median(platform_rates)
        print(
            common.table(
                ["fan-out (messages/s)", "median", "runs"],
                [
                    ["raw send_each, 500/batch", raw, " ".join(f"{r:,.0f}" for r in raw_rates)],
                    [
                        "platform: campaign → worker → FCM",
                        platform,
                        " ".join(f"{r:,.0f}" for r in platform_rates),
                    ],
                ],
            )
        )
        pairs = " ".join(f"{p / r:.2f}" for p, r in zip(platform_rates, raw_rates, strict=True))
        print(
            f"ratio platform/raw: {platform / raw:.2f} (goal ≥ 0.8; per pair {pairs})"
            f"  N={args.members}"
            f"  repetitions={args.repeat}  send rate limit {s.push_send_rate:,.0f}/s"
            f"  load {common.load()}"
        )
        print("exactly one delivery per member: " + ("yes" if not problems else "NO"))
        for p in problems:
            print("  " + p)
        await asyncio.to_thread(firebase_admin.delete_app, raw_app)
    finally:
        await engine.dispose()


def main(url: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench fanout --")
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--profile", help="cProfile each platform run to FILE.<n>")
    args, _ = parser.parse_known_args(argv)
    common.migrate(url)
    with fake_fcm() as fcm_url, tempfile.TemporaryDirectory() as tmp:
        from tests.fakes.fcm import service_account_file

        account = service_account_file(Path(tmp), fcm_url)
        _point_sdk_at(fcm_url)
        asyncio.run(_run(url, args, fcm_url, account))
