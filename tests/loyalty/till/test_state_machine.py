"""A hypothesis state machine over earn, spend, reserve then confirm or cancel, return, the
passing of time, maturing and expiry. After every step the cached balance equals the sum of
the ledger, the lots agree with it (check_ledger), and available points only go below zero
through a return.

Hypothesis drives the machine synchronously, so each machine runs its async steps on one
event loop (asyncio.Runner) with an engine of its own; each example works inside one outer
transaction that is rolled back at teardown, like the rest of the suite.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.core import clock
from api.core.db import make_engine
from api.loyalty.ledger import jobs
from api.loyalty.ledger import service as ledger
from api.loyalty.ledger.check import check_ledger
from api.loyalty.ledger.exceptions import InsufficientPoints
from api.loyalty.ledger.models import Account, LedgerEntry
from api.loyalty.program import service as program_service
from api.loyalty.program.schemas import ProgramUpdate
from api.loyalty.till import purchases, returns
from api.loyalty.till.exceptions import ReturnExceedsPurchase
from api.loyalty.till.schemas import PurchaseIn, ReturnIn
from tests import factories
from tests.conftest import DATABASE_URL, make_settings

T0 = datetime(2030, 1, 15, 4, 0, tzinfo=UTC)
DAY = 86_400


class LedgerMachine(RuleBasedStateMachine):
    runner: asyncio.Runner
    engine: AsyncEngine

    purchases = Bundle("purchases")
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.clock = clock.FrozenClock()
        self.clock.set(T0)
        self.settings = make_settings()
        self.seq = 0
        self.total = 0  # what the balance must be, from the results of the steps alone
        self.previous_available = 0
        self.last_step = "start"
        self.run(self._open())

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def _open(self) -> None:
        self.connection = await self.engine.connect()
        self.transaction = await self.connection.begin()
        self.session = AsyncSession(
            bind=self.connection,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )
        store = await factories.make_store(self.session, await factories.make_region(self.session))
        self.till = purchases.Till(store=store, terminal_id=None, actor="test")
        self.member = await factories.make_member(self.session, self.settings)
        await program_service.update_program(
            self.session, data=ProgramUpdate(pending_days=3, expiry_months=2)
        )
        await ledger.lock_account(self.session, self.member.id)
        await self.session.flush()

    def teardown(self) -> None:
        async def close() -> None:
            await self.session.close()
            await self.transaction.rollback()
            await self.connection.close()

        self.run(close())

    async def _atomic(self, work: Any) -> Any:
        """One step = one transaction, as a request would be: a failure leaves no trace."""
        async with self.session.begin_nested():
            return await work()

    def _next(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seq}"

    # ------------------------------------------------------------------ steps

    @initialize(target=purchases, amount=st.integers(100, 30_000))
    def start_with_points(self, amount: int) -> tuple[int, list[int]]:
        return self.earn([amount], days_ago=5)

    @rule(
        target=purchases,
        amounts=st.lists(st.integers(1, 30_000), min_size=1, max_size=3),
        days_ago=st.sampled_from([0, 5]),  # an offline receipt from 5 days ago is not pending
    )
    def earn(self, amounts: list[int], days_ago: int) -> tuple[int, list[int]]:
        body = PurchaseIn(
            receipt_no=self._next("R"),
            occurred_at=clock.now() - timedelta(days=days_ago),
            member_id=self.member.id,
            currency="CNY",
            total=sum(amounts),
            lines=[
                {"line_no": i, "sku": f"S{i}", "category": "grocery", "quantity": 2, "amount": a}
                for i, a in enumerate(amounts, start=1)
            ],
        )
        done = self.run(
            self._atomic(
                lambda: purchases.record(
                    self.session, settings=self.settings, till=self.till, body=body
                )
            )
        )
        self.total += done.points.earned
        self.last_step = "earn"
        return done.purchase_id, amounts

    async def _burn(self, kind: str, points: int) -> LedgerEntry:
        account = await ledger.lock_account(self.session, self.member.id)
        return await ledger.debit(
            self.session, account, kind=kind, points=points, source=ledger.Source("test")
        )

    def _some_points(self, data: st.DataObject) -> int:
        """Mostly what the member can afford, sometimes more than that."""
        affordable = st.integers(1, max(self.previous_available, 1))
        return data.draw(st.one_of(affordable, affordable, st.integers(1, 400)), label="points")

    @rule(data=st.data())
    def spend(self, data: st.DataObject) -> None:
        points = self._some_points(data)
        self.last_step = "spend"
        try:
            self.run(self._atomic(lambda: self._burn("spend", points)))
        except InsufficientPoints:
            assert self.previous_available < points
            return
        self.total -= points

    @rule(target=reservations, data=st.data())
    def reserve(self, data: st.DataObject) -> Any:
        points = self._some_points(data)
        self.last_step = "reserve"
        try:
            entry = self.run(self._atomic(lambda: self._burn("reserve", points)))
        except InsufficientPoints:
            assert self.previous_available < points
            return multiple()
        self.total -= points
        return entry.id

    @rule(entry_id=consumes(reservations), cancel=st.booleans())
    def settle(self, entry_id: int, cancel: bool) -> None:
        """Confirm (the reserved points stay spent) or cancel (they go back to their lots)."""
        self.last_step = "cancel" if cancel else "confirm"
        if not cancel:
            return

        async def release() -> None:
            account = await ledger.lock_account(self.session, self.member.id)
            burn = await self.session.get(LedgerEntry, entry_id)
            assert burn is not None
            await ledger.restore(self.session, account, burn=burn, source=ledger.Source("test"))
            self.total -= burn.points

        self.run(self._atomic(release))

    @rule(purchase=purchases, data=st.data())
    def give_back(self, purchase: tuple[int, list[int]], data: st.DataObject) -> None:
        purchase_id, amounts = purchase
        line_no = data.draw(st.integers(1, len(amounts)), label="line_no")
        how = data.draw(st.sampled_from(["rest", "rest", "quantity", "amount"]), label="how")
        line: dict[str, Any] = {"line_no": line_no}
        if how == "quantity":
            line["quantity"] = Decimal(1)
        elif how == "amount":
            line["amount"] = data.draw(st.integers(1, amounts[line_no - 1]), label="amount")
        body = ReturnIn(return_no=self._next("RT"), lines=[line])
        self.last_step = "return"
        try:
            done = self.run(
                self._atomic(
                    lambda: returns.process(
                        self.session,
                        purchase_id=purchase_id,
                        body=body,
                        terminal_id=None,
                        actor="test",
                    )
                )
            )
        except ReturnExceedsPurchase:
            return
        self.total -= done.points_reversed

    @rule(
        days=st.integers(1, 40),
        worker=st.sampled_from(["mature+expire", "mature", "expire", "idle"]),
    )
    def time_passes(self, days: int, worker: str) -> None:
        """Days go by, then the worker runs its jobs (or not yet: due points still held)."""
        self.clock.tick(days * DAY)
        self.last_step = "time"
        if "mature" in worker:
            self.run(self._atomic(lambda: jobs.mature_pending(self.session)))
        if "expire" in worker:
            self.run(self._atomic(self._expire))

    async def _expire(self) -> None:
        due = select(func.coalesce(func.sum(LedgerEntry.remaining), 0)).where(
            LedgerEntry.member_id == self.member.id,
            LedgerEntry.remaining > 0,
            LedgerEntry.expires_at <= clock.now(),
        )
        expiring = int((await self.session.execute(due)).scalar_one())
        await jobs.expire_lots(self.session)
        assert int((await self.session.execute(due)).scalar_one()) == 0
        self.total -= expiring

    # ------------------------------------------------------------------ invariants

    @invariant()
    def balance_equals_the_ledger_and_lots_agree(self) -> None:
        async def look() -> tuple[Any, Account]:
            mismatches = await check_ledger(self.session)
            account = await self.session.get(Account, self.member.id, populate_existing=True)
            assert account is not None
            return mismatches, account

        mismatches, account = self.run(look())
        assert [str(m) for m in mismatches] == []
        assert account.available + account.pending == self.total
        assert account.pending >= 0
        if self.last_step != "return":
            assert account.available >= min(self.previous_available, 0), self.last_step
        self.previous_available = account.available


def test_ledger_state_machine(engine: AsyncEngine) -> None:  # engine: the migrated database
    with asyncio.Runner() as runner, clock.frozen(T0):
        LedgerMachine.runner = runner
        LedgerMachine.engine = runner.run(_engine())
        try:
            run_state_machine_as_test(
                LedgerMachine,
                settings=settings(
                    max_examples=15,
                    stateful_step_count=20,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow],
                ),
            )
        finally:
            runner.run(LedgerMachine.engine.dispose())


async def _engine() -> AsyncEngine:
    return make_engine(DATABASE_URL)


def test_the_machine_notices_a_broken_ledger(engine: AsyncEngine) -> None:
    """The invariant is not vacuous: a balance changed behind the ledger's back fails it."""
    with asyncio.Runner() as runner, clock.frozen(T0):
        LedgerMachine.runner = runner
        LedgerMachine.engine = runner.run(_engine())
        machine = LedgerMachine()
        try:
            machine.earn([10_000], 0)
            machine.time_passes(5, "mature+expire")
            machine.balance_equals_the_ledger_and_lots_agree()

            async def corrupt() -> None:
                account = await ledger.lock_account(machine.session, machine.member.id)
                account.available += 1
                await machine.session.flush()

            runner.run(corrupt())
            try:
                machine.balance_equals_the_ledger_and_lots_agree()
            except AssertionError:
                pass
            else:
                raise AssertionError("a corrupted balance went unnoticed")
        finally:
            machine.teardown()
            runner.run(LedgerMachine.engine.dispose())
