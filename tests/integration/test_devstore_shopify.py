"""The development store's Shopify side over real HTTP, driven by ShopifyClient: Shopify's rules, its answers
to invalid documents, foreign tokens and spent budgets, webhooks, and injected faults.

The store keeps its own in-memory tables; popsync's database is not involved.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from datetime import date
from datetime import datetime
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from app.platforms import shopify_documents as documents
from app.platforms.base import AuthFailed
from app.platforms.base import CustomerGone
from app.platforms.base import CustomerWrite
from app.platforms.base import IdentifierTaken
from app.platforms.base import RetryLater
from app.platforms.devstore import DevStore
from app.platforms.devstore import create_devstore
from app.platforms.devstore import shopify_api
from app.platforms.shopify import ShopifyClient

pytestmark = pytest.mark.nodb

DOMAIN = "demo.myshopify.com"
OTHER_DOMAIN = "other.myshopify.com"
TOKEN = "shpat_devstore_demo"
OTHER_TOKEN = "shpat_devstore_other"
PATH = "/admin/api/2026-10/graphql.json"


class Clock:
    """The store's clock, moved by hand so the bucket's refill is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Running:
    store: DevStore
    origin: str
    clock: Clock

    def client(self, token: str = TOKEN, domain: str = DOMAIN, **state: Any) -> ShopifyClient:
        return ShopifyClient(
            domain=domain,
            access_token=token,
            api_version="2026-10",
            admin_origin=self.origin,
            shop_id=1,
            budget=None,
            state=dict(state),
            timeout=5.0,
        )

    def post(self, query: str, variables: dict[str, Any] | None = None) -> requests.Response:
        return requests.post(
            f"{self.origin}{PATH}",
            json={"query": query, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": TOKEN, "X-Forwarded-Host": DOMAIN},
            timeout=5,
        )


def serve(store: DevStore, clock: Clock) -> Iterator[Running]:
    server = make_server("127.0.0.1", 0, create_devstore(store), threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="devstore-shopify-test", daemon=True
    )
    thread.start()
    try:
        yield Running(store, f"http://127.0.0.1:{server.server_port}", clock)
    finally:
        server.shutdown()
        thread.join(timeout=10)


def new_store(clock: Clock, **options: Any) -> DevStore:
    store = DevStore(clock=clock, **options)
    store.add_shop("shopify", DOMAIN, TOKEN)
    store.add_shop("shopify", OTHER_DOMAIN, OTHER_TOKEN)
    return store


@pytest.fixture
def devstore() -> Iterator[Running]:
    clock = Clock()
    yield from serve(new_store(clock), clock)


@pytest.fixture
def small_bucket() -> Iterator[Running]:
    clock = Clock()
    yield from serve(new_store(clock, shopify_bucket_size=30.0, shopify_restore_rate=2.0), clock)


def write(**values: Any) -> CustomerWrite:
    return CustomerWrite(values=values, consent_updated_at=datetime(2026, 3, 1, 9, 0, tzinfo=UTC))


def sent_webhooks(store: DevStore) -> list[dict[str, Any]]:
    return [w for w in store.webhooks.sent if w["platform"] == "shopify"]


# -- the round trip ----------------------------------------------------------------------------------------


def test_create_find_update_consent_and_tags_round_trip(devstore: Running) -> None:
    client = devstore.client()
    assert client.find_customer(email="ann@example.com", phone="+14155552671") is None

    created = client.create_customer(
        write(
            email="ann@example.com",
            phone="+14155552671",
            first_name="Ann",
            birthday=date(1990, 4, 1),
            gender="female",
            country="US",
            email_consent="subscribed",
            sms_consent="pending",
        ),
        ["popup"],
    )
    assert created.id.startswith("gid://shopify/Customer/")
    assert (created.email, created.phone, created.first_name) == ("ann@example.com", "+14155552671", "Ann")
    assert (created.birthday, created.gender, created.country, created.has_address) == (
        date(1990, 4, 1),
        "female",
        "US",
        True,
    )
    assert (created.email_consent, created.sms_consent, created.tags) == ("subscribed", "pending", ("popup",))
    assert client.state == {"birth_date_definition": True}

    assert client.find_customer(email="ann@example.com") == created
    assert client.find_customer(phone="+14155552671") == created
    assert client.fetch_customer(created.id) == created

    updated = client.update_customer(
        created, write(last_name="Lee", country="DE", email_consent="unsubscribed", sms_consent="subscribed")
    )
    assert updated.last_name == "Lee"
    assert updated.country == "US"  # a customer with an address keeps it
    assert (updated.email_consent, updated.sms_consent) == ("unsubscribed", "subscribed")
    assert created.updated_at is not None
    assert updated.updated_at is not None
    assert updated.updated_at > created.updated_at

    tagged = devstore.client().add_tags(updated, ["vip", "popup"])
    assert tagged.tags == ("popup", "vip")
    assert tagged.updated_at is not None
    assert tagged.updated_at > updated.updated_at
    assert client.fetch_customer(created.id) == tagged

    [listed] = shopify_api.list_customers(devstore.store, 1)
    assert listed == {
        "id": created.id,
        "name": "Ann Lee",
        "email": "ann@example.com",
        "phone": "+14155552671",
        "email_consent": "unsubscribed",
        "sms_consent": "subscribed",
        "tags": ["popup", "vip"],
        "updated_at": listed["updated_at"],
    }


def test_a_country_goes_to_a_customer_without_an_address(devstore: Running) -> None:
    client = devstore.client()
    created = client.create_customer(write(email="bo@example.com"), [])
    assert created.has_address is False
    updated = client.update_customer(created, write(country="FR"))
    assert (updated.country, updated.has_address) == ("FR", True)


def test_birthday_updates_replace_the_metafield(devstore: Running) -> None:
    client = devstore.client()
    created = client.create_customer(write(email="cy@example.com", birthday=date(1991, 1, 2)), [])
    updated = client.update_customer(created, write(birthday=date(1992, 3, 4), gender="other"))
    assert (updated.birthday, updated.gender) == (date(1992, 3, 4), "other")


def test_a_deleted_or_unknown_customer_is_gone(devstore: Running) -> None:
    client = devstore.client()
    created = client.create_customer(write(email="dee@example.com"), [])
    ghost = type(created)(id="gid://shopify/Customer/999", email="ghost@example.com")
    with pytest.raises(CustomerGone):
        client.update_customer(ghost, write(first_name="Boo"))
    with pytest.raises(CustomerGone):
        client.add_tags(ghost, ["x"])
    assert client.fetch_customer("gid://shopify/Customer/999") is None


# -- Shopify's rules ---------------------------------------------------------------------------------------


def test_one_customer_per_email_and_per_phone(devstore: Running) -> None:
    client = devstore.client()
    client.create_customer(write(email="ann@example.com"), [])
    other = client.create_customer(write(phone="+14155552671"), [])
    with pytest.raises(IdentifierTaken) as caught:
        client.create_customer(write(email="ANN@example.com", phone="+1 415 555 2671"), [])
    assert caught.value.fields == ("email", "phone")
    with pytest.raises(IdentifierTaken) as caught:
        client.update_customer(other, write(email="ann@example.com"))
    assert caught.value.fields == ("email",)
    assert len(shopify_api.list_customers(devstore.store, 1)) == 2


def test_shops_do_not_share_customers(devstore: Running) -> None:
    devstore.client().create_customer(write(email="ann@example.com"), [])
    other = devstore.client(OTHER_TOKEN, OTHER_DOMAIN)
    assert other.find_customer(email="ann@example.com") is None
    assert other.create_customer(write(email="ann@example.com"), []).email == "ann@example.com"


def user_errors(response: requests.Response, root: str) -> list[dict[str, Any]]:
    assert response.status_code == 200
    return response.json()["data"][root]["userErrors"]


def test_invalid_values_are_user_errors(devstore: Running) -> None:
    create = documents.CUSTOMER_CREATE
    errors = user_errors(devstore.post(create, {"input": {"phone": "12"}}), "customerCreate")
    assert errors == [{"field": ["phone"], "message": "Phone is invalid"}]
    errors = user_errors(devstore.post(create, {"input": {"note": "hello"}}), "customerCreate")
    assert errors == [{"field": None, "message": "Customer must have a name, phone number or email address"}]
    consent = {"marketingState": "SUBSCRIBED"}
    errors = user_errors(
        devstore.post(create, {"input": {"firstName": "Al", "emailMarketingConsent": consent}}),
        "customerCreate",
    )
    assert errors[0]["field"] == ["emailMarketingConsent"]
    not_subscribed = {
        "email": "al@example.com",
        "emailMarketingConsent": {"marketingState": "NOT_SUBSCRIBED"},
    }
    errors = user_errors(devstore.post(create, {"input": not_subscribed}), "customerCreate")
    assert errors[0]["field"] == ["emailMarketingConsent", "marketingState"]
    assert shopify_api.list_customers(devstore.store, 1) == []


def test_the_birthday_needs_its_standard_definition(devstore: Running) -> None:
    birthday = [{"namespace": "facts", "key": "birth_date", "type": "date", "value": "1990-04-01"}]
    variables = {"input": {"email": "ann@example.com", "metafields": birthday}}
    errors = user_errors(devstore.post(documents.CUSTOMER_CREATE, variables), "customerCreate")
    assert errors[0]["field"] == ["metafields", "0", "namespace"]

    enabled = devstore.post(documents.BIRTH_DATE_DEFINITION_ENABLE).json()["data"]
    assert enabled["standardMetafieldDefinitionEnable"]["userErrors"] == []
    again = devstore.post(documents.BIRTH_DATE_DEFINITION_ENABLE).json()["data"]
    assert again["standardMetafieldDefinitionEnable"]["userErrors"][0]["code"] == "TAKEN"

    assert user_errors(devstore.post(documents.CUSTOMER_CREATE, variables), "customerCreate") == []
    bad_date = {"input": {"email": "bo@example.com", "metafields": [{**birthday[0], "value": "1990-4-1"}]}}
    errors = user_errors(devstore.post(documents.CUSTOMER_CREATE, bad_date), "customerCreate")
    assert errors[0]["field"] == ["metafields", "0", "value"]


def test_consent_through_customer_update_is_refused(devstore: Running) -> None:
    created = devstore.client().create_customer(write(email="ann@example.com"), [])
    variables = {"input": {"id": created.id, "emailMarketingConsent": {"marketingState": "SUBSCRIBED"}}}
    errors = user_errors(devstore.post(documents.CUSTOMER_UPDATE, variables), "customerUpdate")
    assert errors[0]["field"] == ["emailMarketingConsent"]


def test_tags_and_addresses_on_update_replace_their_lists(devstore: Running) -> None:
    """Why the client never sends them on update: Shopify replaces the whole list."""
    created = devstore.client().create_customer(write(email="ann@example.com", country="US"), ["a", "b"])
    variables = {"input": {"id": created.id, "tags": ["c"], "addresses": [{"countryCode": "CA"}]}}
    response = devstore.post(documents.CUSTOMER_UPDATE, variables).json()["data"]["customerUpdate"]
    assert response["customer"]["tags"] == ["c"]
    assert response["customer"]["defaultAddress"]["countryCodeV2"] == "CA"


def test_updated_at_grows_on_every_change(devstore: Running) -> None:
    client = devstore.client()
    customer = client.create_customer(write(email="ann@example.com"), [])
    stamps = [customer.updated_at]
    for index in range(5):
        customer = client.add_tags(customer, [f"t{index}"])
        stamps.append(customer.updated_at)
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(stamps))


