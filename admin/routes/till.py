"""The cashier screen: identify the member, post a receipt, redeem points or a coupon.

The console acts as one terminal per store (api.org.service.console_terminal), so the scan, the
till token it issues and every later step run through the same services as a POS.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from admin import receipt_form
from admin.web import Page, TillPage, attempt
from api.core import clock
from api.core.db import SessionDep
from api.loyalty.ledger import accounts
from api.loyalty.program import service as program_service
from api.loyalty.rewards import service as rewards_service
from api.loyalty.till import purchases, redemptions
from api.loyalty.till import texts as till_texts
from api.loyalty.till.context import Till
from api.loyalty.till.schemas import RedemptionIn
from api.members import identity
from api.members import service as members_service
from api.org import service as org_service
from api.org.models import Store, StoreKind

router = APIRouter()

CATEGORIES = (
    "grocery",
    "fresh",
    "dairy",
    "bakery",
    "beverages",
    "snacks",
    "household",
    "personal care",
    "alcohol",
    "tobacco",
    "car care",
    "fuel",
)


async def _store(db: SessionDep, page: Page) -> Store:
    assert page.staff.store_id is not None  # cashiers and store managers belong to a store
    return await org_service.get_store(db, page.staff.store_id)


async def _till(db: SessionDep, page: Page) -> Till:
    store = await _store(db, page)
    terminal = await org_service.console_terminal(db, store)
    return Till(store=store, terminal_id=terminal.id, actor=f"staff:{page.staff.id}")


def _receipt_no(store: Store) -> str:
    return f"C-{store.code}-{clock.now():%y%m%d%H%M%S}"


def _context(store: Store, **values: Any) -> dict[str, Any]:
    return {
        "store": store,
        "is_fuel": store.kind == StoreKind.fuel_station,
        "grades": receipt_form.FUEL_GRADES,
        "categories": CATEGORIES,
        "receipt_no": _receipt_no(store),
        **values,
    }


@router.get("/till", response_class=HTMLResponse)
async def screen(page: TillPage, db: SessionDep) -> HTMLResponse:
    """The cashier screen for the signed-in staff member's store."""
    return page.render("till/screen.html", **_context(await _store(db, page)))


@router.post("/till/identify", response_class=HTMLResponse)
async def identify(
    page: TillPage, db: SessionDep, code: Annotated[str, Form(max_length=512)]
) -> HTMLResponse:
    """Scan or typed code → the member, their balance and a till token for this checkout."""
    till = await _till(db, page)
    assert till.terminal_id is not None
    found, error = await attempt(
        db,
        lambda: identity.identify(
            db, settings=page.settings, terminal_id=till.terminal_id, code=code
        ),
    )
    if error is not None:
        return page.render("till/identify_error.html", error=error.detail, code=code)
    token = identity.issue_till_token(page.settings, terminal_id=till.terminal_id, found=found)
    balance = await accounts.balance_of(db, found.member.id)
    program = await program_service.get_program(db)
    return page.render(
        "till/checkout.html",
        **_context(
            till.store,
            member=found.member,
            display_name=members_service.display_name(found.member),
            can_redeem=found.can_redeem or program.static_card_can_spend,
            method=found.method,
            balance=balance,
            till_token=token,
            min_redemption=program.min_redemption,
        ),
    )


@router.post("/till/quote", response_class=HTMLResponse)
async def quote(page: TillPage, db: SessionDep) -> HTMLResponse:
    """What the receipt as typed so far would earn (nothing is stored)."""
    body, errors = await receipt_form.read(page, await page.request.form())
    if body is None:
        return page.render("till/quote.html", quote=None, errors=errors)
    till = await _till(db, page)
    result, error = await attempt(
        db, lambda: purchases.quote(db, settings=page.settings, till=till, body=body)
    )
    return page.render("till/quote.html", quote=result, error=error and error.detail)


@router.post("/till/purchase", response_class=HTMLResponse)
async def purchase(page: TillPage, db: SessionDep) -> HTMLResponse:
    """Record the receipt and credit its points to the member."""
    form = await page.request.form()
    till = await _till(db, page)
    body, errors = await receipt_form.read(page, form)
    if body is None:
        return page.render("till/purchase_result.html", errors=errors, result=None)
    result, error = await attempt(
        db, lambda: purchases.record(db, settings=page.settings, till=till, body=body)
    )
    if error is not None:
        return page.render("till/purchase_result.html", error=error.detail, result=None)
    return page.render(
        "till/purchase_result.html",
        result=result,
        claim_texts={key: till_texts.text(key) for key in ("claim_code_label", "claim_code_hint")},
        **_context(till.store, till_token=str(form.get("till_token", ""))),
    )


@router.post("/till/redeem", response_class=HTMLResponse)
async def redeem(
    page: TillPage,
    db: SessionDep,
    till_token: Annotated[str, Form(max_length=1024)],
    points: Annotated[str, Form(max_length=12)],
) -> HTMLResponse:
    """Reserve points to pay with; the cashier then confirms or cancels."""
    till = await _till(db, page)
    try:
        body = RedemptionIn(member_code=till_token, points=points.strip() or "0")  # type: ignore[arg-type]
    except ValidationError:
        return page.render(
            "till/redeem_result.html", error="Enter the points to redeem (at least 1)."
        )
    reserved, error = await attempt(
        db, lambda: redemptions.reserve(db, settings=page.settings, till=till, body=body)
    )
    if error is not None:
        return page.render("till/redeem_result.html", error=error.detail)
    return page.render("till/redeem_result.html", reserved=reserved)


@router.post("/till/redemptions/{redemption_id}/{action}", response_class=HTMLResponse)
async def settle(redemption_id: int, action: str, page: TillPage, db: SessionDep) -> HTMLResponse:
    """Confirm (spend) or cancel (give back) a reservation."""
    till = await _till(db, page)
    settle_call = redemptions.confirm if action == "confirm" else redemptions.cancel
    if action not in ("confirm", "cancel"):
        return page.render("till/redeem_result.html", error="Unknown action.")
    settled, error = await attempt(
        db, lambda: settle_call(db, till=till, redemption_id=redemption_id)
    )
    if error is not None:
        return page.render("till/redeem_result.html", error=error.detail)
    return page.render("till/redeem_result.html", settled=settled)


@router.post("/till/coupon", response_class=HTMLResponse)
async def coupon(
    page: TillPage,
    db: SessionDep,
    code: Annotated[str, Form(max_length=32)],
    receipt_no: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    """Accept a member's coupon (single use)."""
    till = await _till(db, page)
    done, error = await attempt(
        db,
        lambda: rewards_service.redeem(db, till=till, code=code, receipt_no=receipt_no or None),
    )
    if error is not None:
        return page.render("till/coupon_result.html", error=error.detail)
    used, reward = done
    return page.render("till/coupon_result.html", coupon=used, reward=reward)
