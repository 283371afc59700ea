"""GET /v1/me/card and its QR images: the payload, offline TOTP generation, decoding."""

import io
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import PIL.Image
import PIL.ImageDraw
import pyotp
import zxingcpp

from api.core import clock, security
from api.members import qr
from tests import factories
from tests.conftest import TEST_CODE, TEST_PHONE

T0 = datetime(2026, 3, 4, 10, 0, 5, tzinfo=UTC)  # 5 s into a 30 s step
SVG_NS = "{http://www.w3.org/2000/svg}"
IDENTIFY = "/v1/pos/identify"


async def sign_in(client) -> dict[str, str]:
    r = await client.post("/v1/auth/otp/verify", json={"phone": TEST_PHONE, "code": TEST_CODE})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def decode_qr(image: PIL.Image.Image) -> list[str]:
    return [result.text for result in zxingcpp.read_barcodes(image)]


def rasterise_svg(svg: bytes, *, page: int, scale: int = 8) -> PIL.Image.Image:
    """Draw the SVG (its <rect> fills and qrcode's path of module squares) onto a page of
    grey level `page`, as an app would show it on its own background."""
    root = ET.fromstring(svg)
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    image = PIL.Image.new("L", (int(width * scale), int(height * scale)), page)
    draw = PIL.ImageDraw.Draw(image)

    def length(value: str, full: float) -> float:
        return float(value[:-1]) / 100 * full if value.endswith("%") else float(value)

    for rect in root.iter(f"{SVG_NS}rect"):
        assert rect.attrib["fill"] in ("white", "#fff", "#ffffff")
        x, y = length(rect.get("x", "0"), width), length(rect.get("y", "0"), height)
        w, h = length(rect.attrib["width"], width), length(rect.attrib["height"], height)
        draw.rectangle([x * scale, y * scale, (x + w) * scale - 1, (y + h) * scale - 1], fill=255)
    path = root.find(f"{SVG_NS}path")
    assert path is not None
    squares = re.findall(r"M([\d.]+),([\d.]+)H([\d.]+)V([\d.]+)H[\d.]+z", path.attrib["d"])
    assert squares
    for x0, y0, x1, y1 in squares:
        box = [float(x0) * scale, float(y0) * scale, float(x1) * scale - 1, float(y1) * scale - 1]
        draw.rectangle(box, fill=0)
    return image


async def test_card_gives_number_payload_and_totp_parameters(client, settings):
    headers = await sign_in(client)
    me = (await client.get("/v1/me", headers=headers)).json()
    with clock.frozen(T0):
        r = await client.get("/v1/me/card", headers=headers)
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["card_number"] == me["card_number"]
    assert card["totp"]["period"] == 30 == settings.totp_period
    assert card["totp"]["digits"] == settings.totp_digits
    assert card["totp"].get("algorithm", "SHA1") == "SHA1"
    prefix, number, code = card["code"].split(".")
    assert (prefix, number) == ("LY1", card["card_number"])
    assert len(code) == settings.totp_digits and code.isdigit()
    assert card["code"] == card["payload_format"].format(card_number=number, totp=code)
    assert datetime.fromisoformat(card["expires_at"]) == datetime(2026, 3, 4, 10, 0, 30, tzinfo=UTC)


async def test_app_reproduces_the_code_offline_from_the_totp_parameters(client):
    headers = await sign_in(client)
    with clock.frozen(T0):
        card = (await client.get("/v1/me/card", headers=headers)).json()
    params = card["totp"]
    app_totp = pyotp.TOTP(params["secret"], digits=params["digits"], interval=params["period"])
    assert card["code"] == f"LY1.{card['card_number']}.{app_totp.at(T0)}"
    for later in (12, 30, 95, 3600):
        at = T0 + timedelta(seconds=later)
        with clock.frozen(at):
            served = (await client.get("/v1/me/card", headers=headers)).json()["code"]
        assert served == f"LY1.{card['card_number']}.{app_totp.at(at)}"
    assert app_totp.at(T0) != app_totp.at(T0 + timedelta(seconds=30))