def test_concurrent_creates_of_one_email_make_one_customer(devstore: Running) -> None:
    outcomes: list[str] = []

    def create() -> None:
        try:
            devstore.client().create_customer(write(email="same@example.com"), [])
            outcomes.append("created")
        except IdentifierTaken:
            outcomes.append("taken")

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] + ["taken"] * 7
    assert len(shopify_api.list_customers(devstore.store, 1)) == 1


def test_reading_the_customer_list_never_loses_a_write(devstore: Running) -> None:
    """The customers page is read while the app writes: every acknowledged create must stay."""
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            shopify_api.list_customers(devstore.store, 1)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        client = devstore.client()
        ids = {client.create_customer(write(email=f"p{i}@example.com"), []).id for i in range(40)}
    finally:
        stop.set()
        reader.join()
    assert {c["id"] for c in shopify_api.list_customers(devstore.store, 1)} == ids


# -- what Shopify refuses ----------------------------------------------------------------------------------


def test_a_document_shopify_would_reject_is_rejected(devstore: Running) -> None:
    response = devstore.post('{ customer(id: "gid://shopify/Customer/1") { id email_address } }')
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body
    assert body["extensions"]["cost"]["requestedQueryCost"] == 0
    assert "email_address" in body["errors"][0]["message"]
    assert body["errors"][0]["locations"] == [{"line": 1, "column": 49}]

    deprecated_input_shape = devstore.post(
        'mutation { customerCreate(input: {email: "a@b.co", acceptsMarketing: true}) { customer { id } } }'
    )
    assert deprecated_input_shape.status_code == 200
    assert "acceptsMarketing" in deprecated_input_shape.json()["errors"][0]["message"]

    two_identifiers = devstore.post(
        '{ customerByIdentifier(identifier: {emailAddress: "a@b.co", phoneNumber: "+14155552671"}) { id } }'
    )
    assert two_identifiers.json()["errors"]

    not_graphql = devstore.post("customer { id")
    assert not_graphql.status_code == 200
    assert not_graphql.json()["errors"][0]["locations"]


