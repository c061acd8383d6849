"""Each shop's platform rate budget, a leaky bucket kept in the database and shared by every process.

Shopify measures GraphQL cost in points (standard plan: 100 restored per second, the bucket is read from
each response's ``throttleStatus``); SHOPLINE counts requests (4 per second, a bucket of 40). A client takes
the cost of a call before making it; when the bucket cannot hold it, it gets the wait in seconds and
raises ``RetryLater`` instead of sleeping, and the worker moves on to another shop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from app.db import Database
from app.db import upsert
from app.db import utcnow
from app.models import PlatformBudget


class RateBudget:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def take(self, shop_id: int, cost: float, *, capacity: float, restore_rate: float) -> float:
        """Take ``cost`` now and return 0, or take nothing and return the seconds until it would fit."""
        with self.db.write_transaction() as session:
            budget = self._locked(session, shop_id, capacity, restore_rate)
            now = self.clock()
            available = self._available(budget, now)
            cost = min(cost, budget.capacity)
            if available >= cost:
                budget.available = available - cost
                budget.updated_at = now
                return 0.0
            return (cost - available) / budget.restore_rate

    def wait_for(self, shop_id: int, cost: float) -> float:
        """Seconds until ``cost`` would fit, without taking anything (0 for a shop not seen yet)."""
        with self.db.sessionmaker() as session:
            budget = session.get(PlatformBudget, shop_id)
            if budget is None:
                return 0.0
            available = self._available(budget, self.clock())
            return max(0.0, (min(cost, budget.capacity) - available) / budget.restore_rate)

    def observe(self, shop_id: int, *, available: float, capacity: float, restore_rate: float) -> None:
        """Align the bucket with what the platform reported (Shopify's ``throttleStatus``)."""
        with self.db.write_transaction() as session:
            budget = self._locked(session, shop_id, capacity, restore_rate)
            budget.available = min(available, capacity)
            budget.capacity = capacity
            budget.restore_rate = restore_rate
            budget.updated_at = self.clock()

    def _available(self, budget: PlatformBudget, now: datetime) -> float:
        elapsed = max(0.0, (now - budget.updated_at).total_seconds())
        return min(budget.capacity, budget.available + elapsed * budget.restore_rate)

    def _locked(
        self, session: sa.orm.Session, shop_id: int, capacity: float, restore_rate: float
    ) -> PlatformBudget:
        session.execute(
            upsert(session, PlatformBudget)
            .values(
                shop_id=shop_id,
                capacity=capacity,
                available=capacity,
                restore_rate=restore_rate,
                updated_at=self.clock(),
            )
            .on_conflict_do_nothing(index_elements=["shop_id"])
        )
        statement = sa.select(PlatformBudget).where(PlatformBudget.shop_id == shop_id).with_for_update()
        return session.scalars(statement).one()
