"""Card numbers (random, fixed length, configured prefix, Luhn) and the rotating payload."""

import itertools
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from api.members import cards
from tests import factories
from tests.conftest import make_settings

T0 = datetime(2026, 3, 4, 10, 0, 5, tzinfo=UTC)  # 5 s into a 30 s step


def reference_luhn_ok(number: str) -> bool:
    """Luhn written the textbook way, independent of the code under test."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d // 10 + d % 10
    return total % 10 == 0


# Card-industry test numbers and the Wikipedia example.
VALID = ["79927398713", "4111111111111111", "378282246310005", "6011111111111117", "059", "18"]
INVALID = ["79927398710", "79927398714", "4111111111111112", "6011111111111118", "051"]


@pytest.mark.parametrize("number", VALID)
def test_luhn_known_valid_numbers(number):
    assert cards.luhn_check_digit(number[:-1]) == number[-1]
    assert cards.luhn_valid(number)


@pytest.mark.parametrize("number", INVALID)
def test_luhn_known_invalid_numbers(number):
    assert not cards.luhn_valid(number)


def test_luhn_check_digit_of_the_wikipedia_example():
    assert cards.luhn_check_digit("7992739871") == "3"


@pytest.mark.parametrize("value", ["", "7", "7992739871a", "7992 739 8713", "-79927398713"])
def test_luhn_rejects_non_numbers(value):
    assert not cards.luhn_valid(value)


@pytest.mark.parametrize("value", ["8860²²²²²²²²²²²", "٧٩٩٢٧٣٩٨٧١٣", "７９９２７３９８７１３"])
def test_luhn_rejects_non_ascii_digits_without_crashing(value):
    # str.isdigit() accepts these; int() of "²" raises and the card must not pass either way.
    assert not cards.luhn_valid(value)


def test_luhn_check_digit_matches_a_reference_implementation():
    for _ in range(500):
        number = cards.new_card_number("", 16)
        assert reference_luhn_ok(number)
        assert cards.luhn_valid(number)


def test_luhn_catches_every_single_digit_error_and_adjacent_swap():
    number = cards.new_card_number("8860", 16)
    for i, original in enumerate(number):
        for d in "0123456789":
            if d != original:
                assert not cards.luhn_valid(number[:i] + d + number[i + 1 :])
    for i in range(len(number) - 1):
        a, b = number[i], number[i + 1]
        if a != b and {a, b} != {"0", "9"}:
            assert not cards.luhn_valid(number[:i] + b + a + number[i + 2 :])


@pytest.mark.parametrize(
    ("prefix", "length"), [("8860", 16), ("", 10), ("12345678", 19), ("0", 12), ("99", 10)]
)
def test_new_card_number_has_prefix_length_and_check_digit(prefix, length):
    for _ in range(50):
        number = cards.new_card_number(prefix, length)
        assert len(number) == length
        assert number.isascii() and number.isdigit()
        assert number.startswith(prefix)
        assert cards.luhn_valid(number)
        assert cards.is_card_number(number, prefix, length)


def test_card_numbers_are_random_not_sequential():
    numbers = [cards.new_card_number("8860", 16) for _ in range(2000)]
    assert len(set(numbers)) == len(numbers)
    bodies = [int(n[4:-1]) for n in numbers]
    steps = {b - a for a, b in itertools.pairwise(bodies)}
    assert len(steps) > 1900  # a counter would give one step size
    assert bodies != sorted(bodies) and bodies != sorted(bodies, reverse=True)
    assert sum(1 for a, b in itertools.pairwise(bodies) if abs(b - a) <= 10) < 5
    for position in range(11):  # every body digit varies over (nearly) all ten values
        assert len({n[4 + position] for n in numbers}) == 10


def test_is_card_number_checks_prefix_length_and_luhn():
    number = cards.new_card_number("8860", 16)
    assert cards.is_card_number(number, "8860", 16)
    assert not cards.is_card_number(number, "8861", 16)
    assert not cards.is_card_number(number, "8860", 15)
    assert not cards.is_card_number(number[:-1] + str((int(number[-1]) + 1) % 10), "8860", 16)
    assert not cards.is_card_number("8860" + "x" * 12, "8860", 16)


def test_compact_card_number_drops_the_printed_grouping():
    assert cards.compact_card_number("8860 1234-5678  9012") == "8860123456789012"


async def test_enrolled_members_get_configured_random_card_numbers(session):
    settings = make_settings(card_prefix="77", card_length=12)
    members = [await factories.make_member(session, settings) for _ in range(20)]
    numbers = [m.card_number for m in members]
    assert len(set(numbers)) == 20
    for number in numbers:
        assert len(number) == 12 and number.startswith("77") and cards.luhn_valid(number)
    bodies = [int(n[2:-1]) for n in numbers]
    assert any(abs(b - a) != 1 for a, b in itertools.pairwise(bodies))


async def test_default_card_number_and_secret_per_member(session, settings):
    a = await factories.make_member(session, settings)
    b = await factories.make_member(session, settings)
    for member in (a, b):
        assert cards.is_card_number(member.card_number, settings.card_prefix, settings.card_length)
        assert len(member.totp_secret) == 32
        pyotp.TOTP(member.totp_secret).now()  # valid base32
    assert a.totp_secret != b.totp_secret


def test_payload_format_round_trips():
    text = cards.payload("8860123456789012", "01234567")
    assert text == "LY1.8860123456789012.01234567"
    parsed = cards.parse_payload(f"  {text}\r\n")
    assert parsed == cards.ParsedPayload(card_number="8860123456789012", code="01234567")


@pytest.mark.parametrize(
    "value",
    [
        "LY2.8860123456789012.01234567",
        "ly1.8860123456789012.01234567",
        "LY1.8860123456789012",
        "LY1.8860123456789012.0123.4567",
        "LY1..01234567",
        "LY1.8860123456789012.",
        "LY1.88601234x6789012.01234567",
        "LY1.8860123456789012.0123456a",
        "LY1.8860123456789012.٠١٢٣٤٥٦٧",
        "LY1.8860123456789012.⁰¹²³⁴⁵⁶⁷",
        "8860123456789012",
        "eyJhbGciOiJIUzI1NiJ9.e30.sig",
    ],
)
def test_parse_payload_rejects_other_text(value):
    assert cards.parse_payload(value) is None


def test_current_code_is_rfc6238_totp():
    secret = cards.new_totp_secret()
    for digits in (6, 8, 10):
        code = cards.current_code(secret, T0, period=30, digits=digits)
        assert len(code) == digits and code.isdigit()
        assert code == pyotp.TOTP(secret, digits=digits, interval=30).at(T0)


def test_rfc6238_sha1_test_vector():
    # RFC 6238 appendix B: secret "12345678901234567890", T = 59 s → 94287082.
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    at = datetime.fromtimestamp(59, UTC)
    assert cards.current_code(secret, at, period=30, digits=8) == "94287082"


def test_matching_step_accepts_one_step_either_side_only():
    secret = cards.new_totp_secret()
    now_step = cards.step_of(T0, 30)
    window = {"period": 30, "digits": 8, "back": 1, "forward": 1}
    for offset in (-1, 0, 1):
        code = cards.current_code(secret, T0 + timedelta(seconds=30 * offset), period=30, digits=8)
        assert cards.matching_step(secret, code, T0, **window) == now_step + offset
    for offset in (-3, -2, 2, 3):
        code = cards.current_code(secret, T0 + timedelta(seconds=30 * offset), period=30, digits=8)
        assert cards.matching_step(secret, code, T0, **window) is None


def test_matching_step_refuses_wrong_length_and_wrong_codes():
    secret = cards.new_totp_secret()
    code = cards.current_code(secret, T0, period=30, digits=8)
    window = {"period": 30, "digits": 8, "back": 1, "forward": 1}
    assert cards.matching_step(secret, code[:6], T0, **window) is None
    assert cards.matching_step(secret, code + "0", T0, **window) is None
    other = cards.current_code(cards.new_totp_secret(), T0, period=30, digits=8)
    assert cards.matching_step(secret, other, T0, **window) is None
