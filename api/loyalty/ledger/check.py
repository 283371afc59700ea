"""`loyalty ledger-check`: prove the cached balances agree with the ledger for every member.

One set-based query (ledger sums GROUP BY member, joined to the accounts) checks the ledger
invariants (see `api.loyalty.ledger`) for every member with an account or ledger rows:

- available + pending == SUM(points);
- pending == SUM(remaining) of lots not yet matured;
- max(available, 0) == SUM(remaining) of matured lots;
- no lot holds a negative remaining or more than it was worth.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from api.loyalty.ledger.models import Account, LedgerEntry


@dataclass(frozen=True)
class Mismatch:
    member_id: int
    available: int
    pending: int
    ledger_sum: int
    pending_lots: int
    matured_lots: int
    bad_lots: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.available + self.pending != self.ledger_sum:
            found.append(
                f"available+pending {self.available + self.pending} != ledger {self.ledger_sum}"
            )
        if self.pending != self.pending_lots:
            found.append(f"pending {self.pending} != pending lots {self.pending_lots}")
        if max(self.available, 0) != self.matured_lots:
            found.append(f"available {self.available} != matured lots {self.matured_lots}")
        if self.bad_lots:
            found.append(f"{self.bad_lots} lot(s) with remaining outside 0..points")
        return found

    def __str__(self) -> str:
        return f"member {self.member_id}: " + "; ".join(self.problems)


def _sum_if(condition: ColumnElement[bool], value: Any) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, value), else_=0)), 0)


async def check_ledger(session: AsyncSession) -> list[Mismatch]:
    """Every member whose cached balance or lots disagree with the ledger (empty when sound)."""
    e = LedgerEntry
    sums = (
        select(
            e.member_id.label("member_id"),
            func.coalesce(func.sum(e.points), 0).label("total"),
            _sum_if((e.remaining > 0) & e.matured.is_(False), e.remaining).label("pending_lots"),
            _sum_if((e.remaining > 0) & e.matured.is_(True), e.remaining).label("matured_lots"),
            _sum_if((e.remaining < 0) | ((e.remaining > 0) & (e.remaining > e.points)), 1).label(
                "bad_lots"
            ),
        )
        .group_by(e.member_id)
        .subquery("sums")
    )
    members = union(select(Account.member_id), select(e.member_id)).subquery("members")
    available = func.coalesce(Account.available, 0)
    pending = func.coalesce(Account.pending, 0)
    total = func.coalesce(sums.c.total, 0)
    pending_lots = func.coalesce(sums.c.pending_lots, 0)
    matured_lots = func.coalesce(sums.c.matured_lots, 0)
    bad = func.coalesce(sums.c.bad_lots, 0)
    stmt = (
        select(members.c.member_id, available, pending, total, pending_lots, matured_lots, bad)
        .select_from(members)
        .outerjoin(Account, Account.member_id == members.c.member_id)
        .outerjoin(sums, sums.c.member_id == members.c.member_id)
        .where(
            or_(
                available + pending != total,
                pending != pending_lots,
                case((available > 0, available), else_=literal(0)) != matured_lots,
                bad > 0,
            )
        )
        .order_by(members.c.member_id)
    )
    return [Mismatch(*(int(v) for v in row)) for row in (await session.execute(stmt)).all()]
