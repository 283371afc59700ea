"""The programme's currency cannot change once it is live (issue: every till then failed and
balances were relabelled): 409 CurrencyLocked once any receipt or ledger entry exists."""

from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.models import Account
from api.loyalty.program import service as program_service
from tests import factories
from tests.loyalty.conftest import receipt

PROGRAM = "/v1/loyalty/program"


async def test_the_currency_changes_only_before_the_first_receipt(client, session, org):
    admin = org.headers["admin"]
    r = await client.put(PROGRAM, json={"currency": "HKD"}, headers=admin)
    assert r.status_code == 200 and r.json()["currency"] == "HKD"
    r = await client.put(PROGRAM, json={"currency": "CNY"}, headers=admin)
    assert r.status_code == 200

    posted = await client.post(
        "/v1/pos/purchases",
        json=receipt("CUR-1", ("grocery", 1_000)),  # without a member: no ledger entry
        headers=org.terminal(org.supermarket),
    )
    assert posted.status_code == 201, posted.text
    r = await client.put(PROGRAM, json={"currency": "USD"}, headers=admin)
    assert (r.status_code, r.json()["error"]) == (409, "CurrencyLocked"), r.text
    program = await program_service.get_program(session)
    await session.refresh(program)
    assert program.currency == "CNY"
    same = await client.put(PROGRAM, json={"currency": "CNY", "earn_points": 2}, headers=admin)
    assert same.status_code == 200, same.text  # naming the same currency is no change
    r = await client.post(
        "/v1/pos/purchases",
        json=receipt("CUR-2", ("grocery", 1_000)),
        headers=org.terminal(org.supermarket),
    )
    assert r.status_code == 201, r.text  # the tills still work


async def test_a_ledger_entry_alone_locks_the_currency(client, session, settings, org):
    member = await factories.make_member(session, settings)
    account = await ledger.lock_account(session, member.id)
    await ledger.credit(
        session,
        account,
        kind="adjust",
        points=50,
        source=ledger.Source("import", actor="test"),
    )
    await session.commit()
    assert (await session.get(Account, member.id)).available == 50
    r = await client.put(PROGRAM, json={"currency": "USD"}, headers=org.headers["admin"])
    assert (r.status_code, r.json()["error"]) == (409, "CurrencyLocked"), r.text
