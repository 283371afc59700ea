"""Member import from legacy CSV files: validate every row first, then enrol in chunks.

A job is written with one row per CSV line: `pending` (valid, to enrol), `exists` (the phone is
already a member; skipped), or `error` (with the reasons). Nothing is enrolled until the job is
started. Running enrols the pending rows in chunks, one transaction each, locking the job row,
so progress lives in the database: any replica can report it, and a job whose runner died is
taken over once its heartbeat is stale. Opening balances (`points`) are credited through a
callback the caller passes, since members sit below loyalty in the dependency order.
"""

import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from api.core import clock
from api.core.config import Settings
from api.core.db import Base, created_at_column, pk_column, run_in_transaction
from api.core.errors import DomainError, InvalidInput, NotFound
from api.members import service
from api.members.exceptions import MemberExists
from api.members.import_csv import COLUMNS, InvalidImportFile, decode, parse
from api.members.models import Member, Vehicle
from api.members.schemas import MemberCreate
from api.org import service as org_service

CHUNK = 200
STALE_AFTER = timedelta(seconds=60)
CreditPoints = Callable[[AsyncSession, int, int, str], Awaitable[None]]
Progress = Callable[["MemberImportJob"], None]
__all__ = ["COLUMNS", "InvalidImportFile"]  # the file format, re-exported for callers


class ImportJobNotFound(NotFound):
    """No such import job."""


class ImportNotStartable(InvalidInput):
    """Only a validated import with rows to enrol can be started."""


class MemberImportJob(Base):
    """One uploaded file: its validation summary and the progress of its enrolment."""

    __tablename__ = "member_import_job"

    id: Mapped[int] = pk_column()
    filename: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(12), doc="console | cli")
    staff_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), doc="validated | running | done | cancelled")
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    valid_rows: Mapped[int] = mapped_column(Integer, default=0, doc="rows to enrol")
    existing_rows: Mapped[int] = mapped_column(Integer, default=0, doc="phone already a member")
    error_rows: Mapped[int] = mapped_column(Integer, default=0)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0, doc="became a member meanwhile")
    failed: Mapped[int] = mapped_column(Integer, default=0)
    runner: Mapped[str | None] = mapped_column(String(32))
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    @property
    def processed(self) -> int:
        return self.imported + self.skipped + self.failed

    @property
    def percent(self) -> int:
        return 100 if not self.valid_rows else min(100, self.processed * 100 // self.valid_rows)

    @property
    def stalled(self) -> bool:
        """Running, but no runner has reported for a while (its process may have died)."""
        return self.status == "running" and (
            self.heartbeat_at is None or self.heartbeat_at < clock.now() - STALE_AFTER
        )


class MemberImportRow(Base):
    """A CSV line: its parsed values (until enrolled), status and per-row errors."""

    __tablename__ = "member_import_row"
    __table_args__ = (UniqueConstraint("job_id", "line_no"),)

    id: Mapped[int] = pk_column()
    job_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("member_import_job.id", ondelete="CASCADE")
    )
    line_no: Mapped[int] = mapped_column(Integer, doc="line in the file, the header is line 1")
    status: Mapped[str] = mapped_column(
        String(10), doc="pending | exists | error | imported | skipped | failed"
    )
    phone: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="cleared once enrolled")
    errors: Mapped[list[dict[str, str]] | None] = mapped_column(JSON)
    member_id: Mapped[int | None] = mapped_column(BigInteger)


# ----------------------------------------------------------------------------- validation


async def _existing(session: AsyncSession, column: Any, values: Iterable[str | None]) -> set[str]:
    wanted = sorted({v for v in values if v})
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        stmt = select(column).where(column.in_(wanted[start : start + 500]))
        found |= set((await session.execute(stmt)).scalars())
    return found


async def _store_ids(session: AsyncSession, codes: Iterable[str]) -> dict[str, int]:
    found = {}
    for code in sorted(set(codes)):
        try:
            found[code] = (await org_service.get_store_by_code(session, code)).id
        except NotFound:
            continue
    return found


async def create_job(
    session: AsyncSession,
    *,
    settings: Settings,
    filename: str,
    content: bytes,
    source: str,
    staff_id: int | None = None,
) -> MemberImportJob:
    """Check every row (alone, within the file, against existing members) and keep the result;
    nothing is enrolled until `start`."""
    rows = parse(decode(content), region=settings.default_phone_region)
    if not rows:
        raise InvalidImportFile("the file has a header but no member rows")
    phones = await _existing(session, Member.phone, (r.phone for r in rows if r.data))
    plates = await _existing(session, Vehicle.plate, (r.plate for r in rows if r.data and r.plate))
    stores = await _store_ids(session, (r.store_code for r in rows if r.store_code))
    job = MemberImportJob(
        filename=filename[:255] or "members.csv",
        source=source,
        staff_id=staff_id,
        status="validated",
        total_rows=len(rows),
        created_at=clock.now(),
    )
    session.add(job)
    await session.flush()
    records = []
    for row in rows:
        status = "error" if row.errors else "pending"
        if row.data is not None and row.phone in phones:
            status = "exists"
        elif row.data is not None:
            if row.store_code and row.store_code not in stores:
                row.fail("home_store_code", f"no store has the code {row.store_code!r}")
            if row.plate and row.plate in plates:
                row.fail("plate", "this plate is registered to an existing member")
            if row.errors:
                status = "error"
            elif row.store_code:
                row.data["home_store_id"] = stores[row.store_code]
        records.append(
            {
                "job_id": job.id,
                "line_no": row.line_no,
                "status": status,
                "phone": row.phone,
                "data": row.data if status == "pending" else None,
                "errors": row.errors or None,
            }
        )
    for start in range(0, len(records), 1000):
        await session.execute(MemberImportRow.__table__.insert(), records[start : start + 1000])
    job.valid_rows = sum(r["status"] == "pending" for r in records)
    job.existing_rows = sum(r["status"] == "exists" for r in records)
    job.error_rows = sum(r["status"] == "error" for r in records)
    await session.flush()
    return job


