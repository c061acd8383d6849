"""Reading every customer of a shop from the development store over real HTTP, as the backfill and the daily
reconciliation do: ``list_customers`` page by page on both platforms, and Shopify's bulk export (start, poll,
stream the JSONL, resume with ``skip``).

The store keeps its own in-memory tables; popsync's database is not involved.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from typing import Any

import pytest
import requests

from app.platforms import shopify_documents as documents
from app.platforms.base import BulkExportStatus
from app.platforms.base import CustomerPage
from app.platforms.base import CustomerWrite
from app.platforms.base import FailedForGood
from app.platforms.base import PlatformCustomer
from app.platforms.base import RetryLater
from app.platforms.devstore import DevStore
from app.platforms.devstore import shopify_api
from app.platforms.shopify import ShopifyClient
from app.platforms.shopline import ShoplineClient
from tests.devstore_server import running_devstore

pytestmark = pytest.mark.nodb

SHOPIFY_DOMAIN = "reading.myshopify.com"
EMPTY_DOMAIN = "empty.myshopify.com"
SHOPIFY_TOKEN = "shpat_reading_token_0123456789"
EMPTY_TOKEN = "shpat_empty_token_0123456789"
SHOPLINE_DOMAIN = "reading.myshopline.com"
SHOPLINE_TOKEN = "sl-reading-token-0123456789"
SHOPLINE_VERSION = "v20260301"
CUSTOMERS = 600
GRAPHQL = "/admin/api/2026-10/graphql.json"


class FrozenClock:
    """The store's rate-limit clock: it never moves, and the buckets are made big enough not to matter."""

    def __call__(self) -> float:
        return 1000.0


@dataclass
class Shop:
    store: DevStore
    origin: str
    ids: list[str]  # the seeded customers, in creation order

    def shopify(
        self, token: str = SHOPIFY_TOKEN, domain: str = SHOPIFY_DOMAIN, **options: Any
    ) -> ShopifyClient:
        return ShopifyClient(
            domain=domain,
            access_token=token,
            api_version="2026-10",
            admin_origin=self.origin,
            shop_id=1,
            budget=None,
            state={},
            timeout=10.0,
            **options,
        )

    def shopline(self) -> ShoplineClient:
        return ShoplineClient(
            domain=SHOPLINE_DOMAIN,
            access_token=SHOPLINE_TOKEN,
            api_version=SHOPLINE_VERSION,
            admin_origin=self.origin,
            shop_id=2,
            budget=None,
            timeout=10.0,
        )

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.origin}{GRAPHQL}",
            json={"query": query, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": SHOPIFY_TOKEN, "X-Forwarded-Host": SHOPIFY_DOMAIN},
            timeout=10,
        )
        assert response.status_code == 200
        return response.json()


def new_store() -> DevStore:
    store = DevStore(clock=FrozenClock(), shopify_bucket_size=1e9, shopline_bucket_size=1e9)
    store.add_shop("shopify", SHOPIFY_DOMAIN, SHOPIFY_TOKEN)
    store.add_shop("shopify", EMPTY_DOMAIN, EMPTY_TOKEN)
    store.add_shop("shopline", SHOPLINE_DOMAIN, SHOPLINE_TOKEN)
    return store


def write(index: int) -> CustomerWrite:
    return CustomerWrite(
        values={
            "email": f"reader{index}@example.com",
            "first_name": f"Reader{index}",
            "email_consent": "subscribed" if index % 3 == 0 else None,
        }
    )


def seed(client: ShopifyClient | ShoplineClient, count: int) -> list[str]:
    return [
        client.create_customer(write(index), ["seeded"] if index % 2 else []).id for index in range(count)
    ]


def next_second() -> datetime:
    """Wait for the next whole second and return it: every change made before is strictly older, even after
    the clients floor a time to the second."""
    now = datetime.now(UTC)
    time.sleep(1 - now.microsecond / 1_000_000 + 0.01)
    return datetime.now(UTC)


