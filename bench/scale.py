"""Benchmark 3, scale: 1,000,000 members and 10,000,000 purchases loaded with COPY, then

(a) birthday audience selection: `runs.materialise` of today's birthday run in the programme
    zone, as the scheduler calls it (rolled back), goal < 1 s, beside SELECT count(*) FROM member;
(b) insights refresh: `insights.refresh.refresh`, the function the worker calls, goal < 60 s,
    with a time per step, beside one aggregate pass over loyalty_purchase;
(c) GET /v1/me/points (`accounts.points_view`) and GET /v1/me/points/history first page and the
    next cursor page (`ledger.history`) p99 over random members, goal < 5 ms, each beside a bare
    primary-key SELECT of the account through the same session path, interleaved;
(d) EXPLAIN (FORMAT JSON) of every statement those calls send: no Seq Scan on the big tables.

`python -m bench scale -- --members 100000 --purchases 1000000` for a quick check.
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import api.all_models  # noqa: F401  (registers every table)
from api.core import clock, migrate
from api.core.config import Settings
from api.core.db import make_engine, make_sessionmaker
from api.core.pagination import PageParams
from api.insights import refresh as insights_refresh
from api.loyalty.ledger import accounts
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.models import Account
from api.push import runs
from api.push.models import Campaign
from api.push.schedule import Occurrence, at_local
from api.push.scheduler import load_target
from bench import scale_load

TINY_TABLE_ROWS = 10_000
SERVER_SAMPLES = 200  # lookups repeated under EXPLAIN ANALYZE for the database's own time
BIG_TABLES = {
    "member",
    "loyalty_account",
    "loyalty_purchase",
    "loyalty_purchase_line",
    "loyalty_ledger_entry",
    "push_delivery",
    "member_consent",
    "push_device",
}


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def log(message: str, end: str = "\n") -> None:
    print(message, end=end, flush=True)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


class Recorder:
    """While `on`, EXPLAIN (FORMAT JSON) every statement just before it runs, on the same
    cursor and in the same transaction (so temporary tables the call makes are there)."""

    EXPLAINABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "CREATE TEMPORARY TABLE")

    def __init__(self, engine: AsyncEngine) -> None:
        self.on = False
        self.analyze = False  # EXPLAIN ANALYZE (runs the statement twice: reads only)
        self.plans: list[dict[str, Any]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._explain)

    def _explain(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if not self.on or not statement.lstrip().upper().startswith(self.EXPLAINABLE):
            return
        sql = " ".join(statement.split())[:110]
        try:
            options = "ANALYZE, BUFFERS, FORMAT JSON" if self.analyze else "FORMAT JSON"
            cursor.execute(f"EXPLAIN ({options}) " + statement, params)
            raw = cursor.fetchone()[0]
        except Exception as e:
            self.plans.append({"sql": sql, "error": str(e).splitlines()[0]})
            return
        top = (json.loads(raw) if isinstance(raw, str) else raw)[0]
        plan = top["Plan"]
        nodes = plan_nodes(plan)
        seq = {n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"} & BIG_TABLES
        if seq:  # a Seq Scan of a (nearly) empty table is the right plan: note it, don't flag it
            cursor.execute(
                "SELECT relname, reltuples FROM pg_class WHERE relname = ANY($1)", (sorted(seq),)
            )
            tiny = {name for name, rows in cursor.fetchall() if rows < TINY_TABLE_ROWS}
            seq -= tiny
            sql = f"(seq scan of nearly empty {sorted(tiny)}) {sql}"
        self.plans.append(
            {
                "sql": sql,
                "seq_scans": sorted(seq),
                "indexes": sorted({n["Index Name"] for n in nodes if "Index Name" in n}),
                "cost": plan["Total Cost"],
                "server_ms": top.get("Planning Time", 0) + top.get("Execution Time", 0),
            }
        )

    def take(self) -> list[dict[str, Any]]:
        found, self.plans = self.plans, []
        return found


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


def report_plans(title: str, plans: list[dict[str, Any]]) -> bool:
    ok = all(not p.get("seq_scans") and "error" not in p for p in plans)
    log(f"  EXPLAIN {title}: {'index only, no Seq Scan on big tables' if ok else 'SEQ SCAN'}")
    for p in plans:
        if "error" in p:
            log(f"    [EXPLAIN failed: {p['error']}]  {p['sql']}")
            continue
        flag = f"SEQ SCAN {p['seq_scans']}" if p["seq_scans"] else "ok"
        log(f"    [{flag}] indexes={p['indexes']} cost={p['cost']:.0f}  {p['sql']}")
    return ok


async def timed(work: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await work()
    return time.perf_counter() - started, result


# ---- (a) birthday audience -------------------------------------------------------------------


async def bench_birthday(
    maker: async_sessionmaker[AsyncSession], recorder: Recorder, settings: Settings, repeat: int
) -> dict[str, Any]:
    log(f"\n(a) birthday audience   [load {loadavg()}]")
    now = clock.now()
    async with maker() as session:
        campaign = (
            await session.execute(select(Campaign).where(Campaign.kind == "birthday"))
        ).scalar_one()
        target = await load_target(session, now=now)
    zone = target.program_tz
    day = now.astimezone(ZoneInfo(zone)).date()
    occ = Occurrence(f"{day.isoformat()}@{zone}", at_local(day, now.time(), zone), zone, day,
                     str(day.year))  # fmt: skip
    results: dict[str, list[float]] = {"materialise": [], "count_member": []}
    targeted = 0
    for i in range(repeat):
        async with maker() as session:
            await session.begin()
            recorder.on = i == 0
            seconds, made = await timed(
                lambda s=session: runs.materialise(
                    s,
                    campaign=campaign,
                    occurrence=occ,
                    target=replace(target, occurrence=occ),
                    settings=settings,
                )
            )
            recorder.on = False
            await session.rollback()
        results["materialise"].append(seconds)
        targeted = made.targeted if made else 0
        async with maker() as session, session.begin():
            seconds, _ = await timed(
                lambda s=session: s.execute(text("SELECT count(*) FROM member"))
            )
        results["count_member"].append(seconds)
    plans = recorder.take()
    best = min(results["materialise"])
    base = min(results["count_member"])
    log(f"  zone {zone}, local day {day}: {targeted:,} members targeted")
    log(
        f"  materialise (run + deliveries + inbox, rolled back): median "
        f"{ms(statistics.median(results['materialise']))}, best {ms(best)}  (goal < 1000 ms)"
    )
    log(
        f"  baseline SELECT count(*) FROM member: median "
        f"{ms(statistics.median(results['count_member']))}, best {ms(base)};"
        f" ratio {best / base:.2f}x"
    )
    ok = report_plans("birthday run", plans)
    return {
        "targeted": targeted,
        "materialise_ms": [round(s * 1000, 1) for s in results["materialise"]],
        "count_member_ms": [round(s * 1000, 1) for s in results["count_member"]],
        "plans_ok": ok,
    }


# ---- (b) insights refresh --------------------------------------------------------------------

STEPS = (
    ("stats", "rebuild_member_stats"),
    ("stats", "update_purchase_cycles"),
    ("stats", "update_lapsed"),
    ("abc", "classify"),
    ("abc", "record_month"),
    ("rfm", "score"),
    ("figures", "clear"),
    ("churn", "compute_monthly_churn"),
    ("churn", "compute_cohorts"),
    ("liability", "compute"),
    ("kpis", "compute_sales"),
    ("kpis", "compute_points"),
    ("member_day", "compute"),
    ("portfolio", "maintain"),
    ("lapse", "close_bought_again"),
    ("lapse", "open_new"),
    ("lapse", "auto_assign"),
)


def instrument_refresh(times: dict[str, float]) -> Callable[[], None]:
    """Wrap each step refresh() calls (module attributes) with a timer; returns an undo."""
    undo = []
    for module_name, fn_name in STEPS:
        module = getattr(insights_refresh, module_name)
        original = getattr(module, fn_name)

        async def wrapper(*a: Any, _f: Any = original, _k: str = f"{module_name}.{fn_name}",
                          **kw: Any) -> Any:  # fmt: skip
            started = time.perf_counter()
            try:
                return await _f(*a, **kw)
            finally:
                times[_k] = times.get(_k, 0.0) + time.perf_counter() - started

        setattr(module, fn_name, wrapper)
        undo.append((module, fn_name, original))

    def restore() -> None:
        for module, fn_name, original in undo:
            setattr(module, fn_name, original)

    return restore


async def bench_refresh(maker: async_sessionmaker[AsyncSession], runs_: int) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": []}
    for n in range(runs_):
        log(f"\n(b) insights refresh #{n + 1}   [load {loadavg()}]")
        times: dict[str, float] = {}
        restore = instrument_refresh(times)
        try:
            async with maker() as session, session.begin():
                seconds, row = await timed(
                    lambda s=session: insights_refresh.refresh(s, trigger="worker")
                )
        finally:
            restore()
        async with maker() as session, session.begin():
            base, _ = await timed(
                lambda s=session: s.execute(
                    text(
                        "SELECT count(*) FROM (SELECT member_id, sum(total) FROM loyalty_purchase"
                        " GROUP BY member_id) t"
                    )
                )
            )
        log(f"  refresh: {seconds:.1f} s  (goal < 60 s); counts {row.counts}")
        log(
            f"  baseline one GROUP BY member_id pass over loyalty_purchase: {base:.1f} s;"
            f" ratio {seconds / base:.1f}x"
        )
        for step, t in sorted(times.items(), key=lambda kv: -kv[1]):
            log(f"    {step:<32} {t:7.2f} s")
        out["runs"].append(
            {
                "seconds": round(seconds, 2),
                "baseline_groupby_s": round(base, 2),
                "steps": {k: round(v, 2) for k, v in times.items()},
                "load": loadavg(),
            }
        )
    return out


# ---- (c) balance and history lookups ----------------------------------------------------------


async def sample_members(maker: async_sessionmaker[AsyncSession], n: int, heavy: bool) -> list[int]:
    async with maker() as session:
        if heavy:  # the busiest 5 % of members: long histories, many live lots
            rows = await session.execute(
                text(
                    "SELECT member_id FROM loyalty_account WHERE purchases >= (SELECT"
                    " percentile_disc(0.95) WITHIN GROUP (ORDER BY purchases) FROM loyalty_account)"
                )
            )
        else:
            rows = await session.execute(text("SELECT max(id) FROM member"))
            top = rows.scalar_one()
            return [random.randint(1, top) for _ in range(n)]
        ids = list(rows.scalars())
    random.shuffle(ids)
    return ids[:n]


async def bench_lookups(
    maker: async_sessionmaker[AsyncSession], recorder: Recorder, samples: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    checked: list[dict[str, Any]] = []
    for heavy in (False, True):
        label = "busiest 5% of members" if heavy else "random members"
        log(f"\n(c) balance and history, {samples} {label}   [load {loadavg()}]")
        ids = await sample_members(maker, samples, heavy)
        times: dict[str, list[float]] = {"pk": [], "points": [], "history_1": [], "history_2": []}
        server: dict[str, list[float]] = {key: [] for key in times}
        rows_seen = 0
        for i, member_id in enumerate(ids):

            async def pk(s: AsyncSession, m: int = member_id) -> Any:
                return (
                    await s.execute(
                        select(Account.available, Account.pending).where(Account.member_id == m)
                    )
                ).first()

            async def points(s: AsyncSession, m: int = member_id) -> Any:
                return await accounts.points_view(s, m)

            async def first_page(s: AsyncSession, m: int = member_id) -> Any:
                return await ledger.history(s, m, page=PageParams())

            async def request(work: Callable[[AsyncSession], Awaitable[Any]]) -> tuple[float, Any]:
                # one request = one session and transaction, committed as get_session does
                started = time.perf_counter()
                async with maker() as s:
                    result = await work(s)
                    await s.commit()
                return time.perf_counter() - started, result

            t_pk, _ = await request(pk)
            t_points, _ = await request(points)
            t_h1, page = await request(first_page)
            times["pk"].append(t_pk)
            times["points"].append(t_points)
            times["history_1"].append(t_h1)
            rows_seen += len(page.items)
            calls: dict[str, Callable[[AsyncSession], Awaitable[Any]]] = {
                "pk": pk,
                "points": points,
                "history_1": first_page,
            }
            if page.next_cursor:
                cursor = page.next_cursor

                async def next_page(s: AsyncSession, m: int = member_id, c: str = cursor) -> Any:
                    return await ledger.history(s, m, page=PageParams(cursor=c))

                t_h2, _ = await request(next_page)
                times["history_2"].append(t_h2)
                calls["history_2"] = next_page
            if i < SERVER_SAMPLES:  # the same calls again under EXPLAIN ANALYZE: database time
                recorder.on = recorder.analyze = True
                for key, work in calls.items():
                    await request(work)
                    plans = recorder.take()
                    server[key].append(sum(p.get("server_ms", 0.0) for p in plans) / 1000)
                    if i == 0 and heavy:
                        checked.extend(plans)
                recorder.on = recorder.analyze = False
        stats = {}
        for key, values in times.items():
            if not values:
                continue
            stats[key] = {
                "n": len(values),
                "p50_ms": round(pct(values, 50) * 1000, 2),
                "p95_ms": round(pct(values, 95) * 1000, 2),
                "p99_ms": round(pct(values, 99) * 1000, 2),
                "max_ms": round(max(values) * 1000, 2),
            }
        names = {
            "pk": "baseline PK SELECT of the account",
            "points": "GET /v1/me/points  points_view",
            "history_1": "GET /v1/me/points/history page 1",
            "history_2": "  … next cursor page",
        }
        base = stats["pk"]["p99_ms"]
        for key, s in stats.items():
            ratio = "" if key == "pk" else f"  p99 {s['p99_ms'] / base:.1f}x baseline"
            goal = "" if key == "pk" else "  (goal p99 < 5 ms)"
            log(
                f"  {names[key]:<36} n={s['n']:<5} p50 {s['p50_ms']:.2f}  p95 {s['p95_ms']:.2f}"
                f"  p99 {s['p99_ms']:.2f}  max {s['max_ms']:.2f} ms{ratio}{goal}"
            )
        for key, values in server.items():
            if values:
                log(
                    f"  database time (EXPLAIN ANALYZE, planning + execution, n={len(values)})"
                    f" {names[key].strip(' …')}: p50 {pct(values, 50) * 1000:.3f}"
                    f"  p99 {pct(values, 99) * 1000:.3f} ms"
                )
                stats[key]["db_p50_ms"] = round(pct(values, 50) * 1000, 3)
                stats[key]["db_p99_ms"] = round(pct(values, 99) * 1000, 3)
        log(f"  ({rows_seen / len(ids):.1f} ledger rows on an average first page)")
        out["heavy" if heavy else "random"] = stats
    out["plans_ok"] = report_plans("points, history (a busy member)", checked)
    return out


# ---- main -------------------------------------------------------------------------------------


async def has_data(url: str) -> bool:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return bool((await conn.execute(text("SELECT count(*) FROM member"))).scalar_one())
    finally:
        await engine.dispose()


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings(database_url=url)
    results: dict[str, Any] = {"members": args.members, "purchases": args.purchases}
    if args.reuse and await has_data(url):
        log("reusing the data already loaded")
    else:
        engine = make_engine(url)
        maker = make_sessionmaker(engine)
        t0 = time.perf_counter()
        org = await scale_load.build_org(maker, settings)
        await engine.dispose()
        log(f"organisation through the services: {time.perf_counter() - t0:.1f} s")
        log(f"loading {args.members:,} members, {args.purchases:,} purchases  [load {loadavg()}]")
        stats = await scale_load.load(
            url, org, settings, members=args.members, purchases=args.purchases, log=log
        )
        rows = sum(v for k, v in stats.rows.items() if k != "lots_updated")
        copy_s = stats.seconds["copy_total"]
        log(f"loaded {rows:,} rows:")
        for table, n in stats.rows.items():
            log(f"  {table:<24} {n:>12,}")
        for step, s in stats.seconds.items():
            log(f"  {step:<24} {s:>10.1f} s")
        log(
            f"COPY rate {rows / copy_s:,.0f} rows/s (generation + COPY + lot update,"
            f" {copy_s:.0f} s); with index rebuild and VACUUM ANALYZE"
            f" {rows / stats.seconds['total']:,.0f} rows/s ({stats.seconds['total']:.0f} s)"
        )
        results["load"] = {"rows": stats.rows, "seconds": stats.seconds, "load": loadavg()}
    engine = make_engine(url, pool_size=2)
    maker = make_sessionmaker(engine)
    recorder = Recorder(engine)
    try:
        async with maker() as session:
            sizes = await session.execute(
                text(
                    "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class"
                    " WHERE relname = ANY(:t) ORDER BY pg_total_relation_size(oid) DESC"
                ),
                {"t": sorted(BIG_TABLES)},
            )
            log("table sizes: " + ", ".join(f"{t} {s}" for t, s in sizes.all()))
        if "birthday" in args.only:
            results["birthday"] = await bench_birthday(maker, recorder, settings, args.repeat)
        if "lookups" in args.only:
            results["lookups"] = await bench_lookups(maker, recorder, args.samples)
        if "refresh" in args.only:
            results["refresh"] = await bench_refresh(maker, args.refresh_runs)
            if "birthday" in args.only:  # once more with figures and a previous run in place
                results["birthday_after_refresh"] = await bench_birthday(
                    maker, recorder, settings, args.repeat
                )
    finally:
        await engine.dispose()
    results["load_average_end"] = loadavg()
    return results


def main(url: str, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench scale")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--purchases", type=int, default=10_000_000)
    parser.add_argument("--samples", type=int, default=1000, help="members per lookup sample")
    parser.add_argument("--repeat", type=int, default=5, help="birthday runs to time")
    parser.add_argument("--refresh-runs", type=int, default=2)
    parser.add_argument(
        "--only", nargs="+", default=["birthday", "lookups", "refresh"],
        choices=["birthday", "lookups", "refresh"],
    )  # fmt: skip
    parser.add_argument("--reuse", action="store_true", help="keep data already in the database")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    log(f"machine: {os.cpu_count()} CPUs, load average {loadavg()}; started {datetime.now()}")
    migrate.upgrade_head(url)
    results = asyncio.run(run(url, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
