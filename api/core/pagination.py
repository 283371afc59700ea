"""Cursor pagination: newest first by id; the cursor is an opaque token of the last id seen."""

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from api.core.errors import InvalidInput

T = TypeVar("T")


class InvalidCursor(InvalidInput):
    """The cursor is not one this API issued."""


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PageParams(BaseModel):
    cursor: str | None = None
    limit: int = 50

    @property
    def before_id(self) -> int | None:
        return decode_cursor(self.cursor) if self.cursor else None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "id":
            raise ValueError
        return int(value)
    except ValueError as exc:
        raise InvalidCursor() from exc


def page_params(
    cursor: Annotated[str | None, Query(max_length=64, description="From next_cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PageParams:
    return PageParams(cursor=cursor, limit=limit)


@dataclass
class Slice(Generic[T]):
    """A service's page of rows (ORM objects); routers turn it into a `Page` response."""

    items: list[T]
    next_cursor: str | None


def make_page(items: list[T], limit: int, id_of: Callable[[T], int]) -> Slice[T]:
    """`items` was fetched with limit+1 rows; the extra one tells whether a next page exists."""
    has_more = len(items) > limit
    items = items[:limit]
    return Slice(items=items, next_cursor=encode_cursor(id_of(items[-1])) if has_more else None)