def all_pages(read: Any, **first: Any) -> list[CustomerPage]:
    pages = [read(**first)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 100, "the listing does not end"
        pages.append(read(cursor=pages[-1].next_cursor))
    return pages


def listed(pages: list[CustomerPage]) -> list[PlatformCustomer]:
    return [customer for page in pages for customer in page.customers]


@pytest.fixture(scope="module")
def seeded_shopify() -> Iterator[Shop]:
    with running_devstore(new_store()) as running:
        shop = Shop(running.store, running.origin, [])
        shop.ids = seed(shop.shopify(), CUSTOMERS)
        yield shop


@pytest.fixture(scope="module")
def seeded_shopline() -> Iterator[Shop]:
    with running_devstore(new_store()) as running:
        shop = Shop(running.store, running.origin, [])
        client = shop.shopline()
        shop.ids = seed(client, CUSTOMERS)
        client.close()
        yield shop


@pytest.fixture
def small_shopify() -> Iterator[Shop]:
    """A store of its own with a few customers, for tests that change how bulk queries end."""
    with running_devstore(new_store()) as running:
        shop = Shop(running.store, running.origin, [])
        shop.ids = seed(shop.shopify(), 3)
        yield shop


# -- Shopify: paging -----------------------------------------------------------------------------------------


def test_shopify_pages_through_every_customer_exactly_once(seeded_shopify: Shop) -> None:
    client = seeded_shopify.shopify()
    pages = all_pages(client.list_customers)
    customers = listed(pages)
    assert [len(page.customers) for page in pages] == [100, 100, 100, 100, 100, 100]
    assert sorted(c.id for c in customers) == sorted(seeded_shopify.ids)
    # Least recently updated first.
    stamps = [c.updated_at for c in customers]
    assert None not in stamps
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    assert all(isinstance(page.next_cursor, str) for page in pages[:-1])


def test_shopify_listing_carries_the_values_a_lookup_reads(seeded_shopify: Shop) -> None:
    client = seeded_shopify.shopify()
    first = client.list_customers().customers[0]
    assert client.fetch_customer(first.id) == first


def test_shopify_updated_since_returns_only_later_changes_across_pages(seeded_shopify: Shop) -> None:
    client = seeded_shopify.shopify()
    mark = next_second()
    changed = seeded_shopify.ids[::4]  # 150 customers: two pages
    for customer_id in changed:
        existing = client.fetch_customer(customer_id)
        assert existing is not None
        client.add_tags(existing, ["changed-after-mark"])

    pages = all_pages(client.list_customers, updated_since=mark)
    customers = listed(pages)
    assert len(pages) == 2
    assert sorted(c.id for c in customers) == sorted(changed)
    assert all("changed-after-mark" in c.tags for c in customers)
    assert all(c.updated_at is not None and c.updated_at >= mark for c in customers)


def test_shopify_a_customer_changed_while_paging_is_seen_again_never_skipped(seeded_shopify: Shop) -> None:
    client = seeded_shopify.shopify()
    first = client.list_customers()
    assert first.next_cursor is not None
    # A change moves a customer to the end of the updatedAt order, behind the cursor.
    moved = first.customers[0]
    client.add_tags(moved, ["moved-while-paging"])
    seen = list(first.customers)
    cursor: str | None = first.next_cursor
    while cursor is not None:
        page = seeded_shopify.shopify().list_customers(cursor=cursor)
        seen.extend(page.customers)
        cursor = page.next_cursor
    ids = [c.id for c in seen]
    assert set(ids) == set(seeded_shopify.ids)
    assert ids.count(moved.id) == 2
    assert "moved-while-paging" in seen[-1].tags


def test_shopify_store_refuses_search_syntax_it_does_not_know(seeded_shopify: Shop) -> None:
    answer = seeded_shopify.graphql(
        documents.CUSTOMERS_PAGE, {"after": None, "query": "email:reader1@example.com"}
    )
    # ``customers`` is non-null: its error empties the whole answer, as on Shopify.
    assert answer.get("data") is None
    assert "updated_at" in answer["errors"][0]["message"]
    # Strictly-after is understood too.
    answer = seeded_shopify.graphql(
        documents.CUSTOMERS_PAGE, {"after": None, "query": "updated_at:>'2999-01-01'"}
    )
    assert answer["data"]["customers"]["nodes"] == []


def test_shopify_store_refuses_a_page_over_the_single_query_cost_limit(seeded_shopify: Shop) -> None:
    too_big = documents.CUSTOMERS_PAGE.replace(f"first: {documents.CUSTOMERS_PAGE_SIZE},", "first: 250,")
    answer = seeded_shopify.graphql(too_big)
    assert answer["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert "data" not in answer
    with pytest.raises(FailedForGood, match="MAX_COST_EXCEEDED"):
        seeded_shopify.shopify().execute(too_big, {}, "oversized listing")


# -- Shopify: bulk export ------------------------------------------------------------------------------------


def test_shopify_bulk_export_start_poll_and_read_with_skip(seeded_shopify: Shop) -> None:
    sent: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(response.request))
    client = seeded_shopify.shopify(session=session)

    started = client.start_bulk_export()
    assert started.status == BulkExportStatus.RUNNING
    polled = client.bulk_export(started.id)
    assert (polled.status, polled.url) == (BulkExportStatus.RUNNING, None)
    done = client.bulk_export(started.id)
    assert done.status == BulkExportStatus.COMPLETED
    assert done.object_count == CUSTOMERS
    assert done.url is not None
    assert done.url.startswith(f"{seeded_shopify.origin}/devstore/bulk/")
    # A finished export stays finished.
    assert client.bulk_export(started.id) == done

    exported = list(client.read_bulk_export(done.url))
    assert sorted(c.id for c in exported) == sorted(seeded_shopify.ids)
    # The export holds exactly what the paged listing reads.
    by_id = {c.id: c for c in listed(all_pages(client.list_customers))}
    assert all(by_id[c.id] == c for c in exported)

    resumed = list(client.read_bulk_export(done.url, skip=550))
    assert resumed == exported[550:]

    downloads = [request for request in sent if request.url == done.url]
    assert len(downloads) == 2
    assert all("X-Shopify-Access-Token" not in request.headers for request in downloads)
    assert all(SHOPIFY_TOKEN not in str(request.headers) for request in downloads)


def test_shopify_bulk_file_needs_no_token_and_its_link_is_unguessable(small_shopify: Shop) -> None:
    client = small_shopify.shopify()
    export = client.start_bulk_export()
    client.bulk_export(export.id)
    done = client.bulk_export(export.id)
    assert done.url is not None
    answer = requests.get(done.url, timeout=10)
    assert answer.status_code == 200
    assert len(answer.text.splitlines()) == 3
    token = done.url.rsplit("/", 1)[1].removesuffix(".jsonl")
    assert len(token) >= 32
    assert requests.get(f"{small_shopify.origin}/devstore/bulk/guess.jsonl", timeout=10).status_code == 404


def test_shopify_bulk_export_of_a_shop_without_customers_has_no_file(small_shopify: Shop) -> None:
    client = small_shopify.shopify(EMPTY_TOKEN, EMPTY_DOMAIN)
    export = client.start_bulk_export()
    client.bulk_export(export.id)
    done = client.bulk_export(export.id)
    assert (done.status, done.url, done.object_count) == (BulkExportStatus.COMPLETED, None, 0)


def test_shopify_bulk_export_of_another_shop_is_unknown(small_shopify: Shop) -> None:
    export = small_shopify.shopify().start_bulk_export()
    with pytest.raises(FailedForGood):
        small_shopify.shopify(EMPTY_TOKEN, EMPTY_DOMAIN).bulk_export(export.id)


def test_shopify_a_failed_bulk_export_says_why(small_shopify: Shop) -> None:
    shopify_api.configure_bulk_operations(small_shopify.store, running_polls=0, error_code="ACCESS_DENIED")
    client = small_shopify.shopify()
    failed = client.bulk_export(client.start_bulk_export().id)
    assert (failed.status, failed.error, failed.url) == (BulkExportStatus.FAILED, "ACCESS_DENIED", None)


def test_shopify_an_expired_export_fails_and_its_link_is_gone(small_shopify: Shop) -> None:
    shopify_api.configure_bulk_operations(small_shopify.store, running_polls=0)
    client = small_shopify.shopify()
    done = client.bulk_export(client.start_bulk_export().id)
    assert done.url is not None
    shopify_api.expire_bulk_operation(small_shopify.store, done.id)
    expired = client.bulk_export(done.id)
    assert (expired.status, expired.error) == (BulkExportStatus.FAILED, "EXPIRED")
    with pytest.raises(FailedForGood):
        client.read_bulk_export(done.url)


def test_shopify_too_many_running_bulk_exports_retry_later(small_shopify: Shop) -> None:
    client = small_shopify.shopify()
    running = [client.start_bulk_export() for _ in range(5)]
    with pytest.raises(RetryLater):
        client.start_bulk_export()
    # Once one has finished there is room again.
    client.bulk_export(running[0].id)
    client.bulk_export(running[0].id)
    assert client.start_bulk_export().status == BulkExportStatus.RUNNING


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("{ customers { edges { node { email_address } } } }", "email_address"),
        (
            'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["x"]) { userErrors { field } } }',
            "query",
        ),
        ('{ customer(id: "gid://shopify/Customer/1") { id } }', "connection"),
        ("{ customers { edges { node { id } }", "Syntax Error"),
    ],
)
def test_shopify_store_validates_the_bulk_query(small_shopify: Shop, query: str, why: str) -> None:
    answer = small_shopify.graphql(
        "mutation Run($query: String!) { bulkOperationRunQuery(query: $query) "
        "{ bulkOperation { id } userErrors { field message code } } }",
        {"query": query},
    )
    payload = answer["data"]["bulkOperationRunQuery"]
    assert payload["bulkOperation"] is None
    [error] = payload["userErrors"]
    assert error["code"] == "INVALID"
    assert why in error["message"]


