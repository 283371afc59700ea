"""Admins: import legacy member records from CSV — validate and preview, confirm, watch progress.

The enrolment runs after the confirming response, in this process, chunk by chunk; progress
lives in the job row, so the page may poll any replica, and a job whose process died is
taken over by "Resume" once its heartbeat is stale.
"""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from admin.web import AdminPage, attempt
from api.core.config import Settings
from api.core.db import SessionDep
from api.loyalty.ledger import accounts
from api.members import importer

router = APIRouter()
MAX_UPLOAD = 20 * 1024 * 1024


async def credit_opening_balance(
    session: AsyncSession, member_id: int, points: int, actor: str
) -> None:
    """A legacy balance becomes an adjustment that expires like earned points."""
    await accounts.adjust(
        session,
        member_id=member_id,
        points=points,
        reason="balance from the legacy system",
        actor=actor,
    )


async def _run(maker: object, job_id: int, settings: Settings) -> None:
    await importer.run(maker, job_id, settings=settings, credit_points=credit_opening_balance)  # type: ignore[arg-type]


@router.get("/imports", response_class=HTMLResponse)
async def index(page: AdminPage, db: SessionDep) -> HTMLResponse:
    """Upload a CSV of legacy members; earlier imports below."""
    return page.render(
        "imports/index.html", jobs=await importer.list_jobs(db), columns=importer.COLUMNS
    )


@router.post("/imports", response_model=None)
async def upload(
    page: AdminPage, db: SessionDep, file: Annotated[UploadFile, File()]
) -> HTMLResponse | RedirectResponse:
    """Check every row of the file; nothing is enrolled until the preview is confirmed."""
    content = await file.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        error = f"The file is larger than {MAX_UPLOAD // (1024 * 1024)} MB; split it."
    else:
        job, failure = await attempt(
            db,
            lambda: importer.create_job(
                db,
                settings=page.settings,
                filename=file.filename or "members.csv",
                content=content,
                source="console",
                staff_id=page.staff.id,
            ),
        )
        if failure is None:
            return page.redirect(f"/imports/{job.id}")
        error = failure.detail
    return page.render(
        "imports/index.html",
        jobs=await importer.list_jobs(db),
        columns=importer.COLUMNS,
        error=error,
        status_code=422,
    )


@router.get("/imports/{job_id}", response_class=HTMLResponse)
async def job(job_id: int, page: AdminPage, db: SessionDep) -> HTMLResponse:
    """The preview of a checked file (per-row errors), or the progress of its import."""
    found = await importer.get_job(db, job_id)
    return page.render(
        "imports/job.html", job=found, rows=await importer.problem_rows(db, found.id)
    )


@router.get("/imports/{job_id}/progress", response_class=HTMLResponse)
async def progress(job_id: int, page: AdminPage, db: SessionDep) -> HTMLResponse:
    """The progress bar (polled while the import runs)."""
    return page.render("imports/_progress.html", job=await importer.get_job(db, job_id))


@router.post("/imports/{job_id}/start")
async def start(
    job_id: int, page: AdminPage, db: SessionDep, background: BackgroundTasks
) -> RedirectResponse:
    """Enrol the valid rows (after the response, in chunks)."""
    _, error = await attempt(db, lambda: importer.start(db, job_id))
    if error is not None:
        return page.redirect(f"/imports/{job_id}", ("error", error.detail))
    background.add_task(_run, page.request.app.state.sessionmaker, job_id, page.settings)
    return page.redirect(f"/imports/{job_id}", ("info", "Import started."))


@router.post("/imports/{job_id}/resume")
async def resume(
    job_id: int, page: AdminPage, db: SessionDep, background: BackgroundTasks
) -> RedirectResponse:
    """Take over an import whose runner stopped reporting."""
    found = await importer.get_job(db, job_id)
    if found.stalled:
        background.add_task(_run, page.request.app.state.sessionmaker, job_id, page.settings)
    return page.redirect(f"/imports/{job_id}")


@router.post("/imports/{job_id}/cancel")
async def cancel(job_id: int, page: AdminPage, db: SessionDep) -> RedirectResponse:
    """Drop a checked file without importing anything."""
    _, error = await attempt(db, lambda: importer.cancel(db, job_id))
    if error is not None:
        return page.redirect(f"/imports/{job_id}", ("error", error.detail))
    return page.redirect("/imports", ("info", "Import cancelled; nothing was written."))
