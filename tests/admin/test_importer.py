"""The member import service (console and `loyalty import-members`): every row checked before
anything is written, de-duplication by phone within the file and against members, chunked
enrolment with progress in the database, opening balances, and the command line."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from api.cli import main
from api.core.config import get_settings
from api.loyalty.ledger import accounts
from api.members import importer
from api.members import service as members_service
from api.members.models import Member
from tests import factories
from tests.conftest import sqlite_only

HEADER = "phone,name,birthday,gender,email,plate,home_store_code,consent_push,consent_sms,points\n"


async def credit(session, member_id: int, points: int, actor: str) -> None:  # type: ignore[no-untyped-def]
    await accounts.adjust(session, member_id=member_id, points=points, reason="legacy", actor=actor)


async def members_with(session, phones: list[str]) -> int:  # type: ignore[no-untyped-def]
    stmt = select(func.count()).select_from(Member).where(Member.phone.in_(phones))
    return int(await session.scalar(stmt))


async def test_rows_are_checked_and_nothing_is_written_before_start(session, settings, org):
    existing = await factories.make_member(session, settings, phone="+8613922220001")
    content = (
        HEADER
        + f"13922220002,周一,1988-05-06,女,zhou@example.com,粤B12345,{org.fuel_b.code},1,0,500\n"
        + "139 2222 0003,吴二,,M,,,,yes,no,\n"
        + "+86 139-2222-0002,重复,,,,,,0,0,\n"  # same phone as line 2, written differently
        + f"{existing.phone},老会员,,,,,,1,1,\n"  # already a member
        + "12345,坏号码,2099-01-01,unknown,not-an-email,!!,NOPE,maybe,2,-5\n"
        + "13922220006,无店,,,,,NOPE,1,1,\n"
    )
    job = await importer.create_job(
        session, settings=settings, filename="old.csv", content=content.encode(), source="console"
    )
    assert (job.total_rows, job.valid_rows, job.existing_rows, job.error_rows) == (6, 2, 1, 3)
    assert job.status == "validated"
    rows = {r.line_no: r for r in await importer.problem_rows(session, job.id)}
    assert rows[4].status == "error" and "same phone as line 2" in rows[4].errors[0]["message"]
    assert rows[5].status == "exists"
    bad = {e["field"] for e in rows[6].errors}
    assert {"phone", "gender", "plate", "consent_push", "consent_sms", "points"} <= bad
    assert rows[7].errors == [
        {"field": "home_store_code", "message": "no store has the code 'NOPE'"}
    ]
    assert await members_with(session, ["+8613922220002", "+8613922220003"]) == 0


async def test_start_enrols_in_chunks_with_progress_and_opening_balances(
    session, settings, org, maker
):
    content = HEADER + "".join(
        f"1392333{i:04d},会员{i},,,,,{org.supermarket.code},1,0,{i * 10}\n" for i in range(1, 6)
    )
    job = await importer.create_job(
        session, settings=settings, filename="five.csv", content=content.encode(), source="cli"
    )
    started = await importer.start(session, job.id)
    assert not started.stalled  # the page polls until a runner reports
    await session.commit()
    seen: list[int] = []
    done = await importer.run(
        maker,
        job.id,
        settings=settings,
        credit_points=credit,
        on_progress=lambda j: seen.append(j.processed),
        size=2,
    )
    assert done.status == "done" and done.imported == 5 and done.percent == 100
    assert seen == [2, 4, 5]
    member = await members_service.find_by_phone(session, "+8613923330003")
    assert member is not None and member.home_store_id == org.supermarket.id
    assert member.enrolled_via == "import"
    assert (await accounts.balance_of(session, member.id)).available == 30
    assert await importer.pending_count(session, job.id) == 0
    with pytest.raises(importer.ImportNotStartable):
        await importer.start(session, job.id)


async def test_a_phone_that_joins_meanwhile_is_skipped_not_duplicated(session, settings, maker):
    content = HEADER + "13924440001,甲,,,,,,1,0,\n13924440002,乙,,,,,,1,0,\n"
    job = await importer.create_job(
        session, settings=settings, filename="race.csv", content=content.encode(), source="cli"
    )
    await factories.make_member(session, settings, phone="+8613924440002")
    await importer.start(session, job.id)
    await session.commit()
    done = await importer.run(maker, job.id, settings=settings, credit_points=credit)
    assert (done.imported, done.skipped, done.failed) == (1, 1, 0)


async def test_a_live_runner_is_not_overtaken_but_a_stale_one_is(session, settings):
    content = HEADER + "13925550001,甲,,,,,,1,0,\n"
    job = await importer.create_job(
        session, settings=settings, filename="one.csv", content=content.encode(), source="cli"
    )
    await importer.start(session, job.id)
    job.runner, job.heartbeat_at = "someone-else", importer.clock.now()
    await session.flush()
    _, worked = await importer.run_chunk(session, job_id=job.id, settings=settings, runner="me")
    assert not worked and not job.stalled
    job.heartbeat_at = importer.clock.now() - importer.STALE_AFTER * 2
    await session.flush()
    assert job.stalled
    done, worked = await importer.run_chunk(session, job_id=job.id, settings=settings, runner="me")
    assert worked and done.status == "done" and done.imported == 1


async def test_gb18030_files_and_bad_headers(session, settings):
    content = (HEADER + "13926660001,王小明,1990-01-01,男,,,,是,否,\n").encode("gb18030")
    job = await importer.create_job(
        session, settings=settings, filename="gbk.csv", content=content, source="cli"
    )
    assert job.valid_rows == 1
    with pytest.raises(importer.InvalidImportFile):
        await importer.create_job(
            session, settings=settings, filename="x.csv", content=b"name,email\n", source="cli"
        )


async def test_cancel_drops_a_checked_file(session, settings):
    content = HEADER + "13927770001,甲,,,,,,1,0,\n"
    job = await importer.create_job(
        session, settings=settings, filename="no.csv", content=content.encode(), source="cli"
    )
    await importer.cancel(session, job.id)
    assert job.status == "cancelled"
    with pytest.raises(importer.ImportNotStartable):
        await importer.start(session, job.id)


async def test_console_upload_preview_and_import(console_for, org, session):
    console = await console_for(org.staff["admin"].email)
    await console.get("/imports")
    csv = HEADER + "13928880001,甲,,,,,,1,0,100\nbad,乙,,,,,,1,0,\n"
    uploaded = await console.client.post(
        "/admin/imports",
        data={"csrf_token": console.csrf},
        files={"file": ("legacy.csv", csv.encode(), "text/csv")},
    )
    assert uploaded.status_code == 303
    preview = await console.get(uploaded.headers["location"].removeprefix("/admin"))
    assert 'data-valid-rows="1"' in preview.text and 'data-error-rows="1"' in preview.text
    assert await members_with(session, ["+8613928880001"]) == 0
    job_id = uploaded.headers["location"].rsplit("/", 1)[1]
    started = await console.post(f"/imports/{job_id}/start")  # the import runs after the response
    assert started.status_code == 303
    progress = await console.get(f"/imports/{job_id}/progress")
    assert 'data-status="done"' in progress.text and 'data-imported="1"' in progress.text
    assert await members_with(session, ["+8613928880001"]) == 1


@sqlite_only
def test_the_command_line_checks_prints_errors_and_imports(tmp_path: Path, monkeypatch):
    db = tmp_path / "cli.db"
    monkeypatch.setenv("LOYALTY_DATABASE_URL", f"sqlite+aiosqlite:///{db}")
    monkeypatch.setenv("LOYALTY_ENV", "development")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        assert runner.invoke(main, ["migrate"]).exit_code == 0
        csv = tmp_path / "members.csv"
        csv.write_text(
            HEADER + "13929990001,甲,,,,,,1,0,10\n13929990002,乙,,,,,,1,0,\nnope,丙,,,,,,1,0,\n",
            encoding="utf-8",
        )
        dry = runner.invoke(main, ["import-members", str(csv), "--dry-run"])
        assert dry.exit_code == 1
        assert "line 4: phone: 'nope' is not a valid phone number" in dry.output
        assert "2 to import" in dry.output and "nothing imported" in dry.output
        result = runner.invoke(main, ["import-members", str(csv), "--yes"])
        assert "importing" in result.output
        assert "imported 2, skipped 0, not imported 1" in result.output
        assert result.exit_code == 1  # one row was refused
        again = runner.invoke(main, ["import-members", str(csv)], input="y\n")
        assert "0 to import, 2 already members (skipped)" in again.output
    finally:
        get_settings.cache_clear()
