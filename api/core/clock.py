"""The one source of 'now': timezone-aware UTC, overridable in tests."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)
_frozen: datetime | None = None


def now() -> datetime:
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + _offset


def as_utc(value: datetime) -> datetime:
    """Treat naive datetimes (SQLite returns them) as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@contextmanager
def frozen(at: datetime) -> Iterator["FrozenClock"]:
    """Freeze now() at `at` (tests); `.tick(seconds)` moves it."""
    global _frozen
    previous = _frozen
    _frozen = as_utc(at)
    try:
        yield FrozenClock()
    finally:
        _frozen = previous


class FrozenClock:
    def tick(self, seconds: float) -> datetime:
        global _frozen
        assert _frozen is not None
        _frozen = _frozen + timedelta(seconds=seconds)
        return _frozen

    def set(self, at: datetime) -> None:
        global _frozen
        _frozen = as_utc(at)