# ----------------------------------------------------------------------------- reading


async def get_job(session: AsyncSession, job_id: int) -> MemberImportJob:
    job = await session.get(MemberImportJob, job_id)
    if job is None:
        raise ImportJobNotFound()
    return job


async def list_jobs(session: AsyncSession, *, limit: int = 20) -> list[MemberImportJob]:
    """The latest import jobs, newest first."""
    stmt = select(MemberImportJob).order_by(MemberImportJob.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


async def problem_rows(
    session: AsyncSession, job_id: int, *, limit: int = 500
) -> list[MemberImportRow]:
    """Rows refused at validation or when enrolling, and rows skipped as existing members."""
    stmt = (
        select(MemberImportRow)
        .where(
            MemberImportRow.job_id == job_id,
            MemberImportRow.status.in_(("error", "failed", "exists", "skipped")),
        )
        .order_by(MemberImportRow.line_no)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


# ----------------------------------------------------------------------------- running


async def _locked(session: AsyncSession, job_id: int) -> MemberImportJob:
    stmt = (
        select(MemberImportJob)
        .where(MemberImportJob.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    job = (await session.execute(stmt)).scalar_one_or_none()
    if job is None:
        raise ImportJobNotFound()
    return job


async def start(session: AsyncSession, job_id: int) -> MemberImportJob:
    """Confirm a validated job: its pending rows will be enrolled."""
    job = await _locked(session, job_id)
    if job.status != "validated" or job.valid_rows == 0:
        raise ImportNotStartable()
    job.status = "running"
    job.started_at = job.heartbeat_at = clock.now()  # fresh until a runner reports
    await session.flush()
    return job


async def cancel(session: AsyncSession, job_id: int) -> MemberImportJob:
    """Drop a validated job without enrolling anyone (its parsed rows are removed)."""
    job = await _locked(session, job_id)
    if job.status != "validated":
        raise ImportNotStartable("only an import that has not started can be cancelled")
    job.status = "cancelled"
    await session.execute(
        update(MemberImportRow).where(MemberImportRow.job_id == job.id).values(data=None)
    )
    await session.flush()
    return job


async def _enrol_row(
    session: AsyncSession,
    job: MemberImportJob,
    row: MemberImportRow,
    *,
    settings: Settings,
    credit_points: CreditPoints | None,
) -> None:
    data = dict(row.data or {})
    points = int(data.pop("points", 0) or 0)
    try:
        async with session.begin_nested():
            member = await service.enrol(
                session,
                settings=settings,
                data=MemberCreate.model_validate(data),
                via="import",
            )
            if points and credit_points is not None:
                await credit_points(session, member.id, points, f"import:{job.id}")
    except MemberExists:
        row.status = "skipped"
        job.skipped += 1
    except (DomainError, ValidationError) as e:
        detail = getattr(e, "detail", None) or str(e)
        row.status, row.errors = "failed", [{"field": "row", "message": str(detail)}]
        job.failed += 1
    else:
        row.status, row.member_id = "imported", member.id
        job.imported += 1
    row.data = None


async def run_chunk(
    session: AsyncSession,
    *,
    job_id: int,
    settings: Settings,
    runner: str,
    credit_points: CreditPoints | None = None,
    size: int = CHUNK,
) -> tuple[MemberImportJob, bool]:
    """Enrol the next `size` pending rows; (job, whether this call did any work)."""
    job = await _locked(session, job_id)
    now = clock.now()
    busy_elsewhere = (
        job.runner not in (None, runner)
        and job.heartbeat_at is not None
        and job.heartbeat_at >= now - STALE_AFTER
    )
    if job.status != "running" or busy_elsewhere:
        return job, False
    job.runner, job.heartbeat_at = runner, now
    stmt = (
        select(MemberImportRow)
        .where(MemberImportRow.job_id == job.id, MemberImportRow.status == "pending")
        .order_by(MemberImportRow.line_no)
        .limit(size)
    )
    rows = list((await session.execute(stmt)).scalars())
    for row in rows:
        await _enrol_row(session, job, row, settings=settings, credit_points=credit_points)
    if len(rows) < size:
        job.status, job.finished_at, job.runner = "done", clock.now(), None
    job.heartbeat_at = clock.now()
    await session.flush()
    return job, True


async def run(
    maker: async_sessionmaker[AsyncSession],
    job_id: int,
    *,
    settings: Settings,
    credit_points: CreditPoints | None = None,
    on_progress: Progress | None = None,
    size: int = CHUNK,
) -> MemberImportJob:
    """Enrol a started job chunk by chunk, one transaction each, until it is done (or another
    live runner owns it)."""
    runner = uuid.uuid4().hex

    async def step(session: AsyncSession) -> tuple[MemberImportJob, bool]:
        return await run_chunk(
            session,
            job_id=job_id,
            settings=settings,
            runner=runner,
            credit_points=credit_points,
            size=size,
        )

    while True:
        job, worked = await run_in_transaction(maker, step)
        if on_progress is not None:
            on_progress(job)
        if not worked or job.status != "running":
            return job


async def pending_count(session: AsyncSession, job_id: int) -> int:
    stmt = select(func.count()).where(
        MemberImportRow.job_id == job_id, MemberImportRow.status == "pending"
    )
    return int((await session.execute(stmt)).scalar_one())
