"""Receipt claims need the claim code printed on the receipt (security issue: receipt numbers
are sequential and the total was the only secret). Failed claims are throttled per member and
per receipt (429 with Retry-After); unknown, wrong total, wrong code and already claimed all
answer the same 404; the code is stored hashed and never read back."""

from sqlalchemy import select

from api.loyalty.ledger.models import Account
from api.loyalty.till import claims
from api.loyalty.till.models import Purchase
from api.loyalty.till.purchases import CLAIM_ALPHABET
from tests import factories
from tests.loyalty.conftest import receipt

CLAIM = "/v1/me/receipts/claim"


async def post_anonymous(client, org, receipt_no: str, amount: int = 8_800) -> dict:
    r = await client.post(
        "/v1/pos/purchases",
        json=receipt(receipt_no, ("grocery", amount)),
        headers=org.terminal(org.supermarket),
    )
    assert r.status_code == 201, r.text
    return r.json()


def claim_of(org, posted: dict, **change: object) -> dict:
    return {
        "store_code": org.supermarket.code,
        "receipt_no": posted["receipt_no"],
        "total": 8_800,
        "claim_code": posted["claim_code"],
    } | change


def wrong(code: str) -> str:
    return "".join(CLAIM_ALPHABET[(CLAIM_ALPHABET.index(c) + 1) % 32] for c in code)


async def test_a_receipt_without_a_member_gets_a_code_stored_hashed(client, session, org, member):
    posted = await post_anonymous(client, org, "CC-1")
    code = posted["claim_code"]
    assert len(code) == 8 and set(code) <= set(CLAIM_ALPHABET)
    assert not set(code) & set("01OI")
    stored = (
        await session.execute(select(Purchase).where(Purchase.id == posted["purchase_id"]))
    ).scalar_one()
    assert stored.claim_code_hash and code not in stored.claim_code_hash
    read = await client.get(
        f"/v1/pos/purchases/{posted['purchase_id']}", headers=org.terminal(org.supermarket)
    )
    assert read.status_code == 200 and code not in read.text and "claim_code" not in read.json()
    assert read.json()["claimable"] is True
    with_member = await client.post(
        "/v1/pos/purchases",
        json=receipt("CC-2", ("grocery", 100), member_code=member.card_number),
        headers=org.terminal(org.supermarket),
    )
    assert with_member.json()["claim_code"] is None
    replay_headers = {**org.terminal(org.supermarket), "Idempotency-Key": "cc-3"}
    first = await client.post(
        "/v1/pos/purchases", json=receipt("CC-3", ("grocery", 100)), headers=replay_headers
    )
    again = await client.post(
        "/v1/pos/purchases", json=receipt("CC-3", ("grocery", 100)), headers=replay_headers
    )
    assert again.json()["claim_code"] == first.json()["claim_code"] is not None


async def test_the_right_code_claims_once_and_nobody_can_tell_claimed_from_unknown(
    client, session, settings, org, member
):
    posted = await post_anonymous(client, org, "CC-10")
    me = factories.member_headers(settings, member)
    other = await factories.make_member(session, settings)
    await session.commit()
    them = factories.member_headers(settings, other)

    unknown = await client.post(
        CLAIM, json=claim_of(org, posted, receipt_no="CC-404"), headers=them
    )
    no_code = await client.post(
        CLAIM, json=claim_of(org, posted, claim_code=wrong(posted["claim_code"])), headers=them
    )
    assert (unknown.status_code, no_code.status_code) == (404, 404)
    body = claim_of(
        org, posted, claim_code=posted["claim_code"].lower()[:4] + "-" + posted["claim_code"][4:]
    )
    claimed = await client.post(CLAIM, json=body, headers=me)  # as typed: case and dash ignored
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["points"]["earned"] == 88

    # a second member with the right code, and the right total: the same answer as unknown
    taken = await client.post(CLAIM, json=claim_of(org, posted), headers=them)
    assert taken.status_code == 404
    strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
    assert strip(taken) == strip(unknown) == strip(no_code)
    assert await session.get(Account, other.id) is None
    twice = await client.post(CLAIM, json=claim_of(org, posted), headers=me)
    assert twice.status_code == 404 and strip(twice) == strip(unknown)
    assert (await session.get(Account, member.id, populate_existing=True)).available == 88


async def test_brute_force_of_codes_is_stopped_per_member(client, session, settings, org, member):
    posted = await post_anonymous(client, org, "CC-20")
    me = factories.member_headers(settings, member)
    answers = []
    for n in range(claims.MEMBER_FAILURES + 2):
        guess = claim_of(org, posted, claim_code=f"{n:0>8}".replace("0", "A"))
        answers.append(await client.post(CLAIM, json=guess, headers=me))
    assert [r.status_code for r in answers] == [404] * claims.MEMBER_FAILURES + [429, 429]
    locked = answers[-1]
    assert locked.json()["error"] == "ClaimsLocked"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    # locked out, even the right code waits (the count was committed with each failure)
    right = await client.post(CLAIM, json=claim_of(org, posted), headers=me)
    assert right.status_code == 429
    assert (await session.get(Purchase, posted["purchase_id"])).member_id is None


async def test_brute_force_of_one_receipt_from_many_members_is_stopped(
    client, session, settings, org, member
):
    posted = await post_anonymous(client, org, "CC-30")
    statuses = []
    for n in range(claims.RECEIPT_FAILURES + 1):
        guesser = await factories.make_member(session, settings)
        await session.commit()
        guess = claim_of(org, posted, claim_code=wrong(posted["claim_code"])[:-1] + "23456789"[n])
        r = await client.post(
            CLAIM, json=guess, headers=factories.member_headers(settings, guesser)
        )
        statuses.append(r.status_code)
    assert statuses == [404] * claims.RECEIPT_FAILURES + [429]
    # another receipt is not affected; the right claim of a fresh receipt still works
    fresh = await post_anonymous(client, org, "CC-31")
    ok = await client.post(
        CLAIM, json=claim_of(org, fresh), headers=factories.member_headers(settings, member)
    )
    assert ok.status_code == 200, ok.text


async def test_a_right_claim_gives_its_attempt_back(client, session, settings, org, member):
    me = factories.member_headers(settings, member)
    for n in range(claims.MEMBER_FAILURES + 2):  # more right claims than the failure limit
        posted = await post_anonymous(client, org, f"CC-4{n}", 100)
        r = await client.post(CLAIM, json=claim_of(org, posted, total=100), headers=me)
        assert r.status_code == 200, (n, r.text)