def test_a_token_used_for_another_shop_is_refused(devstore: Running) -> None:
    response = requests.post(
        f"{devstore.origin}{PATH}",
        json={"query": documents.CUSTOMER_BY_ID, "variables": {"id": "gid://shopify/Customer/1"}},
        headers={"X-Shopify-Access-Token": OTHER_TOKEN, "X-Forwarded-Host": DOMAIN},
        timeout=5,
    )
    assert response.status_code == 401
    assert response.json() == {"errors": shopify_api.INVALID_TOKEN}
    with pytest.raises(AuthFailed) as caught:
        devstore.client(token=OTHER_TOKEN).fetch_customer("gid://shopify/Customer/1")
    assert OTHER_TOKEN not in str(caught.value)
    with pytest.raises(AuthFailed):
        devstore.client(token="shpat_unknown").fetch_customer("gid://shopify/Customer/1")


def test_every_answer_reports_its_cost(devstore: Running) -> None:
    response = devstore.post(documents.CUSTOMER_BY_EMAIL, {"email": "nobody@example.com"})
    cost = response.json()["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 7
    assert cost["actualQueryCost"] == 7
    assert cost["throttleStatus"] == {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 1993.0,
        "restoreRate": 100.0,
    }


def test_a_spent_bucket_throttles_until_it_refills(small_bucket: Running) -> None:
    client = small_bucket.client()
    created = client.create_customer(write(email="ann@example.com"), [])  # 18 of 30 points
    with pytest.raises(RetryLater) as caught:
        client.update_customer(created, write(first_name="Ann"))  # 18 more: only 12 left
    assert caught.value.throttled
    assert caught.value.seconds == pytest.approx((18 - 12) / 2.0)
    assert client.fetch_customer(created.id) == created  # 7 points still fit

    small_bucket.clock.now += 20
    assert client.update_customer(created, write(first_name="Ann")).first_name == "Ann"


# -- webhooks ----------------------------------------------------------------------------------------------


def test_every_change_sends_a_webhook_shaped_like_shopifys(devstore: Running) -> None:
    client = devstore.client()
    created = client.create_customer(
        write(
            email="ann@example.com",
            phone="+14155552671",
            first_name="Ann",
            country="US",
            email_consent="subscribed",
        ),
        ["popup"],
    )
    tagged = client.add_tags(created, ["vip"])
    client.update_customer(tagged, write(first_name="Ann"))  # nothing changes: no webhook

    create, update = sent_webhooks(devstore.store)
    assert (create["topic"], update["topic"]) == ("customers/create", "customers/update")
    assert create["shop"] == DOMAIN
    assert create["headers"]["X-Shopify-Topic"] == "customers/create"
    payload = create["payload"]
    numeric_id = int(created.id.rsplit("/", 1)[1])
    assert payload["id"] == numeric_id
    assert payload["admin_graphql_api_id"] == created.id
    assert (payload["email"], payload["phone"], payload["first_name"], payload["last_name"]) == (
        "ann@example.com",
        "+14155552671",
        "Ann",
        None,
    )
    assert payload["tags"] == "popup"
    assert payload["default_address"]["country_code"] == "US"
    assert payload["email_marketing_consent"] == {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-03-01T09:00:00+00:00",
    }
    assert payload["sms_marketing_consent"]["state"] == "not_subscribed"
    assert datetime.fromisoformat(payload["updated_at"]) == created.updated_at
    assert datetime.fromisoformat(payload["created_at"]).tzinfo is not None
    assert update["payload"]["tags"] == "popup, vip"
    assert datetime.fromisoformat(update["payload"]["updated_at"]) == tagged.updated_at


def test_a_customer_without_phone_or_address_has_null_parts(devstore: Running) -> None:
    devstore.client().create_customer(write(email="ann@example.com"), [])
    [webhook] = sent_webhooks(devstore.store)
    assert webhook["payload"]["default_address"] is None
    assert webhook["payload"]["sms_marketing_consent"] is None
    assert webhook["payload"]["tags"] == ""


# -- faults ------------------------------------------------------------------------------------------------


def test_a_lost_answer_still_wrote(devstore: Running) -> None:
    client = devstore.client()
    devstore.store.faults.configure(lost_answer=1.0)
    with pytest.raises(RetryLater) as caught:
        client.create_customer(write(email="ann@example.com"), ["popup"])
    assert not caught.value.throttled
    devstore.store.faults.configure(lost_answer=0.0)
    found = client.find_customer(email="ann@example.com")
    assert found is not None
    assert found.tags == ("popup",)
    assert [w["topic"] for w in sent_webhooks(devstore.store)] == ["customers/create"]
    assert devstore.store.faults.counts["lost_answer"] == 1


@pytest.mark.parametrize("kind", ["error", "timeout", "throttle"])
def test_injected_faults_do_nothing_and_ask_to_retry(devstore: Running, kind: str) -> None:
    devstore.store.faults.configure(**{kind: 1.0, "timeout_seconds": 0.0})
    with pytest.raises(RetryLater) as caught:
        devstore.client().create_customer(write(email="ann@example.com"), [])
    assert caught.value.throttled is (kind == "throttle")
    devstore.store.faults.configure(**{kind: 0.0})
    assert shopify_api.list_customers(devstore.store, 1) == []
    assert sent_webhooks(devstore.store) == []
