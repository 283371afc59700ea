"""`loyalty` console script: serve, worker, migrate, demo, create-admin, ledger-check,
import-members."""

import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import click

from api.core.config import Settings, get_settings


def _setup_logging() -> None:
    from pydantic import ValidationError

    try:
        get_settings()
    except ValidationError as e:  # a refused setting (e.g. a weak secret): its reason, no trace
        reasons = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in e.errors())
        raise click.ClickException(reasons) from e
    logging.basicConfig(
        level=get_settings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@click.group()
def main() -> None:
    """Loyalty platform: member cards, points, campaigns and insights."""
    _setup_logging()


@main.command()
def migrate() -> None:
    """Upgrade the database to the latest schema."""
    from api.core import migrate as migrations

    migrations.upgrade_head(get_settings().database_url)
    click.echo("database is at the latest schema")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--demo", is_flag=True, help="Load the demo programme if the database is empty.")
@click.option("--workers", default=1, show_default=True, help="uvicorn worker processes")
def serve(host: str, port: int, demo: bool, workers: int) -> None:
    """Serve the API and console (on SQLite: migrate first and run the worker in-process)."""
    import uvicorn

    from api.core import migrate as migrations

    settings = get_settings()
    refuse_open_development_secret(settings, host)
    if settings.is_sqlite:
        migrations.upgrade_head(settings.database_url)
    if demo:
        from api import demo as demo_data

        if not _load_demo(demo_data.load_if_empty, settings):
            click.echo("demo not loaded: the database already holds data")
    base = f"http://{host}:{port}"
    click.echo(f"console {base}/admin · API docs {base}/docs")
    uvicorn.run("api.main:app", host=host, port=port, workers=workers, proxy_headers=True)


def refuse_open_development_secret(settings: Settings, host: str) -> None:
    """Development accepts any secret, but only for a server this machine alone can reach:
    with a known secret anyone could sign tokens, an admin's too."""
    from api.core.config import GENERATE_SECRET, is_loopback, secret_problem

    problem = secret_problem(settings.secret_key, env=settings.env)
    if settings.env == "development" and problem and not is_loopback(host):
        raise click.ClickException(
            f"refusing to listen on {host}: LOYALTY_SECRET_KEY is not fit to sign tokens "
            f"({problem}), and anyone who can reach this address could forge an admin's. "
            "Listen on 127.0.0.1, or set a random secret first, e.g. "
            f"`export LOYALTY_SECRET_KEY=$({GENERATE_SECRET})`"
        )


@main.command()
@click.option("--once", is_flag=True, help="Drain what is due now and exit.")
def worker(once: bool) -> None:
    """Run due background work (housekeeping now; campaigns, expiry and more as they land)."""
    from api import worker as worker_loop

    asyncio.run(worker_loop.run(get_settings(), once=once))


@main.command()
@click.option("--force", is_flag=True, help="Load even if the database already has members.")
def demo(force: bool) -> None:
    """Load the demo programme: regions, stores, terminals, staff and members."""
    from api import demo as demo_data

    loaded = _load_demo(demo_data.load if force else demo_data.load_if_empty, get_settings())
    if not loaded:
        click.echo("the database already holds data; use --force to add the demo anyway")


def _load_demo(loader: Callable[[Settings], Awaitable[bool]], settings: Settings) -> bool:
    """Run a demo loader; a refusal or a clash with existing data becomes a clean message."""
    from api import demo as demo_data
    from api.core.errors import DomainError

    try:
        return asyncio.run(loader(settings))
    except demo_data.DemoRefused as e:
        raise click.ClickException(str(e)) from e
    except DomainError as e:  # e.g. RegionExists when --force meets an earlier demo
        raise click.ClickException(f"the demo clashes with existing data: {e.detail}") from e


@main.command("create-admin")
@click.option("--email", prompt=True)
@click.option("--name", default="Administrator")
@click.option("--password", help="Read from the terminal when omitted.")
def create_admin(email: str, name: str, password: str | None) -> None:
    """Create an admin account."""
    from api.core.db import make_engine, make_sessionmaker, run_in_transaction
    from api.org import service as org_service
    from api.org.models import Role
    from api.org.schemas import StaffCreate

    if password is None:
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat: "):
            raise click.ClickException("passwords differ")
    try:
        data = StaffCreate(email=email, password=password, name=name, role=Role.admin)
    except ValueError as e:
        raise click.ClickException(str(e)) from e

    async def run() -> None:
        engine = make_engine(get_settings().database_url)
        try:
            await run_in_transaction(
                make_sessionmaker(engine), lambda s: org_service.create_staff(s, data=data)
            )
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as e:  # a domain error (e.g. StaffExists) becomes a clean message
        raise click.ClickException(getattr(e, "detail", str(e))) from e
    click.echo(f"admin {email} created")


@main.command("ledger-check")
def ledger_check() -> None:
    """Verify cached balances and lots against the ledger for every member (exit 1 on any)."""
    from api.core.db import make_engine, make_sessionmaker, run_in_transaction
    from api.loyalty.ledger.check import Mismatch, check_ledger

    async def run() -> list[Mismatch]:
        engine = make_engine(get_settings().database_url)
        try:
            return await run_in_transaction(make_sessionmaker(engine), check_ledger)
        finally:
            await engine.dispose()

    mismatches = asyncio.run(run())
    for mismatch in mismatches:
        click.echo(str(mismatch))
    if mismatches:
        click.echo(f"{len(mismatches)} member(s) do not match the ledger", err=True)
        sys.exit(1)
    click.echo("ledger consistent: every balance equals the sum of its entries")


@main.command("import-members")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Import without asking after the check.")
@click.option("--dry-run", is_flag=True, help="Only check the rows; write nothing.")
def import_members(file: Path, yes: bool, dry_run: bool) -> None:
    """Import legacy member records from a CSV file (checked row by row first)."""
    from api.core.db import make_engine, make_sessionmaker, run_in_transaction
    from api.core.errors import DomainError
    from api.loyalty.ledger import accounts
    from api.members import importer

    settings = get_settings()

    async def credit(session, member_id: int, points: int, actor: str) -> None:  # type: ignore[no-untyped-def]
        await accounts.adjust(
            session,
            member_id=member_id,
            points=points,
            reason="balance from the legacy system",
            actor=actor,
        )

    async def run() -> int:
        engine = make_engine(settings.database_url)
        maker = make_sessionmaker(engine)
        try:
            job = await run_in_transaction(
                maker,
                lambda s: importer.create_job(
                    s,
                    settings=settings,
                    filename=file.name,
                    content=file.read_bytes(),
                    source="cli",
                ),
            )
            rows = await run_in_transaction(maker, lambda s: importer.problem_rows(s, job.id))
            for row in rows:
                for problem in row.errors or []:
                    click.echo(
                        f"line {row.line_no}: {problem['field']}: {problem['message']}", err=True
                    )
            click.echo(
                f"{job.total_rows} rows: {job.valid_rows} to import, "
                f"{job.existing_rows} already members (skipped), {job.error_rows} with errors"
            )
            if dry_run or not job.valid_rows or not (yes or click.confirm("Import now?")):
                await run_in_transaction(maker, lambda s: importer.cancel(s, job.id))
                click.echo("nothing imported")
                return 1 if job.error_rows else 0
            await run_in_transaction(maker, lambda s: importer.start(s, job.id))
            with click.progressbar(length=job.valid_rows, label="importing") as bar:
                done = 0

                def advance(current: importer.MemberImportJob) -> None:
                    nonlocal done
                    bar.update(current.processed - done)
                    done = current.processed

                job = await importer.run(
                    maker, job.id, settings=settings, credit_points=credit, on_progress=advance
                )
            failed = await run_in_transaction(maker, lambda s: importer.problem_rows(s, job.id))
            for row in failed:
                if row.status == "failed":
                    for problem in row.errors or []:
                        click.echo(f"line {row.line_no}: {problem['message']}", err=True)
            click.echo(
                f"imported {job.imported}, skipped {job.skipped + job.existing_rows}, "
                f"not imported {job.failed + job.error_rows}"
            )
            return 1 if job.failed or job.error_rows else 0
        finally:
            await engine.dispose()

    try:
        code = asyncio.run(run())
    except DomainError as e:
        raise click.ClickException(e.detail) from e
    sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())