async def test_code_made_offline_is_accepted_at_the_till(client, session):
    till = await factories.make_till(session)
    await session.commit()
    headers = await sign_in(client)
    card = (await client.get("/v1/me/card", headers=headers)).json()
    params = card["totp"]
    app_totp = pyotp.TOTP(params["secret"], digits=params["digits"], interval=params["period"])
    at = T0 + timedelta(hours=5)  # the phone has been offline since it fetched the card
    offline_payload = f"LY1.{card['card_number']}.{app_totp.at(at)}"
    with clock.frozen(at):
        r = await client.post(IDENTIFY, json={"code": offline_payload}, headers=till.headers)
    assert r.status_code == 200, r.text
    assert r.json()["can_redeem"] is True and r.json()["method"] == "rotating"


async def test_each_member_has_an_own_secret(client, session, settings):
    a = await factories.make_member(session, settings)
    b = await factories.make_member(session, settings)
    await session.commit()
    cards = [
        (await client.get("/v1/me/card", headers=factories.member_headers(settings, m))).json()
        for m in (a, b)
    ]
    assert cards[0]["totp"]["secret"] != cards[1]["totp"]["secret"]
    assert cards[0]["card_number"] == a.card_number and cards[1]["card_number"] == b.card_number


async def test_card_needs_a_member_token(client, settings):
    staff_token = security.encode_jwt(
        settings.secret_key, {"sub": "1", "typ": "staff"}, timedelta(minutes=5)
    )
    staff = {"Authorization": f"Bearer {staff_token}"}
    for path in ("/v1/me/card", "/v1/me/card/qr.png", "/v1/me/card/qr.svg"):
        for headers in ({}, staff, {"Authorization": "Bearer not-a-token"}):
            r = await client.get(path, headers=headers)  # a staff token is not a member's
            assert (r.status_code, r.json()["error"]) == (401, "MemberNotAuthenticated")


async def test_png_decodes_to_exactly_the_current_payload(client):
    headers = await sign_in(client)
    with clock.frozen(T0):
        payload = (await client.get("/v1/me/card", headers=headers)).json()["code"]
        r = await client.get("/v1/me/card/qr.png", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-store"
    assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_qr(PIL.Image.open(io.BytesIO(r.content))) == [payload]


async def test_png_follows_the_rotation(client):
    headers = await sign_in(client)
    decoded = []
    for at in (T0, T0 + timedelta(seconds=30)):
        with clock.frozen(at):
            r = await client.get("/v1/me/card/qr.png", headers=headers)
        decoded += decode_qr(PIL.Image.open(io.BytesIO(r.content)))
    assert len(decoded) == 2 and decoded[0] != decoded[1]
    assert decoded[0].rsplit(".", 1)[0] == decoded[1].rsplit(".", 1)[0]  # same card


async def test_svg_is_valid_uncached_and_renders_the_payload(client):
    headers = await sign_in(client)
    with clock.frozen(T0):
        payload = (await client.get("/v1/me/card", headers=headers)).json()["code"]
        r = await client.get("/v1/me/card/qr.svg", headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert r.headers["cache-control"] == "no-store"
    root = ET.fromstring(r.content)  # well-formed XML
    assert root.tag == f"{SVG_NS}svg"
    assert len(root.attrib["viewBox"].split()) == 4
    assert decode_qr(rasterise_svg(r.content, page=255)) == [payload]
    # it carries its own light background, so it scans on an app's dark theme too
    assert decode_qr(rasterise_svg(r.content, page=0)) == [payload]


def test_longest_configurable_payload_still_decodes():
    payload = "LY1.1234567890123456789.0123456789"  # 19-digit card, 10-digit code
    assert decode_qr(PIL.Image.open(io.BytesIO(qr.png_bytes(payload)))) == [payload]
    assert decode_qr(rasterise_svg(qr.svg_bytes(payload), page=0)) == [payload]


async def test_scanned_png_identifies_the_member_at_the_till(client, session):
    till = await factories.make_till(session)
    await session.commit()
    headers = await sign_in(client)
    me = (await client.get("/v1/me", headers=headers)).json()
    with clock.frozen(T0):
        png = (await client.get("/v1/me/card/qr.png", headers=headers)).content
        [scanned] = decode_qr(PIL.Image.open(io.BytesIO(png)))
        r = await client.post(IDENTIFY, json={"code": scanned}, headers=till.headers)
    assert r.status_code == 200, r.text
    assert r.json()["member_id"] == me["id"] and r.json()["can_redeem"] is True