# -- SHOPLINE ----------------------------------------------------------------------------------------------


def test_shopline_pages_through_every_customer_exactly_once(seeded_shopline: Shop) -> None:
    client = seeded_shopline.shopline()
    pages = all_pages(client.list_customers)
    client.close()
    assert [len(page.customers) for page in pages] == [250, 250, 100]
    assert sorted(c.id for c in listed(pages)) == sorted(seeded_shopline.ids)
    # The cursors are SHOPLINE's own links, not the development origin's.
    assert all(str(page.next_cursor).startswith(f"https://{SHOPLINE_DOMAIN}/") for page in pages[:-1])


def test_shopline_updated_since_is_kept_on_later_pages(seeded_shopline: Shop) -> None:
    client = seeded_shopline.shopline()
    mark = next_second()
    changed = seeded_shopline.ids[::2]  # 300 customers: two pages
    for customer_id in changed:
        existing = client.fetch_customer(customer_id)
        assert existing is not None
        client.update_customer(existing, CustomerWrite(values={"last_name": "Changed"}))

    first = client.list_customers(updated_since=mark)
    assert len(first.customers) == 250
    assert first.next_cursor is not None
    # A client made after a restart goes on with the stored cursor alone.
    later = seeded_shopline.shopline()
    rest = all_pages(later.list_customers, cursor=first.next_cursor)
    customers = listed([first, *rest])
    client.close()
    later.close()
    assert sorted(c.id for c in customers) == sorted(changed)
    assert all(c.last_name == "Changed" for c in customers)
    assert all(c.updated_at is not None and c.updated_at >= mark for c in customers)


def test_shopline_store_filters_by_updated_at_max_and_refuses_bad_times(seeded_shopline: Shop) -> None:
    url = f"{seeded_shopline.origin}/admin/openapi/{SHOPLINE_VERSION}/v2/customers.json"
    headers = {"Authorization": f"Bearer {SHOPLINE_TOKEN}", "X-Forwarded-Host": SHOPLINE_DOMAIN}
    before_all = requests.get(
        url, params={"updated_at_max": "2000-01-01T00:00:00Z"}, headers=headers, timeout=10
    )
    assert before_all.status_code == 200
    assert before_all.json() == {"customers": []}
    bad = requests.get(url, params={"updated_at_min": "yesterday"}, headers=headers, timeout=10)
    assert bad.status_code == 400
