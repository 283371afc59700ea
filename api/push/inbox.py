"""The member's in-app inbox: offers and messages, newest first, with read tracking.

Expired offers stay in the list flagged `expired: true` (the app greys them out) unless the
app asks `include_expired=false`. Items deferred by quiet hours appear at their `visible_at`.
"""

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.core import clock
from api.core.pagination import PageParams, Slice, make_page
from api.push.exceptions import InboxItemNotFound
from api.push.models import InboxItem
from api.push.schemas import InboxItemRead


def read_model(item: InboxItem) -> InboxItemRead:
    return InboxItemRead(
        id=item.id,
        campaign_id=item.campaign_id,
        title=item.title,
        body=item.body,
        data=item.data,
        image_url=item.image_url,
        created_at=item.visible_at,
        expires_at=item.expires_at,
        expired=item.expires_at is not None and item.expires_at <= clock.now(),
        read_at=item.read_at,
    )


async def list_items(
    session: AsyncSession, *, member_id: int, page: PageParams, include_expired: bool = True
) -> Slice[InboxItem]:
    """The member's visible inbox items, newest first."""
    now = clock.now()
    stmt = select(InboxItem).where(InboxItem.member_id == member_id, InboxItem.visible_at <= now)
    if not include_expired:
        stmt = stmt.where(or_(InboxItem.expires_at.is_(None), InboxItem.expires_at > now))
    if page.before_id is not None:
        stmt = stmt.where(InboxItem.id < page.before_id)
    rows = await session.execute(stmt.order_by(InboxItem.id.desc()).limit(page.limit + 1))
    return make_page(list(rows.scalars()), page.limit, lambda item: item.id)


async def mark_read(session: AsyncSession, *, member_id: int, item_id: int) -> InboxItem:
    """Mark one of the member's items read (the first read time is kept)."""
    item = await session.get(InboxItem, item_id)
    if item is None or item.member_id != member_id or item.visible_at > clock.now():
        raise InboxItemNotFound()
    if item.read_at is None:
        item.read_at = clock.now()
        await session.flush()
    return item
