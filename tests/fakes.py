"""An in-memory platform with the platforms' rules (one customer per email and per phone), for worker
tests that are about popsync's bookkeeping rather than HTTP. The HTTP-level behaviour is tested against
the development store."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from collections.abc import Sequence
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from app.platforms.base import BulkExport
from app.platforms.base import BulkExportStatus
from app.platforms.base import CustomerGone
from app.platforms.base import CustomerPage
from app.platforms.base import CustomerWrite
from app.platforms.base import FailedForGood
from app.platforms.base import IdentifierTaken
from app.platforms.base import PlatformCustomer


class MemoryPlatform:
    def __init__(self) -> None:
        self.customers: dict[str, PlatformCustomer] = {}
        self.calls: list[str] = []
        self.failures: list[Exception] = []  # raised, in order, by the next calls
        self._ids = itertools.count(1)
        self._clock = datetime(2026, 1, 1, tzinfo=UTC)
        self.page_size = 2
        # Bulk exports: id -> the customers as they were when it started, and polls left before it is done.
        self.exports: dict[str, list[PlatformCustomer]] = {}
        self.export_polls: dict[str, int] = {}
        self.polls_until_done = 1
        self.expired_urls: set[str] = set()

    def _tick(self) -> datetime:
        self._clock += timedelta(seconds=1)
        return self._clock

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.failures:
            raise self.failures.pop(0)

    def add(self, **values: object) -> PlatformCustomer:
        customer = PlatformCustomer(
            id=f"gid://shopify/Customer/{next(self._ids)}", updated_at=self._tick(), **values
        )  # type: ignore[arg-type]
        self.customers[customer.id] = customer
        return customer

    def find_customer(self, *, email: str | None = None, phone: str | None = None) -> PlatformCustomer | None:
        self._call("find")
        for customer in self.customers.values():
            if (email and customer.email == email) or (phone and customer.phone == phone):
                return customer
        return None

    def fetch_customer(self, customer_id: str) -> PlatformCustomer | None:
        self._call("fetch")
        return self.customers.get(customer_id)

    def _check_unique(self, values: dict[str, object], own_id: str | None) -> None:
        taken = [
            field
            for field in ("email", "phone")
            if values.get(field)
            and any(c.id != own_id and getattr(c, field) == values[field] for c in self.customers.values())
        ]
        if taken:
            raise IdentifierTaken(taken)

    def create_customer(self, write: CustomerWrite, tags: Sequence[str]) -> PlatformCustomer:
        self._call("create")
        values = dict(write.values)
        self._check_unique(values, None)
        if "country" in values:
            values["has_address"] = True
        return self.add(**values, tags=tuple(tags))

    def update_customer(self, existing: PlatformCustomer, write: CustomerWrite) -> PlatformCustomer:
        self._call("update")
        if existing.id not in self.customers:
            raise CustomerGone(existing.id)
        values = dict(write.values)
        if existing.has_address:
            values.pop("country", None)
        elif "country" in values:
            values["has_address"] = True
        self._check_unique(values, existing.id)
        updated = dataclasses.replace(self.customers[existing.id], **values, updated_at=self._tick())
        self.customers[existing.id] = updated
        return updated

    def add_tags(self, customer: PlatformCustomer, tags: Sequence[str]) -> PlatformCustomer:
        self._call("tags")
        current = self.customers[customer.id]
        updated = dataclasses.replace(
            current, tags=tuple(dict.fromkeys([*current.tags, *tags])), updated_at=self._tick()
        )
        self.customers[customer.id] = updated
        return updated

    # -- reading every customer (backfill, reconciliation) ----------------------------------------------

    def list_customers(
        self, *, updated_since: datetime | None = None, cursor: str | None = None
    ) -> CustomerPage:
        self._call("list")
        ordered = sorted(
            (
                c
                for c in self.customers.values()
                if updated_since is None or (c.updated_at or self._clock) >= updated_since
            ),
            key=lambda c: (c.updated_at, c.id),
        )
        start = int(cursor or 0)
        page = ordered[start : start + self.page_size]
        more = start + self.page_size < len(ordered)
        return CustomerPage(tuple(page), str(start + self.page_size) if more else None)

    def start_bulk_export(self) -> BulkExport:
        self._call("bulk start")
        export_id = f"gid://shopify/BulkOperation/{len(self.exports) + 1}"
        self.exports[export_id] = sorted(self.customers.values(), key=lambda c: c.id)
        self.export_polls[export_id] = self.polls_until_done
        return BulkExport(export_id, BulkExportStatus.RUNNING)

    def bulk_export(self, operation_id: str) -> BulkExport:
        self._call("bulk poll")
        if self.export_polls[operation_id] > 0:
            self.export_polls[operation_id] -= 1
            return BulkExport(operation_id, BulkExportStatus.RUNNING)
        customers = self.exports[operation_id]
        url = f"https://storage.example/{operation_id.rsplit('/', 1)[-1]}.jsonl" if customers else None
        return BulkExport(operation_id, BulkExportStatus.COMPLETED, url=url, object_count=len(customers))

    def read_bulk_export(self, url: str, *, skip: int = 0) -> Iterator[PlatformCustomer]:
        self._call("bulk read")
        if url in self.expired_urls:
            raise FailedForGood("the export's URL has expired")
        export_id = f"gid://shopify/BulkOperation/{url.rsplit('/', 1)[-1].removesuffix('.jsonl')}"
        yield from self.exports[export_id][skip:]


class Clock:
    """A worker's clock: starts now (rows the service queues are due at once) and moves when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=5)
        self.start = self.now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
